"""Supervision: restarts with backoff, hang detection, resource limits, slow-handler warnings.

One thread per host (:class:`Supervisor`) ticks every :data:`TICK_S` and, for
each extension:

* **exit** — the process is gone (exit status or signal, in words) →
  :meth:`RestartPolicy.after_exit` decides: ``restarting`` with the next
  backoff delay, or ``dead``;
* **heartbeat** — sends ``ping`` on the control channel every
  ``heartbeat_ms``; the SDK answers from a thread, so a long handler never
  looks dead. No ``pong`` for ``hang_ms`` → the process is **hung**: it is
  killed and handled as a crash with reason ``hung: no heartbeat for N s``.
  A handler past its deadline is only **slow** (the event moved on; the
  extension is ``degraded`` and named in a rate-limited warning) — until it
  has run for ``stuck_ms`` (60 s, as the pong reports): then it is **stuck**,
  since every later event to it would time out, and it is killed and
  restarted with reason ``stuck: <event> handler running for N s``;
* **resources** — every ``watch_ms``, RSS, CPU time, threads, fds and
  children of the whole process tree (psutil); a limit crossed → killed with
  the reason (``killed: memory limit 512 MiB (rss 530 MiB)``);
* **restart** — when a ``restarting`` extension's delay is due, it is
  respawned here (spawning from this long-lived thread matters: the
  parent-death signal is tied to the spawning thread) and its handshake is
  awaited on a short-lived worker thread.

Restart rules (:class:`RestartPolicy`), after each exit:

1. policy ``never``, or a clean exit (status 0) under ``on-failure`` → ``dead``
   / ``stopped`` as appropriate, no restart;
2. an exit status in ``no_retry_exit_codes`` (bad config, protocol refused) → ``dead``;
3. a run that lasted ``stable_after_s`` resets the crash history and backoff;
4. the crash is recorded; ``crash_limit`` crashes within ``crash_window_s`` → ``dead``
   (until the operator restarts it: ``kithost ext restart NAME``);
5. otherwise ``restarting`` after the current backoff, which then doubles
   (``backoff_initial_ms`` … ``backoff_max_ms``).

Events that arrive while an extension is restarting or dead fail at once
with ``not_running`` and follow that handler's failure policy (counted).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from ..config import Supervision

__all__ = ["TICK_S", "ExitDecision", "Resources", "RestartPolicy", "Supervisor"]

log = logging.getLogger("kithost.supervisor")

#: How often the supervisor looks at every extension.
TICK_S = 0.05


@dataclass(frozen=True, slots=True)
class ExitDecision:
    """What to do after an extension's process ended."""

    #: ``restarting``, ``dead`` or ``stopped``.
    state: str
    #: Delay before the restart (seconds), when restarting.
    delay_s: float
    #: Why, in words (recorded as the transition reason).
    reason: str


@dataclass
class RestartPolicy:
    """Crash history and backoff of one extension (pure logic; no threads, no I/O)."""

    config: Supervision
    #: ``on-failure`` | ``always`` | ``never``.
    mode: str
    crashes: deque[float] = field(default_factory=deque)
    backoff_s: float = 0.0

    def __post_init__(self) -> None:
        self.backoff_s = self.config.backoff_initial_ms / 1000

    def after_exit(self, now: float, ran_s: float, exit_code: int | None, cause: str) -> ExitDecision:
        """Decide after an exit. ``cause`` describes it (``exited with status 1``, ``hung: ...``)."""
        cfg = self.config
        clean = exit_code == 0 and cause.startswith("exited")
        if self.mode == "never":
            return ExitDecision("dead" if not clean else "stopped", 0.0, f"{cause}; restart policy 'never'")
        if clean and self.mode == "on-failure":
            return ExitDecision("stopped", 0.0, f"{cause} (clean exit; restart policy 'on-failure')")
        if exit_code is not None and exit_code in cfg.no_retry_exit_codes and cause.startswith("exited"):
            return ExitDecision("dead", 0.0, f"{cause}: the extension reports a broken setup; not retried")
        if ran_s >= cfg.stable_after_s:
            self.crashes.clear()
            self.backoff_s = cfg.backoff_initial_ms / 1000
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > cfg.crash_window_s:
            self.crashes.popleft()
        if len(self.crashes) >= cfg.crash_limit:
            return ExitDecision("dead", 0.0, f"{cause}; {len(self.crashes)} crashes within "
                                             f"{cfg.crash_window_s:.0f} s: crash loop, not restarted")
        delay = self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, cfg.backoff_max_ms / 1000)
        return ExitDecision("restarting", delay, f"{cause}; restarting in {delay * 1000:.0f} ms")

    def reset(self) -> None:
        """Forget the crash history (an operator restart)."""
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

    def as_dict(self) -> dict[str, float | int]:
        return {"rss_bytes": self.rss_bytes, "cpu_seconds": round(self.cpu_seconds, 3),
                "cpu_percent": round(self.cpu_percent, 1), "threads": self.threads, "fds": self.fds,
                "children": self.children}


def sample_tree(proc: psutil.Process, previous: tuple[float, float] | None) -> tuple[Resources, tuple[float, float]]:
    """Sample ``proc`` and its descendants; ``previous`` = ``(wall, cpu)`` of the last sample."""
    rss = threads = fds = 0
    cpu = 0.0
    family = [proc]
    try:
        family += proc.children(recursive=True)
    except psutil.Error:
        pass
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


def limit_exceeded(cfg: Supervision, res: Resources) -> str | None:
    """The reason a sample breaks a limit, or ``None``."""
    mib = 1024 * 1024
    if cfg.memory_mb and res.rss_bytes > cfg.memory_mb * mib:
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
