// The kithost wire protocol for Node: frames, envelopes, message kinds (mirrors ext_sdk/wire.py).
//
// Frame (one ZeroMQ message part, every socket, both directions):
//
//   MAC: 32 bytes = HMAC-SHA256(secret, body)  ||  body = msgpack map {k: kind, seq: n, ...fields}
//
// `seq` is counted per socket and per direction, from 1; a receiver accepts a frame only when its seq is
// greater than the last one accepted on that socket (gaps are fine).
//
// Integers (the part JavaScript needs care with):
//   * inbound, msgpack is decoded with `useBigInt64: true`, so a 64-bit integer is never rounded; then every
//     integer that fits a JS number exactly (|n| <= 2^53 - 1) is turned into a Number. So an author sees a
//     Number for every ordinary int (seq, id, token counts, timestamps in ms) and a BigInt only for an integer
//     a Number cannot hold exactly (e.g. 2^63 - 1).
//   * outbound (toWire), an integral Number is sent as a msgpack *int* of the smallest width, never as a
//     float (the encoder would otherwise write a safe integer >= 2^32 as float64, which the host's `int`
//     fields reject); a non-integral Number is a float64; a BigInt is an int (int64/uint64: it must lie in
//     [-2^63, 2^64 - 1]). A JS `2.0` is the integer 2 on the wire — the host's float fields accept ints.
//   * so an id or seq survives the round trip exactly, whatever its size.
//
// Never sent: msgpack ext types (Date, Map, Set, typed arrays, class instances are refused by toWire with the
// path of the offending value); non-string map keys.

import { createHmac, timingSafeEqual } from "node:crypto";
import { Decoder, Encoder } from "@msgpack/msgpack";
import { check, def, SchemaError, typeName } from "./schema.mjs";
import { fromWire, toWire, WireValueError } from "./values.mjs";

export { fromWire, toWire, WireValueError };

/** Size of the MAC prefix of every frame. */
export const MAC_SIZE = 32;
/** Default maximum frame size (bytes) accepted by either side. */
export const DEFAULT_MAX_FRAME = 8 * 1024 * 1024;
/** Limit of a control-channel frame (ping/shutdown are tiny). */
export const CONTROL_MAX_FRAME = 64 * 1024;

/** Environment variables the host sets for an extension process. */
export const ENV_EVENTS = "KITHOST_EVENTS";
export const ENV_CALLS = "KITHOST_CALLS";
export const ENV_CONTROL = "KITHOST_CONTROL";
export const ENV_SECRET_FILE = "KITHOST_SECRET_FILE";
export const ENV_VERSIONS = "KITHOST_PROTOCOL_VERSIONS";
export const ENV_NAME = "KITHOST_EXTENSION";

/** Exit status: started without a host, or bad command line. */
export const EXIT_USAGE = 2;
/** Exit status: the extension's own code or declaration is broken (the host does not retry). */
export const EXIT_BAD_EXTENSION = 3;
/** Exit status: the host refused the handshake (the host does not retry). */
export const EXIT_REJECTED = 4;

/** Every reason a FrameError can carry (as ext_sdk.wire.FRAME_ERRORS). */
export const FRAME_ERRORS = Object.freeze([
  "too_large",
  "short",
  "bad_mac",
  "decode",
  "too_deep",
  "not_a_map",
  "unknown_kind",
  "replay",
  "schema",
]);

/** Kinds each end may receive on each channel. */
export const ACCEPT = Object.freeze({
  events: Object.freeze(["event", "batch", "invoke"]), // extension's REP: host requests
  calls: Object.freeze(["welcome", "reject", "answer"]), // extension's REQ: host answers
  control: Object.freeze(["ping", "shutdown"]), // extension's REP: host requests
});

/** An inbound frame was rejected; `reason` is one of FRAME_ERRORS. */
export class FrameError extends Error {
  constructor(reason, detail) {
    super(`${reason}: ${detail}`);
    this.name = "FrameError";
    this.reason = reason;
    this.detail = detail;
  }
}

function nonStringKey(key) {
  if (typeof key !== "string") throw new FrameError("decode", `map key ${String(key)} is not a string`);
  return key;
}

const ENCODER = new Encoder({ useBigInt64: true, ignoreUndefined: true });

/** msgpack bytes of `value` (run through toWire first). */
export function encode(value) {
  return ENCODER.encode(toWire(value));
}

function decoderFor(maxFrame) {
  return new Decoder({
    useBigInt64: true,
    maxStrLength: maxFrame,
    maxBinLength: maxFrame,
    maxArrayLength: 1_000_000,
    maxMapLength: 100_000,
    maxExtLength: 0, // ext types are never valid (a timestamp ext included)
    mapKeyConverter: nonStringKey,
  });
}

const DEFAULT_DECODER = decoderFor(DEFAULT_MAX_FRAME);

/** The value in msgpack `bytes` (integers as described in the module comment). Throws on bad input. */
export function decode(bytes) {
  return fromWire(DEFAULT_DECODER.decode(bytes));
}

function mac(key, body) {
  return createHmac("sha256", key).update(body).digest();
}

/** Packs and signs outbound envelopes for one socket; owns its `seq` counter. */
export class Sealer {
  #key;
  #seq;

  constructor(key, firstSeq = 1) {
    this.#key = Buffer.from(key);
    this.#seq = firstSeq - 1;
  }

  /** One frame for message `kind` with `fields` (`k`/`seq` are added). */
  seal(kind, fields) {
    this.#seq += 1;
    const body = ENCODER.encode(toWire({ k: kind, seq: this.#seq, ...fields }));
    return Buffer.concat([mac(this.#key, body), body]);
  }

  /** Sign an already packed body as is (tests only). */
  sealRaw(body) {
    return Buffer.concat([mac(this.#key, body), Buffer.from(body)]);
  }
}

function isMap(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value) && !(value instanceof Uint8Array);
}

/**
 * Verifies and decodes inbound frames for one socket; tracks the last `seq`.
 * `accept` lists the kinds valid on this socket in this direction. Every envelope is checked against its
 * kind's schema ($defs/message.<kind>), which also enforces the MAX_DEPTH rule for free-form values.
 */
export class Opener {
  #key;
  #accept;
  #maxFrame;
  #decoder;
  #validate;
  #lastSeq = 0;

  constructor(key, accept, { maxFrame = DEFAULT_MAX_FRAME, validate = true } = {}) {
    this.#key = Buffer.from(key);
    this.#accept = new Set(accept);
    this.#maxFrame = maxFrame;
    this.#decoder = maxFrame === DEFAULT_MAX_FRAME ? DEFAULT_DECODER : decoderFor(maxFrame);
    this.#validate = validate;
  }

  /** The last seq accepted on this socket. */
  get lastSeq() {
    return this.#lastSeq;
  }

  /** The verified envelope of `frame`; throws FrameError. */
  open(frame) {
    if (frame.length > this.#maxFrame + MAC_SIZE) {
      throw new FrameError("too_large", `${frame.length} bytes > limit ${this.#maxFrame}`);
    }
    if (frame.length <= MAC_SIZE) throw new FrameError("short", `${frame.length} bytes`);
    const body = frame.subarray(MAC_SIZE);
    if (!timingSafeEqual(frame.subarray(0, MAC_SIZE), mac(this.#key, body))) {
      throw new FrameError("bad_mac", "signature does not match");
    }
    let msg;
    try {
      msg = fromWire(this.#decoder.decode(body));
    } catch (err) {
      if (err instanceof FrameError) throw err;
      throw new FrameError("decode", `${err?.name ?? "Error"}: ${err?.message ?? err}`);
    }
    if (!isMap(msg)) throw new FrameError("not_a_map", `envelope is ${typeName(msg)}`);
    const kind = msg.k;
    if (!this.#accept.has(kind)) throw new FrameError("unknown_kind", `kind ${JSON.stringify(kind)} not accepted here`);
    const seq = msg.seq;
    if (!(typeof seq === "number" || typeof seq === "bigint") || !Number.isInteger(Number(seq)) || seq <= this.#lastSeq) {
      throw new FrameError("replay", `seq ${String(seq)} not after ${this.#lastSeq}`);
    }
    if (this.#validate) {
      try {
        check(def(`message.${kind}`), msg);
      } catch (err) {
        if (!(err instanceof SchemaError)) throw err;
        throw new FrameError(err.problem.includes("deeper") ? "too_deep" : "schema", err.message);
      }
    }
    this.#lastSeq = seq;
    return msg;
  }
}

/** Highest version both sides speak, or null. */
export function chooseVersion(offered, supported) {
  const common = offered.filter((v) => supported.includes(v));
  return common.length ? Math.max(...common) : null;
}

