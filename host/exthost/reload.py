"""Hot reload of one extension: the switch gate, the trust re-check and the result (pure parts).

What a reload does (:meth:`host.exthost.host.ExtensionHost.reload`; the
process side is :meth:`host.exthost.extension.RunningExtension.prepare_replacement`
and :meth:`~host.exthost.extension.RunningExtension.switch_to`):

1. read the manifest again and re-check what it asks against what the
   operator granted (:func:`regrant`); a manifest that cannot be read, a
   changed name or a request for more than was granted ends the reload here;
2. start the new version in a launch of its own and finish its handshake
   while the old process keeps serving; if the host has dispatched a
   ``session_start`` (and no ``session_shutdown`` since), the new process gets
   that payload again before anything else; any failure (import error,
   refused handshake, timeout) kills the new process and leaves the old one
   running, with the reason in the :class:`ReloadResult` — nothing is cached,
   the next reload starts from the files again;
3. switch between two events: the extension's :class:`SwitchGate` closes
   (gate/chain dispatch to it waits; a handler already running finishes on
   the old process), its exchange lock is taken (a notify batch or tool call
   in flight finishes on the old process), then process, channel, manifest,
   grant and declared handlers are swapped and the dispatcher's routes of the
   extension are replaced in one table swap, all before the gate opens again.
   Queued notify events stay in the extension's FIFO and go to the new
   process, in order, after its ``session_start``;
4. stop the old process (shutdown ladder). The extension keeps its name,
   load order, state in the host's store, counters and log; its restart
   count does not change (``reloads`` counts reloads).

A gate/chain event routed before the switch but sent after it (it read the
old routing table) goes to the new version's handler for the same event at
the same position among the extension's handlers for that event; if the new
version has no such handler, the extension has nothing to say about that
event (``None``). Every event is sent exactly once, to one process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, final

from ext_sdk.hostcalls import ALWAYS_GRANTED

from ..config import Access
from ..errors import HostError
from .handshake import Granted
from .trust import Grant, Request, Verdict

__all__ = ["ReloadFailed", "ReloadResult", "SwitchGate", "describe_changes", "regrant"]


class ReloadFailed(HostError):
    """A new version did not take over; the old one (if it was running) keeps serving."""

    def __init__(self, name: str, reason: str, log_tail: str = "") -> None:
        super().__init__(f"{name}: reload failed: {reason}")
        #: The extension.
        self.name = name
        #: Why, in words.
        self.reason = reason
        #: The new version's last output lines (when it started at all).
        self.log_tail = log_tail


@final
class SwitchGate:
    """Lets dispatch through (many at once) until a reload closes it to switch processes.

    :meth:`enter`/:meth:`leave` bracket one handler call; :meth:`closed`
    stops new entries, waits until every call inside has left, and reopens on exit.
    """

    __slots__ = ("_closed", "_cond", "_inside", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._inside = 0
        self._closed = False

    def enter(self, timeout_s: float) -> bool:
        """Enter for one call; ``False`` if the gate stayed closed for ``timeout_s``."""
        with self._lock:  # the hot path: one uncontended lock, no Condition machinery
            if not self._closed:
                self._inside += 1
                return True
            if not self._cond.wait_for(lambda: not self._closed, timeout_s):
                return False
            self._inside += 1
            return True

    def leave(self) -> None:
        """The call that entered is over."""
        with self._lock:
            self._inside -= 1
            if self._closed and not self._inside:
                self._cond.notify_all()

    @property
    def inside(self) -> int:
        """Calls in progress."""
        return self._inside

    @contextmanager
    def closed(self, timeout_s: float) -> Iterator[bool]:
        """Close the gate; yields whether every call inside left within ``timeout_s``; reopens on exit.

        Only one holder at a time (the host serialises reloads).
        """
        with self._cond:
            self._closed = True
            drained = self._cond.wait_for(lambda: not self._inside, timeout_s)
        try:
            yield drained
        finally:
            with self._cond:
                self._closed = False
                self._cond.notify_all()


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What one reload did."""

    #: The extension.
    name: str
    #: Whether the new version is the one serving now.
    ok: bool
    #: Why not (empty when ``ok``): the old version, if it was running, still serves.
    reason: str = ""
    #: Version string of the process serving after the reload.
    version: str = ""
    #: Pid of the process serving after the reload (``None`` if none runs).
    pid: int | None = None
    #: What changed, in words (handlers, tools, commands, version).
    changes: tuple[str, ...] = ()
    #: Last output lines of a new version that failed to start.
    log_tail: str = ""
    #: Wall time of the reload in milliseconds.
    elapsed_ms: float = 0.0
    #: When it ended (``time.time()``).
    at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """Plain data (operator channel, ``--json``)."""
        return {"name": self.name, "ok": self.ok, "reason": self.reason, "version": self.version, "pid": self.pid,
                "changes": list(self.changes), "log_tail": self.log_tail, "elapsed_ms": round(self.elapsed_ms, 1),
                "at": self.at}

    def describe(self) -> str:
        """One line for people."""
        if not self.ok:
            return f"{self.name}: reload failed: {self.reason}"
        what = "; ".join(self.changes) or "no change in handlers, tools or commands"
        return f"{self.name}: reloaded (version {self.version or '?'}, pid {self.pid}): {what}"


def _access_more(new: Access, granted: Access) -> list[str]:
    out = [f"network: {t}" for t in new.network if str(t) not in {str(g) for g in granted.network}]
    out += [f"read: {p}" for p in new.read if str(p) not in {str(g) for g in granted.read}]
    out += [f"write: {p}" for p in new.write if str(p) not in {str(g) for g in granted.write}]
    if new.processes and not granted.processes:
        out.append("start other programs")
    return out


def regrant(running: Grant, before: Request, verdict: Verdict) -> tuple[Grant | None, str]:
    """The grant of a reloaded version: ``(grant, "")``, or ``(None, reason)`` when it must not start.

    ``running`` is what the serving version was granted, ``before`` what it asked, ``verdict`` the
    trust decision on the new files (:func:`host.exthost.trust.decide`). Rules:

    1. the verdict grants it (operator config, trust file entry for exactly these files, ``trust = "all"``,
       or it asks for nothing) → that grant;
    2. it asks for nothing beyond what the running version was granted and asked (host calls, access,
       content events) → the same grant narrowed to what it now asks — an edit does not need a new trust
       step; the trust file is not changed (a later host start pins the content again as usual);
    3. otherwise → refused, saying what is new and how to grant it.
    """
    if verdict.grant is not None:
        return verdict.grant, ""
    new = verdict.request
    more = [f"host calls: {p}" for p in sorted(new.permissions - running.permissions)]
    more += [f"conversation content through: {e}" for e in new.content_events if e not in before.content_events]
    more += _access_more(new.access, running.access)
    if not more:
        return Grant(new.permissions | ALWAYS_GRANTED, new.access, running.source), ""
    return None, (f"the new version asks for more than it was granted ({'; '.join(more)}); {verdict.reason}; "
                  f"then reload it again")


def describe_changes(old: Granted, new: Granted) -> tuple[str, ...]:
    """What differs between two handshakes of one extension, in words."""
    out: list[str] = []
    if old.version != new.version:
        out.append(f"version {old.version or '?'} → {new.version or '?'}")

    def diff(label: str, before: list[str], after: list[str]) -> None:
        added = [x for x in dict.fromkeys(after) if x not in before]
        removed = [x for x in dict.fromkeys(before) if x not in after]
        if added:
            out.append(f"new {label}: {', '.join(added)}")
        if removed:
            out.append(f"dropped {label}: {', '.join(removed)}")

    diff("events", [h.event for h in old.handlers], [h.event for h in new.handlers])
    diff("tools", [t["name"] for t in old.tools], [t["name"] for t in new.tools])
    diff("commands", [c["name"] for c in old.commands], [c["name"] for c in new.commands])
    return tuple(out)
