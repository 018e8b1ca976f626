// observer-js: count what the agent does, in this extension's state (a JavaScript example).
//
// Observes `tool_result` (a chain event: it returns nothing, so the result passes unchanged), `agent_end`
// and `llm_usage` (notify events: the agent never waits for them; the host delivers them in order, usually
// in batches). The counts live in state under `counts`, written through ctx (on disk before the call
// returns). The tool `observer_counts` and the command `/observer-stats` report them.
//
// `conversation` is asked for (in extension.toml) because the payloads of tool_result and agent_end carry
// conversation content.

import { Extension, main } from "../../ext_sdk/js/index.mjs";

export const ext = new Extension(); // name, version and permissions: read from extension.toml, their one source

/** The counters, all starting at zero. */
export const EMPTY = Object.freeze({
  tool_results: 0,
  tool_errors: 0,
  turns: 0,
  llm_calls: 0,
  input_tokens: 0,
  output_tokens: 0,
});

async function bump(ctx, changes) {
  const counts = { ...EMPTY, ...(await ctx.getState("counts", {})) };
  for (const [key, by] of Object.entries(changes)) counts[key] = (counts[key] ?? 0) + by;
  await ctx.setState("counts", counts);
  return counts;
}

ext.on("tool_result", async function toolResult(event, ctx) {
  await bump(ctx, { tool_results: 1, tool_errors: event.is_error ? 1 : 0 });
  // no return value: an observer of a chain event leaves the result as it is
});

ext.on("agent_end", async function agentEnd(event, ctx) {
  await bump(ctx, { turns: 1 });
});

ext.on("llm_usage", async function llmUsage(event, ctx) {
  await bump(ctx, { llm_calls: 1, input_tokens: event.input_tokens, output_tokens: event.output_tokens });
});

ext.tool(
  "observer_counts",
  "What observer-js counted so far in this session (tool results, errors, turns, model calls, tokens), as JSON.",
  { type: "object", properties: {}, additionalProperties: false },
  async function observerCounts(args, ctx) {
    return JSON.stringify({ ...EMPTY, ...(await ctx.getState("counts", {})) });
  },
);

ext.command("observer-stats", "Show what observer-js counted in this session.", async function observerStats(args, ctx) {
  const c = { ...EMPTY, ...(await ctx.getState("counts", {})) };
  const text =
    `${c.turns} turn(s), ${c.llm_calls} model call(s) (${c.input_tokens} in / ${c.output_tokens} out tokens), ` +
    `${c.tool_results} tool result(s), ${c.tool_errors} error(s)`;
  await ctx.info(text);
  return text;
});

main(import.meta, ext);
