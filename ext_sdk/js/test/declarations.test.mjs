// Extension declarations, typed results, ctx methods and the schema checker.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  Block, Cancel, Continue, Context, Extension, Handled, Inject, PatchResult, ReplaceMessages, Result, Summary,
  Transform, toPlain, CALLS, EVENTS,
} from "../index.mjs";
import { CONTEXT_METHODS } from "../lib/context.mjs";
import { check, def, SchemaError, specFor } from "../lib/schema.mjs";

describe("Extension", () => {
  it("declares what the handshake sends", () => {
    const ext = new Extension("demo", { version: "1.2.3", permissions: ["conversation"] });
    const gate = async () => null;
    ext.on("tool_call", gate, { priority: 10, deadlineMs: 200, policy: "closed" });
    ext.on("agent_end", async () => {});
    ext.onCustom("ping", async () => {});
    ext.tool("t", "a tool", async () => "x");
    ext.tool("u", "no parameters", async () => "x");
    ext.command("/c", "a command", async () => "y");
    assert.deepEqual(ext.helloFields(), {
      name: "demo",
      version: "1.2.3",
      subscriptions: [
        { event: "tool_call", priority: 10, deadline_ms: 200, policy: "closed" },
        { event: "agent_end", priority: 50 },
        { event: "custom:ping", priority: 50 },
      ],
      tools: [
        { name: "t", description: "a tool", parameters: { type: "object", properties: {} } },
        { name: "u", description: "no parameters", parameters: { type: "object", properties: {} } },
      ],
      commands: [{ name: "c", description: "a command" }],
      permissions: ["conversation"],
    });
    check(def("message.hello"), { k: "hello", seq: 1, versions: [1], sdk: "node/0", ...ext.helloFields() });
  });

  it("refuses a broken declaration at its source", () => {
    assert.throws(() => new Extension("x", { permissions: ["root"] }), /unknown permission/);
    const ext = new Extension("x");
    assert.throws(() => ext.on("tool_cal", async () => {}), /unknown event "tool_cal"/);
    assert.throws(() => ext.on("tool_call", async () => {}, { policy: "shut" }), /policy must be/);
    assert.throws(() => ext.on("tool_call", async () => {}, { deadlineMs: 0 }), /deadlineMs must be a positive integer/);
    assert.throws(() => ext.on("tool_call", async () => {}, { deadlineMs: 1.5 }), /deadlineMs/);
    assert.throws(() => ext.on("tool_call", "not a function"), /must be a function/);
    ext.tool("t", "d", async () => "");
    assert.throws(() => ext.tool("t", "d", async () => ""), /declared twice/);
  });

  it("knows every event of the schema", () => {
    const ext = new Extension("x");
    for (const name of Object.keys(EVENTS)) ext.on(name, async () => {});
    assert.equal(ext.subscriptions.length, Object.keys(EVENTS).length);
  });
});

describe("typed results", () => {
  // The wire maps of ext_sdk/results.py (a pytest test also compares them with Python's to_map()).
  const cases = [
    [Block("why"), "tool_call", { block: true, reason: "why" }],
    [Block(), "tool_call", { block: true, reason: "blocked by extension" }],
    [Cancel(), "before_fork", { cancel: true, reason: "cancelled by extension" }],
    [Summary("s"), "before_compact", { summary: "s" }],
    [Transform("t"), "input", { action: "transform", text: "t" }],
    [Handled(), "input", { action: "handled", reason: "handled by extension" }],
    [Continue(), "input", { action: "continue" }],
    [PatchResult({ content: "c" }), "tool_result", { content: "c" }],
    [PatchResult({ isError: false }), "tool_result", { is_error: false }],
    [PatchResult("c"), "tool_result", { content: "c" }],
    [Inject({ text: "i", systemPrompt: "s" }), "before_agent_start", { inject_text: "i", system_prompt: "s" }],
    [ReplaceMessages([{ role: "user", content: "hi" }, { index: 3, role: "tool", content: "x", tool_call_id: "t" }]),
      "context_prepare",
      { messages: [{ index: -1, role: "user", content: "hi" }, { index: 3, role: "tool", content: "x", tool_call_id: "t" }] }],
  ];

  it("map to the Python SDK's wire maps, valid for their event", () => {
    for (const [result, event, map] of cases) {
      assert.ok(result instanceof Result);
      assert.deepEqual(toPlain(event, result), map);
      check(specFor(event).result, map, "result");
    }
  });

  it("work with and without new", () => {
    assert.deepEqual(new Block("a").toMap(), Block("a").toMap());
    assert.ok(new Block("a") instanceof Block);
  });

  it("refuse the wrong event and strange values", () => {
    assert.throws(() => toPlain("input", Block("x")), /Block is not a result for 'input' \(it is for: tool_call\)/);
    assert.throws(() => toPlain("tool_call", "block"), /returned string/);
    assert.throws(() => toPlain("tool_call", [1]), /returned an array/);
    assert.equal(toPlain("tool_call", undefined), null);
    assert.deepEqual(toPlain("tool_call", { block: true }), { block: true });
  });
});

describe("ctx", () => {
  it("has a method for every host call of the schema, and each sends that call", async () => {
    assert.deepEqual(Object.keys(CONTEXT_METHODS).sort(), Object.keys(CALLS).sort());
    const sent = [];
    const ctx = new Context(async (method, args) => {
      sent.push(method);
      check(def(`call.${method}.args`), args, "args");
      return null;
    }, "tool_call");
    const args = { getState: ["k"], setState: ["k", 1], deleteState: ["k"], appendEntry: ["t", {}], getEntries: ["t"],
      emit: ["n"], sendMessage: ["hi"], setModel: ["m"], print: ["x"], info: ["x"], error: ["x"],
      cancelAndSend: ["go"], complete: ["hi", { system: "s", maxTokens: 5 }], spawnSubagent: ["task"],
      subagentStatus: ["id"], killSubagent: ["id"], setActiveTools: [["read"]], getTreeNode: ["id"],
      navigateTo: ["id"], registerOption: ["n", "d"], getOption: ["n"], setOption: ["n", "v"],
      promptSelect: ["m", ["a"]], promptConfirm: ["m"], promptInput: ["m"], setStatus: ["k", "t"] };
    for (const [method, names] of Object.entries(CONTEXT_METHODS)) {
      for (const name of names) {
        sent.length = 0;
        await ctx[name](...(args[name] ?? []));
        assert.deepEqual(sent, [method], `ctx.${name}`);
      }
    }
  });

  it("getState returns the default for a missing key", async () => {
    const ctx = new Context(async () => null);
    assert.equal(await ctx.getState("k", 7), 7);
  });
});

describe("schema checker", () => {
  it("says what is wrong, as the Python checker does", () => {
    const result = specFor("tool_call").result;
    assert.throws(() => check(result, { blok: true }, "result"), (e) => e instanceof SchemaError && e.message === "result: unknown field 'blok' (known: block, reason)");
    assert.throws(() => check(result, { block: "yes" }, "result"), /result.block: expected bool, got string/);
    check(result, { block: null, reason: null }, "result");
    assert.throws(() => check(def("message.ping"), { k: "ping", seq: 1 }), /missing field 'id'/);
    assert.throws(() => check(def("message.ping"), { k: "ping", seq: 1.5, id: 1 }), /seq: expected int, got float/);
    assert.throws(() => check(specFor("input").result, { action: "drop" }, "result"), /expected one of continue, transform, handled; got 'drop'/);
  });
});
