// FakeHost and the combination loop: order, stop rule, chained fields, result check, failure policy.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Block, Extension, Handled, HostCallError, PatchResult, Transform } from "../index.mjs";
import { specFor } from "../lib/schema.mjs";
import { combine, FailureKind, FakeHost, FakeTransport, HandlerFailure, inOrder } from "../testing.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function handler(index, priority, fn, { policy = "open", loadOrder = 0, label = `h${index}`, deadlineMs = null } = {}) {
  const t = new FakeTransport(fn);
  return { decl: { index, event: "x", priority, deadlineMs, policy }, loadOrder, label, transport: t.call, t };
}

describe("combine", () => {
  it("orders by priority, then load order, then registration", () => {
    const hs = [handler(0, 50, () => null, { loadOrder: 1 }), handler(1, 10, () => null, { loadOrder: 2 }),
      handler(2, 50, () => null, { loadOrder: 0 }), handler(3, 50, () => null, { loadOrder: 1 })];
    assert.deepEqual(inOrder(hs).map((h) => h.decl.index), [1, 2, 0, 3]);
  });

  it("stops a gate at the first matching result; later handlers are not asked", async () => {
    const hs = [handler(0, 1, () => ({ block: false })), handler(1, 2, () => ({ block: true, reason: "no" })), handler(2, 3, () => null)];
    const out = await combine("tool_call", specFor("tool_call"), hs, { input: "x" });
    assert.ok(out.stopped);
    assert.equal(out.reason, "no");
    assert.equal(out.stop.by, "h1");
    assert.equal(hs[2].t.calls.length, 0);
  });

  it("chains fields, conditionally for input (transform), then checks the stop rule", async () => {
    const hs = [handler(0, 1, () => ({ action: "transform", text: "B" })), handler(1, 2, (p) => ({ action: "continue", text: "ignored" })),
      handler(2, 3, (p) => (p.text === "B" ? { action: "handled", reason: "saw B" } : null))];
    const out = await combine("input", specFor("input"), hs, { text: "A", source: "interactive" });
    assert.equal(out.payload.text, "B");
    assert.equal(out.reason, "saw B");
  });

  it("applies policy: open skips a failure, closed stops with a reason naming the handler", async () => {
    const boom = () => {
      throw new HandlerFailure(FailureKind.TIMEOUT, "slow");
    };
    const open = await combine("tool_call", specFor("tool_call"), [handler(0, 1, boom), handler(1, 2, () => null)], { input: "" });
    assert.equal(open.stopped, false);
    assert.deepEqual(open.failures.map((f) => [f.kind, f.policy]), [["timeout", "open"]]);
    const closed = await combine("tool_call", specFor("tool_call"), [handler(0, 1, boom, { policy: "closed", label: "gate" })], { input: "" });
    assert.equal(closed.stop.failed, true);
    assert.equal(closed.reason, "gate failed (timeout: slow); failing closed");
    assert.deepEqual(closed.stop.result, { block: true, reason: closed.reason });
  });

  it("refuses a result of the wrong shape (bad_result) and any result of a notify event", async () => {
    const out = await combine("tool_call", specFor("tool_call"), [handler(0, 1, () => ({ blok: true }))], { input: "" });
    assert.equal(out.failures[0].kind, "bad_result");
    const notify = await combine("agent_end", specFor("agent_end"), [handler(0, 1, () => ({ a: 1 }))], {});
    assert.match(notify.failures[0].detail, /takes no result/);
  });

  it("bounds a handler by its deadline and the event budget", async () => {
    const slow = handler(0, 1, () => sleep(200).then(() => null), { deadlineMs: 20 });
    const out = await combine("tool_call", specFor("tool_call"), [slow], { input: "" }, { budgetMs: 1000 });
    assert.equal(out.failures[0].kind, "timeout");
    const cut = handler(0, 1, () => sleep(200).then(() => null), { deadlineMs: 500 });
    const later = handler(1, 2, () => sleep(200).then(() => null), { deadlineMs: 500 });
    const byBudget = await combine("tool_call", specFor("tool_call"), [cut, later], { input: "" }, { budgetMs: 30 });
    assert.deepEqual(byBudget.failures.map((f) => f.kind), ["budget", "budget"]);
  });
});

describe("FakeHost", () => {
  it("runs an extension's handlers with the host's rules and policies", async () => {
    const ext = new Extension("fx", { permissions: ["conversation"] });
    ext.on("tool_call", async (e) => (e.input.includes("rm") ? Block("rm") : null), { priority: 20 });
    ext.on("tool_call", async () => {
      throw new Error("crashed");
    }, { priority: 30 }); // a gate: fails closed by default
    ext.on("tool_result", async (e) => PatchResult({ content: e.content.toUpperCase() }));
    ext.on("tool_result", async (e) => PatchResult({ content: `${e.content}!` }), { priority: 60 });
    const host = new FakeHost(ext);
    const blocked = await host.emit("tool_call", FakeHost.toolCall("bash", { command: "rm x" }));
    assert.equal(blocked.reason, "rm");
    const crashed = await host.emit("tool_call", FakeHost.toolCall("bash", { command: "ls" }));
    assert.equal(crashed.stop.failed, true);
    assert.match(crashed.reason, /^fx failed \(error: <anonymous handler> raised Error: crashed\); failing closed$/);
    assert.match(host.logs[0], /Error: crashed/);
    const chained = await host.emit("tool_result", FakeHost.toolResult("bash", "ok"));
    assert.equal(chained.payload.content, "OK!");
  });

  it("checks the payload against the event's schema", async () => {
    const host = new FakeHost(new Extension("fx"));
    await assert.rejects(host.emit("tool_call", { tool_name: "bash" }), /payload: missing field 'input'/);
    await assert.rejects(host.emit("no_such", {}), /unknown event/);
  });

  it("answers ctx calls from memory and refuses ungranted ones", async () => {
    const ext = new Extension("fx");
    ext.onCustom("go", async (e, ctx) => {
      await ctx.setState("n", (await ctx.getState("n", 0)) + 1);
      await ctx.info(`data ${JSON.stringify(e.data)}`);
      await ctx.emit("went", { ok: true });
      try {
        await ctx.getMessages();
      } catch (err) {
        assert.ok(err instanceof HostCallError);
        await ctx.error(err.message);
      }
    });
    const host = new FakeHost(ext);
    await host.emitCustom("go", { a: 1 });
    await host.emitCustom("go", null);
    assert.deepEqual(host.state, { n: 2 });
    assert.deepEqual(host.emitted, [["went", { ok: true }], ["went", { ok: true }]]);
    assert.deepEqual(host.printed[0], ["info", 'data {"a":1}']);
    assert.deepEqual(host.printed[1], ["error", "permission denied: get_messages needs 'conversation'"]);
  });

  it("refuses a ctx call with arguments that cannot cross the wire", async () => {
    const ext = new Extension("fx");
    ext.onCustom("go", async (e, ctx) => ctx.setState("when", new Date()));
    const out = await new FakeHost(ext).emitCustom("go");
    assert.match(out.failures[0].detail, /HostCallError: set_state: args.value: Date is not a safe type/);
  });

  it("runs tools and commands", async () => {
    const ext = new Extension("fx");
    ext.tool("add", "adds", { type: "object" }, async ({ a, b }) => String(a + b));
    ext.tool("bad", "throws", async () => {
      throw new TypeError("nope");
    });
    ext.command("hi", "greets", async (args) => `hi ${args}`);
    const host = new FakeHost(ext);
    assert.deepEqual(await host.invokeTool("add", { a: 1, b: 2 }), { content: "3", is_error: false });
    assert.deepEqual(await host.invokeTool("bad"), { content: "Error: TypeError: nope", is_error: true });
    assert.deepEqual(await host.runCommand("hi", "you"), { content: "hi you", is_error: false });
    await assert.rejects(host.invokeTool("none"), /no tool 'none'/);
  });

  it("a handler of an input gate can transform, then another handles", async () => {
    const ext = new Extension("fx");
    ext.on("input", async (e) => Transform(e.text.trim()), { priority: 1 });
    ext.on("input", async (e) => (e.text === "/quit" ? Handled("bye") : null), { priority: 2 });
    const out = await new FakeHost(ext).emit("input", { text: "  /quit ", source: "interactive" });
    assert.equal(out.payload.text, "/quit");
    assert.equal(out.reason, "bye");
  });
});
