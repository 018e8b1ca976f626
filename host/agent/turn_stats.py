"""``TurnStats``: kit's per-turn aggregator behind the enriched ``agent_end`` payload.

Contract (kit's ``turnAggregator``, ``pkg/kit/extensions_bridge.go``, minus its
one-turn-per-process assumption: each turn owns its own ``TurnStats``):

* created when the turn starts (``duration_ms`` counts from there);
* :meth:`record_tool` once per tool call the model made, in call order,
  duplicates kept — blocked calls included (the model did ask for them);
* :meth:`record_call` once per finished provider call (each ``llm_usage``):
  tokens are summed; the cost is summed too, but one call of unknown cost
  makes the turn's ``cost_delta`` unknown (``None``), never a silent
  under-count. A turn without calls costs ``0.0``.
* :meth:`agent_end` builds the ``agent_end`` payload; it may be called once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ext_sdk.events import StopReason

from .llm.events import Usage

__all__ = ["TurnStats", "UsageTotals"]


class TurnStats:
    """Counters of one turn."""

    __slots__ = ("_cost", "_cost_known", "_started", "cache_read_tokens", "cache_write_tokens", "input_tokens",
                 "llm_call_count", "output_tokens", "tool_names")

    def __init__(self) -> None:
        self._started = time.monotonic()
        #: Tool names in call order (duplicates kept).
        self.tool_names: list[str] = []
        #: Finished provider calls.
        self.llm_call_count = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self._cost = 0.0
        self._cost_known = True

    def record_tool(self, name: str) -> None:
        """One tool call the model made."""
        self.tool_names.append(name)

    def record_call(self, usage: Usage) -> None:
        """One finished provider call."""
        self.llm_call_count += 1
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cache_read_tokens += usage.cache_read_tokens
        self.cache_write_tokens += usage.cache_write_tokens
        if usage.cost is None:
            self._cost_known = False
        else:
            self._cost += usage.cost

    @property
    def cost(self) -> float | None:
        """USD so far, or ``None`` when some call's cost is unknown."""
        return round(self._cost, 12) if self._cost_known else None

    @property
    def duration_ms(self) -> int:
        """Milliseconds since the turn started."""
        return int((time.monotonic() - self._started) * 1000)

    def agent_end(self, response: str, stop_reason: StopReason) -> dict[str, Any]:
        """A fresh ``agent_end`` payload (``stop_reason`` as its plain string, as on the wire)."""
        return {
            "response": response,
            "stop_reason": stop_reason.value,
            "tool_call_count": len(self.tool_names),
            "tool_names": list(self.tool_names),
            "llm_call_count": self.llm_call_count,
            "input_tokens_delta": self.input_tokens,
            "output_tokens_delta": self.output_tokens,
            "cache_read_tokens_delta": self.cache_read_tokens,
            "cache_write_tokens_delta": self.cache_write_tokens,
            "cost_delta": self.cost,
            "duration_ms": self.duration_ms,
        }


class UsageTotals:
    """Session usage since the agent started (kit's ``GetSessionUsage``), thread-safe.

    Every finished provider call of the agent is recorded once: turn steps,
    compaction summaries, subagents' calls and ``ctx.complete``. Like
    :class:`TurnStats`, one call of unknown cost makes the total unknown.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = TurnStats()

    def record(self, usage: Usage) -> None:
        """One finished provider call."""
        with self._lock:
            self._stats.record_call(usage)

    def snapshot(self) -> dict[str, Any]:
        """The ``get_session_usage`` value."""
        with self._lock:
            s = self._stats
            return {"total_input_tokens": s.input_tokens, "total_output_tokens": s.output_tokens,
                    "total_cache_read_tokens": s.cache_read_tokens, "total_cache_write_tokens": s.cache_write_tokens,
                    "total_cost": s.cost, "request_count": s.llm_call_count}
