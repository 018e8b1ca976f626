"""Per-extension counters and handler latencies.

Every outcome of every handler call is counted exactly once:
``handled`` (a valid reply), or one of the failure kinds
(:data:`FAILURE_KINDS`), each also counted as ``fail_open`` or
``fail_closed`` by the policy that was applied. Latencies (µs) of successful
round trips are kept in a bounded ring for percentiles, and so is their
split (:meth:`ExtensionStats.record_split`): time in the host (composing,
sealing, opening and checking, before the send and after the reply
arrived), in transit (send → reply received, less the extension's own time:
IPC, wake-ups, the SDK's framing) and in the extension (what it reports in
the reply's optional ``us``; SDKs that do not report it leave the split
out).
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from typing import Final

from ext_sdk.combine import FailureKind
from ext_sdk.events import Policy

__all__ = ["FAILURE_KINDS", "SPLIT_PARTS", "ExtensionStats", "percentile"]

#: Why a handler call can fail (derived from :class:`ext_sdk.combine.FailureKind`).
FAILURE_KINDS: Final = tuple(kind.value for kind in FailureKind)
#: The parts of a round trip's latency split, in order.
SPLIT_PARTS: Final = ("host", "transit", "extension")


def percentile(samples: list[float], q: float) -> float | None:
    """Nearest-rank percentile of ``samples`` (``None`` when empty)."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


class ExtensionStats:
    """Thread-safe counters for one extension."""

    def __init__(self, window: int = 4096) -> None:
        self._lock = threading.Lock()
        #: Handler calls that returned a valid reply.
        self.handled = 0
        #: Notify events delivered (each item of a batch counts).
        self.notified = 0
        #: Notify events dropped because the queue was full.
        self.notify_dropped = 0
        #: Failures by kind.
        self.failures: Counter[str] = Counter()
        #: Failures whose policy let the event go on.
        self.fail_open = 0
        #: Failures whose policy blocked/cancelled the event.
        self.fail_closed = 0
        #: Events stopped (blocked/cancelled/handled) by a valid result of this extension.
        self.stopped = 0
        self._latency_us: deque[float] = deque(maxlen=window)
        self._split_us: deque[tuple[float, float, float]] = deque(maxlen=window)

    def record_ok(self, micros: float) -> None:
        with self._lock:
            self.handled += 1
            self._latency_us.append(micros)

    def record_split(self, host_us: float, transit_us: float, extension_us: float) -> None:
        """Where one successful round trip's time went (see the module doc)."""
        self._split_us.append((host_us, transit_us, extension_us))  # one atomic append: no lock needed

    def record_failure(self, kind: FailureKind, policy: Policy) -> None:
        with self._lock:
            self.failures[kind] += 1
            if policy == Policy.CLOSED:
                self.fail_closed += 1
            else:
                self.fail_open += 1

    def record_notified(self, count: int) -> None:
        with self._lock:
            self.notified += count

    def record_dropped(self, count: int = 1) -> None:
        with self._lock:
            self.notify_dropped += count

    def record_stop(self) -> None:
        with self._lock:
            self.stopped += 1

    def latencies(self) -> list[float]:
        """A copy of the latency window (µs)."""
        with self._lock:
            return list(self._latency_us)

    def split(self) -> dict[str, dict[str, float | None]] | None:
        """``{"host"|"transit"|"extension": {"p50_us", "p99_us"}}`` over the split window; ``None`` when empty."""
        samples = list(self._split_us)  # one C-level copy under the GIL: consistent with concurrent appends
        if not samples:
            return None
        rings = [[s[i] for s in samples] for i in range(len(SPLIT_PARTS))]
        return {part: {"p50_us": percentile(ring, 50), "p99_us": percentile(ring, 99)}
                for part, ring in zip(SPLIT_PARTS, rings, strict=True)}

    def snapshot(self) -> dict[str, object]:
        """Plain-data view for ``--json`` and status tables."""
        lat = self.latencies()
        split = self.split()
        with self._lock:
            return {
                "handled": self.handled,
                "notified": self.notified,
                "notify_dropped": self.notify_dropped,
                "stopped": self.stopped,
                "failures": dict(self.failures),
                "timeouts": self.failures.get(FailureKind.TIMEOUT, 0) + self.failures.get(FailureKind.BUDGET, 0),
                "fail_open": self.fail_open,
                "fail_closed": self.fail_closed,
                "latency_p50_us": percentile(lat, 50),
                "latency_p99_us": percentile(lat, 99),
                "latency_split": split,
            }
