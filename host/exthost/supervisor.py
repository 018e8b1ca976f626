"""Supervision: lifecycle states, restart decisions, the per-extension watchdog, and the supervisor thread.

The states of an extension (every transition is recorded with its reason)::

    starting → ready → (degraded) → restarting → ready | dead
                    └──────────────────────────────────→ stopped

One thread per host (:class:`Supervisor`) ticks every :data:`TICK_S` (and at
once when a process exits or a backoff is over) and, for each extension,
calls its ``supervise`` step, which consults the extension's
:class:`Watchdog`:

* **exit** — the process is gone (exit status or signal, in words) →
  :meth:`RestartPolicy.after_exit` decides: ``restarting`` with the next
  backoff delay, ``dead`` or ``stopped``;
* **heartbeat** — ``ping`` on the control channel every ``heartbeat_ms``; the
  SDK answers from a thread, so a long handler never looks dead. No ``pong``
  for ``hang_ms`` → **hung**: killed and handled as a crash with reason
  ``hung: no heartbeat for N s``. A handler past its deadline is only
  **slow** (the event moved on; ``slow_warn_per_min`` of those in a minute
  make the extension ``degraded`` and name it in a rate-limited warning; 20
  answers in time bring it back) — until it has run for ``stuck_ms`` (as the
  pong reports): then it is **stuck**, since every later event to it would
  time out, and it is killed with reason ``stuck: <event> handler running for N s``;
* **resources** — every ``watch_ms``, RSS, CPU time, threads, fds and children
  of the whole process tree (psutil); a limit crossed → killed with the reason
  (``killed: memory limit 512 MiB (rss 530 MiB)``). Memory is counted once per
  extension: where its launch has a cgroup with a memory limit (the caller
  passes ``cgroup_memory``), the kernel is the hard limit (an out-of-memory
  kill, reported by the cgroup) and the watchdog never kills on the summed
  RSS (shared pages are counted once per process there); it reports the
  cgroup's usage instead (``Resources.memory_source`` ``"cgroup"``);
* **restart** — when a ``restarting`` extension's delay is due, it is
  respawned from the supervisor thread (the parent-death signal is tied to the
  spawning thread, so a long-lived thread must spawn) and its handshake is
  awaited on a short-lived worker thread.

Restart rules (:class:`RestartPolicy`), after each exit:

1. mode ``never``: ``stopped`` after a clean exit (status 0), else ``dead``;
2. a clean exit under ``on-failure`` → ``stopped``;
3. an exit status in ``no_retry_exit_codes`` (bad code, handshake refused) → ``dead``;
4. **event crashes**: an exit *during a handler* (a request was in flight) of a
   process that never answered an event since it started is an event crash; a
   process that answered one (any run, however it ended) resets the count.
   ``event_crash_limit`` event crashes in a row → ``dead``, however far apart
   they are (an extension that dies on every event, at human pace: rules 5–6
   alone would restart it forever, since events minutes apart make every run
   "stable" and never fill the crash window);
5. a run that lasted ``stable_after_s`` resets the crash history and backoff
   (not the event-crash count);
6. the crash is recorded; ``crash_limit`` crashes within ``crash_window_s`` → ``dead``;
7. otherwise ``restarting``: **at once** when the crash history is empty (the
   first crash, or the first after a stable run: a process that ran well and
   died once should be back in tens of milliseconds); inside a crash loop
   (earlier crashes in the window) after the current backoff, which starts at
   ``backoff_initial_ms`` and doubles up to ``backoff_max_ms``.

``dead`` lasts until the operator restarts it (``kithost ext restart NAME``),
which also forgets every count.

A process the host killed (hung, stuck, over a limit) has no exit status of
its own: rules 1–3 see it as a crash (and rule 4 as an event crash when a
request was in flight). Events that arrive while an extension
is restarting or dead fail at once with ``not_running`` and follow that
handler's failure policy (counted).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

import psutil

from ..config import RestartMode, Supervision
from .process import descendants

__all__ = ["TICK_S", "ExitDecision", "ExtState", "Resources", "RestartPolicy", "Supervisor", "Watchdog",
           "restart_cause"]

log = logging.getLogger("kithost.supervisor")

#: How often the supervisor looks at every extension.
TICK_S = 0.05

#: A clock: seconds, monotonic (``time.monotonic``; tests pass a fake one).
Clock = Callable[[], float]


class ExtState(StrEnum):
    """Lifecycle state of an extension (see the module doc)."""

    STARTING = "starting"
    READY = "ready"
    DEGRADED = "degraded"
    RESTARTING = "restarting"
    DEAD = "dead"
    STOPPED = "stopped"

    @property
    def running(self) -> bool:
        """Whether events are delivered in this state."""
        return self is ExtState.READY or self is ExtState.DEGRADED


@dataclass(frozen=True, slots=True)
class ExitDecision:
    """What to do after an extension's process ended."""

    #: ``restarting``, ``dead`` or ``stopped``.
    state: ExtState
    #: Delay before the restart (seconds), when restarting.
    delay_s: float
    #: Why, in words (recorded as the transition reason).
    reason: str


_RESTARTING_IN = "; restarting in "


def restart_cause(reason: str) -> str:
    """What made a process end, from the reason of a ``restarting`` decision (its delay taken off)."""
    head, sep, _ = reason.rpartition(_RESTARTING_IN)
    return head if sep else reason


@dataclass
class RestartPolicy:
    """Crash history and backoff of one extension (pure logic: no threads, no I/O; time from ``clock``)."""

    config: Supervision
    mode: RestartMode
    clock: Clock = time.monotonic
    crashes: deque[float] = field(default_factory=deque)
    backoff_s: float = 0.0
    #: Event crashes in a row (rule 4): exits during a handler of processes that never answered an event.
    event_crashes: int = 0

    def __post_init__(self) -> None:
        self.backoff_s = self.config.backoff_initial_ms / 1000

    def after_exit(self, ran_s: float, exit_code: int | None, cause: str, *, in_handler: bool = False,
                   answered: bool = False) -> ExitDecision:
        """Decide after an exit (rules in the module doc).

        ``exit_code`` is the status of a process that exited by itself (``None`` when
        the host killed it); ``cause`` says what happened, in words. ``in_handler``:
        a request was in flight when it ended; ``answered``: the process answered
        at least one event since it started.
        """
        cfg = self.config
        now = self.clock()
        clean = exit_code == 0
        if self.mode is RestartMode.NEVER:
            return ExitDecision(ExtState.STOPPED if clean else ExtState.DEAD, 0.0, f"{cause}; restart policy 'never'")
        if clean and self.mode is RestartMode.ON_FAILURE:
            return ExitDecision(ExtState.STOPPED, 0.0, f"{cause} (clean exit; restart policy 'on-failure')")
        if exit_code is not None and exit_code in cfg.no_retry_exit_codes:
            return ExitDecision(ExtState.DEAD, 0.0, f"{cause}: the extension reports a broken setup; not retried")
        if answered:
            self.event_crashes = 0
        elif in_handler:
            self.event_crashes += 1
            if cfg.event_crash_limit and self.event_crashes >= cfg.event_crash_limit:
                return ExitDecision(ExtState.DEAD, 0.0, f"{cause}; died during a handler {self.event_crashes} times "
                                                        "in a row without answering any event: it crashes on every "
                                                        "event, not restarted")
        if ran_s >= cfg.stable_after_s:
            self._forget_crashes()
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > cfg.crash_window_s:
            self.crashes.popleft()
        if len(self.crashes) >= cfg.crash_limit:
            return ExitDecision(ExtState.DEAD, 0.0, f"{cause}; {len(self.crashes)} crashes within "
                                                    f"{cfg.crash_window_s:.0f} s: crash loop, not restarted")
        if len(self.crashes) == 1:  # the first crash since a stable run (or ever): no crash loop, restart at once
            delay = 0.0
        else:
            delay = self.backoff_s
            self.backoff_s = min(self.backoff_s * 2, cfg.backoff_max_ms / 1000)
        return ExitDecision(ExtState.RESTARTING, delay, f"{cause}{_RESTARTING_IN}{delay * 1000:.0f} ms")

    def reset(self) -> None:
        """Forget every count (an operator restart)."""
        self._forget_crashes()
        self.event_crashes = 0

    def _forget_crashes(self) -> None:
        """A stable run: the crash window and the backoff start over (event crashes are counted on)."""
        self.crashes.clear()
        self.backoff_s = self.config.backoff_initial_ms / 1000


@dataclass(frozen=True, slots=True)
class Resources:
    """One sample of an extension's process tree."""

    rss_bytes: int
    cpu_seconds: float
    cpu_percent: float
    threads: int
    fds: int
    children: int
    #: What ``rss_bytes`` counts: ``"rss"`` (summed over the tree's processes) or ``"cgroup"`` (the
    #: extension's cgroup usage: every page once, the kernel's hard limit applies to it).
    memory_source: str = "rss"

    def as_dict(self) -> dict[str, float | int | str]:
        return {"rss_bytes": self.rss_bytes, "cpu_seconds": round(self.cpu_seconds, 3),
                "cpu_percent": round(self.cpu_percent, 1), "threads": self.threads, "fds": self.fds,
                "children": self.children, "memory_source": self.memory_source}


def sample_tree(proc: psutil.Process, previous: tuple[float, float] | None) -> tuple[Resources, tuple[float, float]]:
    """Sample ``proc`` and its descendants; ``previous`` = ``(wall, cpu)`` of the last sample."""
    rss = threads = fds = 0
    cpu = 0.0
    family = [proc, *descendants(proc)]
    for p in family:
        try:
            with p.oneshot():
                rss += p.memory_info().rss
                times = p.cpu_times()
                cpu += times.user + times.system
                threads += p.num_threads()
                fds += p.num_fds()
        except psutil.Error:
            continue
    now = time.monotonic()
    percent = 0.0
    if previous is not None and now > previous[0]:
        percent = max(0.0, (cpu - previous[1]) / (now - previous[0]) * 100)
    return Resources(rss, cpu, percent, threads, fds, len(family) - 1), (now, cpu)


def limit_exceeded(cfg: Supervision, res: Resources, memory_enforced: bool = False) -> str | None:
    """The reason a sample breaks a limit, or ``None``.

    ``memory_enforced``: the kernel holds the memory limit (a cgroup): memory is then never a reason here."""
    mib = 1024 * 1024
    if cfg.memory_mb and not memory_enforced and res.rss_bytes > cfg.memory_mb * mib:
        return f"killed: memory limit {cfg.memory_mb} MiB (rss {res.rss_bytes / mib:.0f} MiB)"
    if cfg.cpu_seconds and res.cpu_seconds > cfg.cpu_seconds:
        return f"killed: CPU limit {cfg.cpu_seconds:g} s (used {res.cpu_seconds:.1f} s)"
    if cfg.max_threads and res.threads > cfg.max_threads:
        return f"killed: thread limit {cfg.max_threads} ({res.threads} threads)"
    if cfg.max_fds and res.fds > cfg.max_fds:
        return f"killed: file descriptor limit {cfg.max_fds} ({res.fds} open)"
    if cfg.max_children and res.children > cfg.max_children:
        return f"killed: child process limit {cfg.max_children} ({res.children} children)"
    return None


class Watchdog:
    """Heartbeat, stuck-handler, resource and slowness watch of one extension's current process.

    Used by its extension handle only from the supervisor thread (:meth:`check`)
    and from whoever saw a handler's outcome (:meth:`note_slow`, :meth:`note_ok`).
    """

    def __init__(self, name: str, config: Supervision, clock: Clock = time.monotonic) -> None:
        self.name = name
        self.config = config
        self._clock = clock
        #: Last resource sample of the process tree.
        self.resources: Resources | None = None
        #: What the last pong said: ``(busy, current event, busy ms)``.
        self.last_pong_info: tuple[bool, str | None, int] = (False, None, 0)
        self._cpu_prev: tuple[float, float] | None = None
        self._last_pong = 0.0
        self._next_ping = 0.0
        self._next_watch = 0.0
        self._ping_outstanding = False
        self._slow: deque[float] = deque()
        self._slow_warned_at = -60.0
        self._last_slow = ""
        self._consecutive_ok = 0

    def reset(self) -> None:
        """A new process finished its handshake: nothing the previous one said counts."""
        now = self._clock()
        self._last_pong = now
        self.last_pong_info = (False, None, 0)
        self._ping_outstanding = False
        self._next_ping = now + self.config.heartbeat_ms / 1000
        self._next_watch = now
        self._consecutive_ok = 0
        self._cpu_prev = None
        self.resources = None

    def check(self, pid: int | None, poll_pong: Callable[[], dict[str, object] | None],
              send_ping: Callable[[], None], cgroup_memory: Callable[[], int | None] | None = None) -> str | None:
        """One watch step; the reason to kill the process (hung, stuck, over a limit) or ``None``.

        ``pid``: the local process tree to sample for resource limits; ``None`` for a process on a remote
        worker (its machine's cgroup limits apply there; heartbeat and stuck checks work the same).
        ``cgroup_memory``: given when the launch's cgroup has a memory limit — the kernel enforces it, so
        the summed RSS is never a reason to kill; the callable returns the cgroup's usage (``None``: not
        readable, the RSS sum is then shown), reported as the sample's memory."""
        cfg = self.config
        now = self._clock()
        # Only look for a pong while one is outstanding: every socket call releases the GIL, and under a
        # busy main thread each re-acquire can cost a switch interval (the tick must stay cheap).
        pong = poll_pong() if self._ping_outstanding else None
        if pong is not None:
            self._ping_outstanding = False
            self._last_pong = now
            current = pong.get("current")
            self.last_pong_info = (bool(pong["busy"]), current if isinstance(current, str) else None,
                                   int(pong["busy_ms"]))  # type: ignore[call-overload]
        if now - self._last_pong > cfg.hang_ms / 1000:
            return f"hung: no heartbeat for {(now - self._last_pong):.1f} s"
        busy, current, busy_ms = self.last_pong_info
        if busy and cfg.stuck_ms and busy_ms > cfg.stuck_ms:
            # Alive but one handler has run far past any deadline: every later event would time out.
            return f"stuck: {current} handler running for {busy_ms / 1000:.0f} s"
        if now >= self._next_ping:
            self._next_ping = now + cfg.heartbeat_ms / 1000
            send_ping()
            self._ping_outstanding = True
        if pid is not None and now >= self._next_watch:
            self._next_watch = now + cfg.watch_ms / 1000
            try:
                sample, self._cpu_prev = sample_tree(psutil.Process(pid), self._cpu_prev)
            except psutil.Error:
                return None
            if cgroup_memory is not None:
                used = cgroup_memory()
                if used is not None:
                    sample = replace(sample, rss_bytes=used, memory_source="cgroup")
            self.resources = sample
            return limit_exceeded(cfg, sample, memory_enforced=cgroup_memory is not None)
        return None

    def note_slow(self, detail: str = "") -> bool:
        """A handler ran past its deadline; ``True`` when that makes ``slow_warn_per_min`` in the last minute."""
        now = self._clock()
        busy = self.last_pong_info
        what = f"{busy[1]} handler" if busy[0] and busy[1] else "a handler"
        self._last_slow = f"{what} ({detail})" if detail else what
        self._consecutive_ok = 0
        self._slow.append(now)
        while self._slow and now - self._slow[0] > 60:
            self._slow.popleft()
        slow = len(self._slow) >= self.config.slow_warn_per_min
        if slow and now - self._slow_warned_at > 60:
            self._slow_warned_at = now
            log.warning("extension %s is slow: %d handler timeout(s) in the last minute; last: %s", self.name,
                        len(self._slow), self._last_slow)
        return slow

    def slow_count(self) -> int:
        """Handler timeouts in the last minute (as last counted)."""
        return len(self._slow)

    def note_ok(self) -> bool:
        """A handler answered in time; ``True`` once 20 in a row did (a degraded extension recovered)."""
        self._consecutive_ok += 1
        if self._consecutive_ok >= 20:
            self._slow.clear()
            return True
        return False


class Supervisor(threading.Thread):
    """Watches every extension of one host (see the module doc)."""

    def __init__(self, tick: Callable[[], None], tick_s: float = TICK_S) -> None:
        super().__init__(name="kithost-supervisor", daemon=True)
        self._tick = tick
        self._tick_s = tick_s
        self._stopping = threading.Event()
        self._wake = threading.Event()

    def wake(self) -> None:
        """Tick now (a process exited: no need to wait for the next tick)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self.join(timeout=10)

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._tick_s)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._tick()
            except Exception:
                log.exception("supervisor tick failed")
