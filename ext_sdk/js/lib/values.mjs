// Plain values on the wire: what may be sent, and how integers are placed (no dependencies, so the SDK can be
// imported — and report a missing `npm ci` clearly — before @msgpack/msgpack or zeromq are loaded).
// See the "Integers" part of wire.mjs's header for the rules.

import { MAX_DEPTH, typeName } from "./schema.mjs";

/** A value cannot go on the wire (not safe data); the message names its path. */
export class WireValueError extends TypeError {
  constructor(path, problem) {
    super(`${path || "<root>"}: ${problem}`);
    this.name = "WireValueError";
    this.path = path;
  }
}

const INT32_MIN = -(2 ** 31);
const UINT32_MAX = 2 ** 32 - 1;
const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;
const SAFE_MIN = BigInt(Number.MIN_SAFE_INTEGER);
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);
/** Guard against cycles in outbound values; the exact nesting rule (MAX_DEPTH) is the schema's. */
const TO_WIRE_MAX_DEPTH = 4 * MAX_DEPTH;

function isPlainObject(value) {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * A copy of `value` ready for the encoder: safe data only, integers placed so they encode as msgpack ints
 * (see "Integers" in wire.mjs). Properties whose value is `undefined` are left out and `undefined` in an array
 * becomes null, as in JSON. Throws WireValueError naming the path of anything else.
 */
export function toWire(value, path = "", depth = 0) {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      if (Number.isSafeInteger(value) && (value > UINT32_MAX || value < INT32_MIN)) return BigInt(value);
      return value;
    case "bigint":
      if (value < INT64_MIN || value > UINT64_MAX) {
        throw new WireValueError(path, `integer ${value} does not fit in 64 bits`);
      }
      return value >= BigInt(INT32_MIN) && value <= BigInt(UINT32_MAX) ? Number(value) : value;
    case "object":
      break;
    default:
      throw new WireValueError(path, `a ${typeof value} is not a safe type`);
  }
  if (depth >= TO_WIRE_MAX_DEPTH) throw new WireValueError(path, `nested deeper than ${TO_WIRE_MAX_DEPTH} levels (a cycle?)`);
  if (Array.isArray(value)) return value.map((item, i) => toWire(item, `${path}[${i}]`, depth + 1));
  if (!isPlainObject(value)) {
    throw new WireValueError(path, `${typeName(value)} is not a safe type (use plain objects, arrays, strings, numbers, booleans, null)`);
  }
  const out = {};
  for (const [key, item] of Object.entries(value)) {
    if (item === undefined) continue;
    out[key] = toWire(item, path ? `${path}.${key}` : key, depth + 1);
  }
  return out;
}

/** Integers decoded as BigInt that a Number holds exactly become Numbers, in place; returns the value. */
export function fromWire(value) {
  if (typeof value === "bigint") return value >= SAFE_MIN && value <= SAFE_MAX ? Number(value) : value;
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      if (typeof item === "bigint" || (item !== null && typeof item === "object")) value[i] = fromWire(item);
    }
    return value;
  }
  if (value instanceof Uint8Array) return value;
  for (const key of Object.keys(value)) {
    const item = value[key];
    if (typeof item === "bigint" || (item !== null && typeof item === "object")) value[key] = fromWire(item);
  }
  return value;
}
