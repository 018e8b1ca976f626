// Frames and values: byte-for-byte agreement with the Python SDK (vectors made by ext_sdk.wire.Sealer), the
// integer rules, and every way an inbound frame is refused.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decode, encode, FrameError, MAC_SIZE, Opener, Sealer, toWire, WireValueError } from "../lib/wire.mjs";

const KEY = Buffer.from([...Array(32).keys()]);

// Python: Sealer(bytes(range(32)), first_seq=7).seal("event", {"id": 2**40, "event": "tool_call", "handler": 0,
//   "data": {"big": 2**63-1, "neg": -2**63, "u64": 2**64-1, "f": 1.5, "two": 2.0, "s": "é", "l": [1, None, True]}})
const PY_EVENT = Buffer.from(
  "83e2365ce920f69b6f841eb68cb10e543733ec6f270aa635a83e8d6da6c3d86a86a16ba56576656e74a373657107a26964cf0000010000000000" +
    "a56576656e74a9746f6f6c5f63616c6ca768616e646c657200a46461746187a3626967cf7fffffffffffffffa36e6567d38000000000000000" +
    "a3753634cfffffffffffffffffa166cb3ff8000000000000a374776fcb4000000000000000a173a2c3a9a16c9301c0c3",
  "hex",
);

// Python: Sealer(bytes(range(32)), first_seq=3).seal("reply", {"id": 2**40, "results": [...]}) — see REPLY_FIELDS.
const PY_REPLY = Buffer.from(
  "3ccebc6037b9d399968fdbe4a2a1caf8649cfecc35f87d7840f3aa6fac7ce78f84a16ba57265706c79a373657103a26964cf0000010000000000" +
    "a7726573756c74739382a26f6bc3a6726573756c7482a5626c6f636bc3a6726561736f6ea26e6f82a26f6bc2a56572726f72a17882a26f6bc3" +
    "a6726573756c7484a16edc001000ff7fcc80d0dfccffcd0100ce00010000ceffffffffcf0000000100000000d280000000d3ffffffff7fffffff" +
    "cf001fffffffffffffcf7fffffffffffffffd38000000000000000cfffffffffffffffffa166cb3ff8000000000000a173a2c3a9a36e696cc0",
  "hex",
);
const REPLY_FIELDS = {
  id: 2 ** 40,
  results: [
    { ok: true, result: { block: true, reason: "no" } },
    { ok: false, error: "x" },
    {
      ok: true,
      result: {
        n: [0, -1, 127, 128, -33, 255, 256, 65536, 2 ** 32 - 1, 2 ** 32, -(2 ** 31), -(2 ** 31) - 1, 2 ** 53 - 1,
          2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n],
        f: 1.5,
        s: "é",
        nil: null,
      },
    },
  ],
};

describe("agreement with the Python SDK", () => {
  it("opens a frame sealed by Python, 64-bit integers exact", () => {
    const msg = new Opener(KEY, ["event"]).open(PY_EVENT);
    assert.equal(msg.k, "event");
    assert.equal(msg.seq, 7);
    assert.equal(msg.id, 2 ** 40); // a safe integer: a Number
    assert.equal(msg.handler, 0);
    assert.equal(msg.data.big, 2n ** 63n - 1n); // beyond 2^53: a BigInt, exact
    assert.equal(msg.data.neg, -(2n ** 63n));
    assert.equal(msg.data.u64, 2n ** 64n - 1n);
    assert.equal(msg.data.f, 1.5);
    assert.equal(msg.data.two, 2);
    assert.equal(msg.data.s, "é");
    assert.deepEqual(msg.data.l, [1, null, true]);
  });

  it("seals the same bytes as Python (same MAC, same integer widths)", () => {
    const frame = new Sealer(KEY, 3).seal("reply", REPLY_FIELDS);
    assert.equal(frame.toString("hex"), PY_REPLY.toString("hex"));
  });

  it("round-trips ids and seqs of every size", () => {
    for (const id of [1, 2 ** 31, 2 ** 32, 2 ** 40, Number.MAX_SAFE_INTEGER, 2n ** 63n - 1n, 2n ** 64n - 1n]) {
      const sealer = new Sealer(KEY, 5);
      const back = new Opener(KEY, ["ping"]).open(sealer.seal("ping", { id }));
      assert.equal(back.id, id);
      assert.equal(typeof back.id, typeof id);
    }
  });
});

describe("integers and values", () => {
  it("never writes an integral Number as a float", () => {
    // 0xcb = float64. A safe integer >= 2^32 must be uint64 (0xcf), < -2^31 int64 (0xd3).
    assert.equal(encode(2 ** 32)[0], 0xcf);
    assert.equal(encode(1_700_000_000_000)[0], 0xcf);
    assert.equal(encode(-(2 ** 31) - 1)[0], 0xd3);
    assert.equal(encode(2.0)[0], 0x02);
    assert.equal(encode(1.5)[0], 0xcb);
    assert.equal(encode(2 ** 60)[0], 0xcb, "2^60 as a Number is not exact: it stays a float");
    assert.equal(decode(encode(1_700_000_000_000)), 1_700_000_000_000);
  });

  it("gives BigInt only where a Number cannot hold the value", () => {
    assert.equal(decode(encode(2n ** 53n)), 2n ** 53n);
    assert.equal(decode(encode(2n ** 53n - 1n)), 2 ** 53 - 1);
    assert.equal(decode(encode(5n)), 5);
    assert.deepEqual(decode(encode({ a: [7n, -(2n ** 63n)] })), { a: [7, -(2n ** 63n)] });
  });

  it("refuses what is not safe data, naming the path", () => {
    const bad = [
      [{ when: new Date(0) }, /when: Date is not a safe type/],
      [{ m: new Map() }, /m: Map is not a safe type/],
      [{ b: Buffer.from("x") }, /b: Buffer is not a safe type/],
      [{ f: () => 1 }, /f: a function is not a safe type/],
      [{ n: 2n ** 64n }, /n: integer .* does not fit in 64 bits/],
      [{ s: Symbol("x") }, /s: a symbol is not a safe type/],
    ];
    for (const [value, pattern] of bad) assert.throws(() => toWire(value), (err) => err instanceof WireValueError && pattern.test(err.message));
    const cycle = {};
    cycle.self = cycle;
    assert.throws(() => toWire(cycle), /a cycle\?/);
  });

  it("drops undefined properties and turns undefined array items into null (as JSON does)", () => {
    assert.deepEqual(toWire({ a: undefined, b: [undefined, 1] }), { b: [null, 1] });
  });
});

describe("inbound frames are verified", () => {
  const sealer = () => new Sealer(KEY);
  const reason = (fn) => {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof FrameError, `not a FrameError: ${err}`);
      return err.reason;
    }
    assert.fail("frame was accepted");
  };

  it("short, bad MAC, too large", () => {
    assert.equal(reason(() => new Opener(KEY, ["ping"]).open(Buffer.alloc(MAC_SIZE))), "short");
    const frame = sealer().seal("ping", { id: 1 });
    frame[3] ^= 1;
    assert.equal(reason(() => new Opener(KEY, ["ping"]).open(frame)), "bad_mac");
    const other = new Sealer(Buffer.alloc(32, 9)).seal("ping", { id: 1 });
    assert.equal(reason(() => new Opener(KEY, ["ping"]).open(other)), "bad_mac");
    const big = sealer().seal("ping", { id: 1, pad: "x".repeat(200) });
    assert.equal(reason(() => new Opener(KEY, ["ping"], { maxFrame: 100 }).open(big)), "too_large");
  });

  it("decode, not a map, non-string keys, ext types", () => {
    const s = sealer();
    assert.equal(reason(() => new Opener(KEY, ["ping"]).open(s.sealRaw(Buffer.from([0xc1])))), "decode");
    assert.equal(reason(() => new Opener(KEY, ["ping"]).open(s.sealRaw(encode([1, 2])))), "not_a_map");
    // {1: 2}: a map with an integer key
    assert.equal(reason(() => new Opener(KEY, ["ping"]).open(s.sealRaw(Buffer.from([0x81, 0x01, 0x02])))), "decode");
    // {"k": <timestamp ext>}
    const ext = Buffer.from([0x81, 0xa1, 0x6b, 0xd6, 0xff, 0, 0, 0, 0]);
    assert.equal(reason(() => new Opener(KEY, ["ping"]).open(s.sealRaw(ext))), "decode");
  });

  it("kind, replay, schema, depth", () => {
    const s = sealer();
    assert.equal(reason(() => new Opener(KEY, ["ping"]).open(s.seal("shutdown", { id: 1, reason: "x" }))), "unknown_kind");
    const opener = new Opener(KEY, ["ping"]);
    const first = s.seal("ping", { id: 1 });
    opener.open(first);
    assert.equal(reason(() => opener.open(first)), "replay");
    const gap = new Sealer(KEY, 10).seal("ping", { id: 2 });
    assert.equal(opener.open(gap).seq, 10, "gaps in seq are fine");
    assert.equal(reason(() => new Opener(KEY, ["ping"]).open(new Sealer(KEY).seal("ping", {}))), "schema");
    assert.equal(reason(() => new Opener(KEY, ["ping"]).open(new Sealer(KEY).seal("ping", { id: 1, extra: 1 }))), "schema");
    let deep = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    const frame = new Sealer(KEY).seal("event", { id: 1, event: "custom:x", data: { d: deep } });
    assert.equal(reason(() => new Opener(KEY, ["event"]).open(frame)), "too_deep");
  });
});
