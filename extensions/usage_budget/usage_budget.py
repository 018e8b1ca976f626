"""usage-budget: kit's usage-budget example, out of process.

* ``llm_usage`` (one per provider call): adds tokens and cost to the session
  totals kept in the host's state store — they survive a crash of this
  extension and a restart of the host.
* ``agent_end`` (kit's enriched event): prints a per-turn report with the
  turn's deltas and the session totals; warns once past 80 % of the budget
  and emits ``custom:budget.exceeded`` past 100 %.

The budget (USD) is state key ``cap_usd`` (default 1.00). A call whose price
is unknown (cost null) is counted as unknown, never as $0.
"""

from __future__ import annotations

from ext_sdk import Extension

ext = Extension()  # name, version and permissions: extension.toml

DEFAULT_CAP_USD = 1.0


@ext.on("llm_usage", priority=50)
def count(event, ctx):  # type: ignore[no-untyped-def]
    totals = ctx.get_state("totals", {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0,
                                      "unknown_cost_calls": 0})
    totals["calls"] += 1
    totals["input_tokens"] += event.input_tokens
    totals["output_tokens"] += event.output_tokens
    if event.cost is None:
        totals["unknown_cost_calls"] += 1
    else:
        totals["cost_usd"] = round(totals["cost_usd"] + float(event.cost), 10)
    ctx.set_state("totals", totals)


@ext.on("agent_end", priority=50)
def report(event, ctx):  # type: ignore[no-untyped-def]
    totals = ctx.get_state("totals", {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0,
                                      "unknown_cost_calls": 0})
    cap = float(ctx.get_state("cap_usd", DEFAULT_CAP_USD))
    turn_cost = "unknown" if event.cost_delta is None else f"${event.cost_delta:.6f}"
    unknown = f" (+{totals['unknown_cost_calls']} call(s) of unknown price)" if totals["unknown_cost_calls"] else ""
    ctx.info(
        f"turn: {event.llm_call_count} model call(s), {event.tool_call_count} tool call(s), "
        f"{event.input_tokens_delta}+{event.output_tokens_delta} tokens, {turn_cost}, {event.duration_ms} ms | "
        f"session: {totals['calls']} call(s), ${totals['cost_usd']:.6f} of ${cap:.2f}{unknown}"
    )
    spent = totals["cost_usd"]
    if spent >= cap:
        ctx.error(f"budget exceeded: ${spent:.6f} of ${cap:.2f}")
        ctx.emit("budget.exceeded", {"spent_usd": spent, "cap_usd": cap})
    elif spent >= 0.8 * cap and not ctx.get_state("warned_80", False):
        ctx.set_state("warned_80", True)
        ctx.info(f"80% of the budget used (${spent:.6f} of ${cap:.2f})")
