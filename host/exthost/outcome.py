"""What an emitted event produced: the seam between the agent and the extension host.

``ExtensionHost.emit(event, payload)`` always returns an :class:`Outcome`,
never raises for anything an extension did:

* ``payload`` — the payload after every chained result was applied (for
  notify events, the payload as emitted);
* ``stop`` — set when a gate stopped: a handler blocked/cancelled/handled,
  or a failing handler's policy was ``closed`` (then ``stop.failed`` is true
  and ``stop.reason`` names the extension and what went wrong);
* ``failures`` — every handler failure of this emit, with the policy applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Failure", "HandlerFailure", "Outcome", "StopInfo"]


class HandlerFailure(Exception):
    """A handler call failed; ``kind`` is one of ``stats.FAILURE_KINDS``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Failure:
    """One handler that failed during an emit."""

    #: ``<extension>`` or ``host:<function>`` for in-process hooks.
    handler: str
    #: One of ``stats.FAILURE_KINDS``.
    kind: str
    #: What happened, in words.
    detail: str
    #: The policy applied: ``open`` (skipped) or ``closed`` (stopped the event).
    policy: str


@dataclass(frozen=True, slots=True)
class StopInfo:
    """Why a gate event stopped."""

    #: Who stopped it.
    by: str
    #: The stopping result map (for a failure: the synthesised one).
    result: dict[str, Any]
    #: Human reason.
    reason: str
    #: True when the stop comes from a fail-closed failure, not a handler's decision.
    failed: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one emit."""

    event: str
    payload: dict[str, Any]
    stop: StopInfo | None = None
    failures: tuple[Failure, ...] = field(default=())
    #: How many handlers were asked (0 = nobody subscribed: no IPC happened).
    handlers: int = 0

    @property
    def stopped(self) -> bool:
        """Whether the event was blocked/cancelled/handled."""
        return self.stop is not None

    @property
    def reason(self) -> str:
        """The stop reason, or ''."""
        return self.stop.reason if self.stop is not None else ""
