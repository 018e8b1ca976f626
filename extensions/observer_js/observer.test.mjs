// Unit tests of observer-js with the SDK's FakeHost: `node --test extensions/observer_js/`.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FakeHost } from "../../ext_sdk/js/testing.mjs";

const load = () => FakeHost.load(new URL("./index.mjs", import.meta.url));
const usage = (input, output) => ({ input_tokens: input, output_tokens: output, cache_read_tokens: 0, cache_write_tokens: 0,
  cost: null, model: "scripted/x", provider: "scripted", request_id: "", step_number: 1, finish_reason: "stop" });
const AGENT_END = { response: "ok", stop_reason: "completed", tool_call_count: 1, tool_names: ["bash"], llm_call_count: 2,
  input_tokens_delta: 300, output_tokens_delta: 40, cache_read_tokens_delta: 0, cache_write_tokens_delta: 0, cost_delta: 0.5, duration_ms: 10 };

describe("observer-js", () => {
  it("counts tool results, errors, model calls, tokens and turns in state", async () => {
    const host = await load();
    const out = await host.emit("tool_result", FakeHost.toolResult("bash", "fine"));
    assert.equal(out.payload.content, "fine", "an observer leaves the result unchanged");
    await host.emit("tool_result", FakeHost.toolResult("bash", "boom", { isError: true }));
    await host.emit("llm_usage", usage(100, 10));
    await host.emit("llm_usage", usage(50, 5));
    await host.emit("agent_end", AGENT_END);
    assert.deepEqual(host.state.counts, { tool_results: 2, tool_errors: 1, turns: 1, llm_calls: 2, input_tokens: 150, output_tokens: 15 });
  });

  it("reports through its tool and its command", async () => {
    const host = await load();
    await host.emit("llm_usage", usage(1, 2));
    assert.equal(JSON.parse((await host.invokeTool("observer_counts", {})).content).llm_calls, 1);
    const stats = await host.runCommand("observer-stats");
    assert.match(stats.content, /^0 turn\(s\), 1 model call\(s\) \(1 in \/ 2 out tokens\)/);
    assert.deepEqual(host.printed, [["info", stats.content]]);
  });
});
