// The extension process, driven by a minimal host (harness.mjs) over real ipc sockets: handshake, events,
// batches, invocations, host calls, heartbeats while a handler awaits, bad frames, shutdown, exit statuses.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { FIXTURES, MiniHost, runBare } from "../testdata/harness.mjs";
import { encode, Sealer } from "../lib/wire.mjs";

const fixture = (name) => fileURLToPath(new URL(name, FIXTURES));
const ECHO = fixture("echo.mjs");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const USAGE = { input_tokens: 7, output_tokens: 1, cache_read_tokens: 0, cache_write_tokens: 0, cost: null, model: "m", provider: "p", request_id: "", step_number: 1, finish_reason: "stop" };
const toolCall = (command) => ({ tool_call_id: "c1", tool_name: "bash", tool_kind: "execute", input: JSON.stringify({ command }), parsed_args: { command }, source: "llm" });

describe("exit statuses", () => {
  it("started by hand: explains and exits 2", async () => {
    const { status, stderr } = await runBare(ECHO);
    assert.equal(status, 2);
    assert.match(stderr, /This is a kithost extension; it runs inside kithost, not on its own\./);
    assert.match(stderr, /kithost run -e .*fixtures "your prompt"/);
  });

  for (const [file, pattern] of [
    ["broken_declaration.mjs", /the extension failed to load: Error: unknown event "tool_cal"/],
    ["never_serves.mjs", /never started serving: end it with `main\(import\.meta, ext\)`/],
    ["rejected_await.mjs", /the extension failed to load: Error: config missing/],
  ]) {
    it(`broken extension code (${file}): exits 3`, async () => {
      const host = new MiniHost();
      try {
        await host.bind();
        host.spawn(fixture(file));
        assert.equal(await host.exitStatus(), 3);
        assert.match(host.stderr, pattern);
      } finally {
        await host.close();
      }
    });
  }

  it("unreadable secret file: exits 2", async () => {
    const host = new MiniHost();
    try {
      await host.bind();
      host.spawn(ECHO, { KITHOST_SECRET_FILE: "/nonexistent/secret" });
      assert.equal(await host.exitStatus(), 2);
      assert.match(host.stderr, /cannot read the launch secret/);
    } finally {
      await host.close();
    }
  });

  it("handshake refused: exits 4 with the host's reason", async () => {
    const host = new MiniHost();
    try {
      await host.bind();
      host.spawn(ECHO);
      await host.hello();
      await host.reject("no common protocol version");
      assert.equal(await host.exitStatus(), 4);
      assert.match(host.stderr, /host refused 'fixture': no common protocol version/);
    } finally {
      await host.close();
    }
  });
});

describe("serving", () => {
  let host;
  let hello;
  before(async () => {
    host = new MiniHost();
    hello = await host.start(ECHO);
  });
  after(async () => {
    await host.close();
  });

  it("says hello with its declaration", () => {
    assert.deepEqual(hello.versions, [1]);
    assert.match(hello.sdk, /^node\/\d+\.\d+\.\d+$/);
    assert.equal(hello.name, "fixture");
    assert.deepEqual(hello.subscriptions, [
      { event: "tool_call", priority: 10, deadline_ms: 800, policy: "closed" },
      { event: "llm_usage", priority: 50 },
      { event: "llm_usage", priority: 5 },
      { event: "custom:ints", priority: 50 },
    ]);
    assert.deepEqual(hello.tools.map((t) => t.name), ["echo", "fail"]);
    assert.deepEqual(hello.commands, [{ name: "hello", description: "Says hello." }]);
  });

  it("answers an event with one reply carrying the request id", async () => {
    const blocked = await host.event("tool_call", toolCall("please block"), 0);
    assert.deepEqual(blocked.results, [{ ok: true, result: { block: true, reason: "blocked: please block" } }]);
    const fine = await host.event("tool_call", toolCall("ls"), 0);
    assert.deepEqual(fine.results, [{ ok: true, result: null }]);
    assert.equal(fine.id, host.nextId - 1);
  });

  it("runs a batch in order; a null handler runs every subscription by priority; calls carry the request id", async () => {
    const calls = [];
    const reply = await host.request("batch", {
      events: [{ event: "llm_usage", data: USAGE }, { event: "custom:ints", data: { name: "ints", source: "t", data: { a: 1 } } }],
      dropped: 0,
    }, () => ({ ok: true, value: null }), calls);
    assert.deepEqual(reply.results, [{ ok: true, result: null }, { ok: true, result: null }]);
    assert.deepEqual(calls.map((c) => c.method), ["print", "set_state", "set_state"]);
    assert.ok(calls.every((c) => c.event_id === reply.id));
    assert.deepEqual(calls[0].args, { text: "tokens 7", level: "info" });
  });

  it("reports a handler that throws or returns a bad result, and keeps serving", async () => {
    const thrown = await host.event("tool_call", toolCall("throw"), 0);
    assert.deepEqual(thrown.results, [{ ok: false, error: "gate raised Error: boom" }]);
    const bad = await host.event("tool_call", toolCall("bad"), 0);
    assert.match(bad.results[0].error, /^gate returned a bad result for 'tool_call': result: unknown field 'blok'/);
    const date = await host.event("tool_call", toolCall("date"), 0);
    assert.match(date.results[0].error, /result.reason: Date is not a safe type/);
    const unknown = await host.event("tool_call", toolCall("ls"), 7);
    assert.deepEqual(unknown.results, [{ ok: false, error: "no handler #7 for 'tool_call'" }]);
  });

  it("sends ctx calls one at a time and surfaces a refusal as HostCallError", async () => {
    const answers = { set_state: { ok: true, value: null }, get_state: { ok: true, value: 1 } };
    const calls = [];
    const reply = await host.event("tool_call", toolCall("calls"), 0, (c) => answers[c.method], calls);
    assert.equal(reply.results[0].result.reason, "calls [null,null,1]");
    assert.deepEqual(calls.map((c) => [c.method, c.args.key]), [["set_state", "a"], ["set_state", "b"], ["get_state", "a"]]);
    assert.deepEqual(calls.map((c) => c.id), [...calls.map((c) => c.id)].sort((a, b) => a - b));
    const refused = await host.event("tool_call", toolCall("refused"), 0, () => ({ ok: false, error: "event 3 is over" }));
    assert.equal(refused.results[0].result.reason, "HostCallError: event 3 is over");
  });

  it("invokes tools and commands", async () => {
    const echo = await host.request("invoke", { target: "tool", name: "echo", args: { n: 2 ** 40, big: 2n ** 63n - 1n, s: "x" } });
    assert.deepEqual(JSON.parse(echo.results[0].result.content), { types: { n: "number", big: "bigint", s: "string" }, info: "function" });
    const fail = await host.request("invoke", { target: "tool", name: "fail", args: {} });
    assert.deepEqual(fail.results, [{ ok: true, result: { content: "Error: RangeError: nope", is_error: true } }]);
    const cmd = await host.request("invoke", { target: "command", name: "hello", args: "you" });
    assert.deepEqual(cmd.results, [{ ok: true, result: { content: "hello you", is_error: false } }]);
    const none = await host.request("invoke", { target: "tool", name: "none", args: {} });
    assert.deepEqual(none.results, [{ ok: false, error: "no tool 'none'" }]);
  });

  it("keeps 64-bit integers exact both ways", async () => {
    const calls = [];
    const data = { big: 2n ** 63n - 1n, neg: -(2n ** 63n), u64: 2n ** 64n - 1n, ts: 1_700_000_000_000, small: 3, f: 0.5 };
    await host.request("event", { event: "custom:ints", handler: 3, data: { name: "ints", source: "t", data } }, undefined, calls);
    const echoed = calls[0].args.value;
    assert.deepEqual(echoed.data, data);
    assert.deepEqual(echoed.types, { big: "bigint", neg: "bigint", u64: "bigint", ts: "number", small: "number", f: "number" });
  });

  it("answers pings while an async handler awaits, and says what it is doing", async () => {
    const idle = await host.ping();
    assert.equal(idle.busy, false);
    const pending = host.event("tool_call", toolCall("sleep:1500"), 0);
    await sleep(150);
    const pongs = [];
    for (let i = 0; i < 4; i++) {
      const started = performance.now();
      const pong = await host.ping();
      pongs.push([pong, performance.now() - started]);
      await sleep(50);
    }
    for (const [pong, ms] of pongs) {
      assert.equal(pong.busy, true);
      assert.equal(pong.current, "tool_call");
      assert.ok(ms < 500, `pong took ${ms} ms while the handler awaited (it would wait ~1 s if blocked)`);
    }
    assert.ok(pongs.at(-1)[0].busy_ms > pongs[0][0].busy_ms && pongs[0][0].busy_ms >= 100);
    assert.deepEqual((await pending).results, [{ ok: true, result: null }]);
  });

  it("cannot answer pings during a synchronous handler (documented)", async () => {
    const pending = host.event("tool_call", toolCall("spin:400"), 0);
    await sleep(100);
    const started = performance.now();
    await host.ping();
    assert.ok(performance.now() - started >= 200, "the pong waited for the synchronous handler to end");
    await pending;
  });

  it("answers a bad frame on the events channel and serves the next request", async () => {
    const good = new Sealer(host.secret, 1000).seal("event", { id: 999, event: "tool_call", handler: 0, data: toolCall("ls") });
    const forged = Buffer.from(good);
    forged[0] ^= 0xff;
    const answer = await host.raw("events", forged);
    const reply = host.eventsIn.open(answer);
    assert.deepEqual([reply.id, reply.results], [0, []]);
    await host.stderrMatching(/dropped frame from host: bad_mac/);
    const replayed = host.eventsIn.open(await host.raw("events", new Sealer(host.secret, 1).seal("event", { id: 998, event: "tool_call", handler: 0, data: toolCall("ls") })));
    assert.equal(replayed.id, 0);
    await host.stderrMatching(/replay: seq 1 not after/);
    const garbage = host.eventsIn.open(await host.raw("events", Buffer.from("not a frame at all, longer than thirty-two bytes")));
    assert.equal(garbage.id, 0);
    host.eventsOut = new Sealer(host.secret, 2000); // the extension's last accepted seq is still the real one
    const fine = await host.event("tool_call", toolCall("please block"), 0);
    assert.equal(fine.results[0].result.block, true);
  });

  it("answers a bad control frame with an empty frame and keeps answering pings", async () => {
    const answer = await host.raw("control", Buffer.concat([Buffer.alloc(32), encode({ k: "ping", seq: 10_000, id: 1 })]));
    assert.equal(answer.length, 0);
    assert.equal((await host.ping()).busy, false);
  });

  it("on shutdown says bye at once, lets the running handler finish, exits 0", async () => {
    const pending = host.event("tool_call", toolCall("sleep:1200"), 0);
    await sleep(50);
    const started = performance.now();
    const bye = await host.shutdown();
    assert.equal(bye.k, "bye");
    assert.ok(performance.now() - started < 700, "bye does not wait for the handler");
    assert.deepEqual((await pending).results, [{ ok: true, result: null }]);
    assert.equal(await host.exitStatus(), 0);
  });
});
