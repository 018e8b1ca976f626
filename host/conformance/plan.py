"""What every scenario of one run shares: the accepted handshake, the timing rules, and facts learned on the way.

Contract:

* :class:`Plan` is built once the first handshake is accepted. It holds the
  manifest the extension is judged against, its ``hello``, what the host
  decided (:class:`~host.exthost.handshake.Granted`: effective deadlines in
  subscription order), the config's timing (start, heartbeat, shutdown,
  tool deadlines, the notify batch cap) and the check ids of each
  subscription.
* Facts learned by one scenario for another: which subscriptions made host
  calls (their handlers can be held running to observe a pong), which ones
  got a correct reply (a probe to judge recovery after a bad frame).
* :meth:`Plan.grace_s` is how long after a deadline the kit still waits, to
  tell a late reply from none: the deadline itself, between 0.2 and 1 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ext_sdk.events import Mode, spec_for

from ..config import HostConfig
from ..exthost.handshake import Granted
from ..exthost.manifest import Manifest
from .catalog import batch_id, event_id

__all__ = ["Plan"]


@dataclass
class Plan:
    """See the module doc."""

    manifest: Manifest
    hello: dict[str, Any]
    granted: Granted
    config: HostConfig
    #: Subscriptions whose handlers made a host call.
    calling: set[int] = field(default_factory=set)
    #: Subscriptions whose event check passed, in order.
    answering: list[int] = field(default_factory=list)

    @property
    def subscriptions(self) -> list[dict[str, Any]]:
        return list(self.hello["subscriptions"])

    def event_of(self, index: int) -> str:
        return str(self.subscriptions[index]["event"])

    def deadline_s(self, index: int) -> float:
        """The effective deadline of subscription ``index`` (as ``welcome`` told it)."""
        return self.granted.handlers[index].deadline_s or self.config.deadlines.max_ms / 1000

    @staticmethod
    def grace_s(deadline_s: float) -> float:
        return min(max(deadline_s, 0.2), 1.0)

    def _first(self, index: int) -> bool:
        event = self.event_of(index)
        return all(self.event_of(i) != event for i in range(index))

    def event_check(self, index: int) -> str:
        return event_id(self.event_of(index), index, self._first(index))

    def batch_check(self, index: int) -> str:
        return batch_id(self.event_of(index), index, self._first(index))

    def notify_events(self) -> list[str]:
        """Distinct notify events it subscribes to, in subscription order."""
        out: list[str] = []
        for sub in self.subscriptions:
            spec = spec_for(str(sub["event"]))
            if spec is not None and spec.mode is Mode.NOTIFY and sub["event"] not in out:
                out.append(str(sub["event"]))
        return out

    def item_deadline_s(self, event: str) -> float:
        """A notify item's deadline: the largest of the extension's deadlines for ``event`` (PROTOCOL §10)."""
        return max(self.deadline_s(i) for i, sub in enumerate(self.subscriptions) if sub["event"] == event)

    def batch_wait_s(self, events: list[str]) -> float:
        """How long the host waits for a batch of notify items: their deadlines added, capped at
        ``deadlines.notify_batch_ms``, but at least the largest one (PROTOCOL §10)."""
        deadlines = [self.item_deadline_s(e) for e in events]
        return max(min(sum(deadlines), self.notify_batch_s), max(deadlines, default=0.0))

    @property
    def heartbeat_s(self) -> float:
        return self.config.supervision_for(self.manifest.name).heartbeat_ms / 1000

    @property
    def shutdown_half_s(self) -> float:
        return self.config.deadlines.shutdown_ms / 2000

    @property
    def tool_s(self) -> float:
        return self.config.deadlines.tool_ms / 1000

    @property
    def notify_batch_s(self) -> float:
        return self.config.deadlines.notify_batch_ms / 1000
