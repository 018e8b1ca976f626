"""``TurnResult``: what one turn did, as the caller (the session, the CLI, a subagent's parent) sees it.

Built from the turn's ``agent_end`` payload (:meth:`TurnResult.from_agent_end`,
read only) plus what ``agent_end`` does not carry: the error or the reason the
turn stopped, the step count, the extension failures seen, and the follow-up
turns the session ran afterwards. :meth:`TurnResult.to_json` is ``kithost run
--json``'s final line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ext_sdk.events import StopReason

from .emitter import FailureRecord

__all__ = ["TurnResult"]


@dataclass(frozen=True, slots=True)
class TurnResult:
    """What one turn did: the ``agent_end`` aggregates plus what a caller needs to report it."""

    #: The final answer (text of the turn's last assistant message).
    response: str
    #: Why the turn ended (``agent_end.stop_reason``).
    stop_reason: StopReason
    #: The error (stop reason ``error``), else ''.
    error: str = ""
    #: Why ``input`` handled the prompt (stop reason ``handled``), else ''.
    reason: str = ""
    #: Model calls started (steps).
    steps: int = 0
    tool_call_count: int = 0
    tool_names: tuple[str, ...] = ()
    llm_call_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    #: USD, or ``None`` when some call's cost is unknown.
    cost: float | None = 0.0
    duration_ms: int = 0
    #: Extension handler failures seen during the turn (the policy was applied to each).
    failures: tuple[FailureRecord, ...] = ()
    #: Turns started afterwards from queued messages (:class:`host.agent.session.AgentSession`).
    followups: tuple[TurnResult, ...] = ()

    @classmethod
    def from_agent_end(cls, payload: Mapping[str, Any], **extra: Any) -> TurnResult:
        """Build from an ``agent_end`` payload (read only)."""
        return cls(
            response=str(payload["response"]), stop_reason=StopReason(payload["stop_reason"]),
            tool_call_count=int(payload["tool_call_count"]), tool_names=tuple(payload["tool_names"]),
            llm_call_count=int(payload["llm_call_count"]), input_tokens=int(payload["input_tokens_delta"]),
            output_tokens=int(payload["output_tokens_delta"]),
            cache_read_tokens=int(payload["cache_read_tokens_delta"]),
            cache_write_tokens=int(payload["cache_write_tokens_delta"]), cost=payload["cost_delta"],
            duration_ms=int(payload["duration_ms"]), **extra)

    def to_json(self) -> dict[str, Any]:
        """Plain data (``kithost run --json``'s final ``result`` line, without ``type``)."""
        return {
            "response": self.response, "stop_reason": self.stop_reason.value, "error": self.error,
            "reason": self.reason, "steps": self.steps, "tool_call_count": self.tool_call_count,
            "tool_names": list(self.tool_names),
            "llm_call_count": self.llm_call_count, "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens, "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens, "cost": self.cost, "duration_ms": self.duration_ms,
            "failures": [f.to_json() for f in self.failures],
            "followups": [t.to_json() for t in self.followups],
        }
