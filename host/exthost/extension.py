"""One loaded extension: its process, channel, handshake, notify queue and counters.

Lifecycle states (every transition is recorded with its reason)::

    starting → ready → (degraded) → restarting → ready | dead
                    └──────────────────────────────────→ stopped

Ordering rule: everything sent to one extension — gate and chain requests
from the dispatching thread, notify batches from the delivery thread — goes
through ``lock``; a request first takes any queued notify events with it
(one ``batch``, in the order they happened), so the extension sees its
events in order whatever their mode.

Failure policy hooks: :meth:`call_handler` raises
:class:`~.outcome.HandlerFailure`; it never lets a channel or schema error
escape.
"""

from __future__ import annotations

import enum
import logging
import os
import secrets
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import zmq

from ext_sdk.events import EventSpec, spec_for
from ext_sdk.hostcalls import ALWAYS_GRANTED
from ext_sdk.schema import SchemaError
from ext_sdk.wire import choose_version

from ..config import HostConfig
from ..errors import ExtensionStartError
from .channel import Channel, ChannelFailure
from .launch import Endpoints, build_launch
from .manifest import Manifest
from .outcome import HandlerFailure
from .policy import effective_deadline_ms, effective_policy
from .process import ExtensionProcess, LogBuffer, ShutdownRung, describe_exit
from .stats import ExtensionStats
from .supervisor import ExitDecision, Resources, RestartPolicy, limit_exceeded, sample_tree

if TYPE_CHECKING:
    from .hostcalls import HostCallRouter

__all__ = ["ExtState", "HandlerDecl", "RunningExtension"]

log = logging.getLogger("kithost.ext")


class ExtState(enum.Enum):
    """Lifecycle state of an extension."""

    STARTING = "starting"
    READY = "ready"
    DEGRADED = "degraded"
    RESTARTING = "restarting"
    DEAD = "dead"
    STOPPED = "stopped"


#: State entered for each :class:`ExitDecision` state.
_DECIDED: dict[str, ExtState] = {"restarting": ExtState.RESTARTING, "dead": ExtState.DEAD,
                                 "stopped": ExtState.STOPPED}


@dataclass(frozen=True, slots=True)
class HandlerDecl:
    """One subscription after the handshake, with its effective deadline and policy."""

    index: int
    event: str
    priority: int
    deadline_s: float
    policy: str


@dataclass(slots=True)
class _Pending:
    event: str
    data: dict[str, Any]
    deadline_s: float


@dataclass
class Transition:
    """One state change."""

    at: float
    old: str
    new: str
    reason: str


@dataclass
class _Declared:
    version: str = ""
    sdk: str = ""
    protocol: int = 0
    handlers: list[HandlerDecl] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)


class RunningExtension:
    """Host-side handle of one extension."""

    def __init__(self, manifest: Manifest, load_order: int, config: HostConfig, router: HostCallRouter,
                 zctx: zmq.Context[zmq.Socket[bytes]], runtime_dir: Path) -> None:
        self.manifest = manifest
        self.name = manifest.name
        self.load_order = load_order
        self.config = config
        self.router = router
        self._zctx = zctx
        self._runtime_dir = runtime_dir
        #: Serialises every use of the events/calls sockets (see module doc).
        self.lock = threading.Lock()
        self.stats = ExtensionStats()
        self.log = LogBuffer(config.limits.log_lines, config.limits.log_line_bytes)
        ext_log = logging.getLogger(f"kithost.ext.{manifest.name}")
        self.log.listener = lambda stream, line: ext_log.info("[%s] %s", manifest.name, line)
        self.state = ExtState.STARTING
        self.transitions: list[Transition] = []
        #: Permissions granted in the handshake.
        self.granted: frozenset[str] = frozenset()
        self.declared = _Declared()
        self.process: ExtensionProcess | None = None
        self.channel: Channel | None = None
        #: Exit description of the last process that ended, e.g. "killed by SIGKILL".
        self.last_exit = ""
        #: Rung of the shutdown ladder used by the last stop.
        self.last_shutdown: ShutdownRung | None = None
        self._queue: deque[_Pending] = deque()
        self._queue_lock = threading.Lock()
        self._dropped_unreported = 0
        self._endpoints: Endpoints | None = None
        self._in_batch: list[_Pending] = []
        #: Called when notify events wait for delivery (set by the host to wake its delivery thread).
        self.wake_delivery: Callable[[], None] = lambda: None
        #: Called after a restart reached ``ready`` (set by the host to re-route the handlers).
        self.on_ready: Callable[[RunningExtension], None] = lambda ext: None
        #: Called when the process exits (set by the host to wake its supervisor).
        self.wake_supervisor: Callable[[], None] = lambda: None
        # ---- supervision (see supervisor.py); guarded by _state_lock
        self._state_lock = threading.RLock()
        mode = config.restart.get(manifest.name, manifest.restart)
        #: Supervision settings of this extension (operator's per-extension limits applied).
        self.supervision = config.supervision_for(manifest.name)
        self.restart_policy = RestartPolicy(self.supervision, mode)
        #: Successful restarts since load.
        self.restarts = 0
        #: When a ``restarting`` extension is due to be respawned (``time.monotonic()``).
        self.next_restart_at: float | None = None
        #: Last resource sample of the process tree.
        self.resources: Resources | None = None
        self._cpu_prev: tuple[float, float] | None = None
        self._next_watch = 0.0
        self._next_ping = 0.0
        self._last_pong = 0.0
        #: What the last pong said: ``(busy, current event, busy ms)``.
        self.last_pong_info: tuple[bool, str | None, int] = (False, None, 0)
        self._slow: deque[float] = deque()
        self._slow_warned_at = 0.0
        self._consecutive_ok = 0
        self._restart_thread: threading.Thread | None = None
        self._kill_reason: str | None = None
        self._stopping = False
        self._last_slow = ""
        self._ping_outstanding = False
        self._notify_warned_at = -10.0
        self._notify_errors_unlogged = 0

    # ------------------------------------------------------------------ lifecycle

    def _set_state(self, new: ExtState, reason: str) -> None:
        if new is self.state and not reason:
            return
        with self._state_lock:
            self.transitions.append(Transition(time.time(), self.state.value, new.value, reason))
            del self.transitions[:-100]
            old, self.state = self.state, new
        if old is not new and new in (ExtState.DEAD, ExtState.RESTARTING, ExtState.DEGRADED):
            log.warning("extension %s: %s → %s: %s", self.name, old.value, new.value, reason)
        else:
            log.info("extension %s: %s → %s: %s", self.name, old.value, new.value, reason)

    def spawn(self) -> None:
        """Make the private directory, bind the channel, start the process (no waiting)."""
        directory = Path(os.path.join(self._runtime_dir, f"x{self.load_order}"))
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        endpoints = Endpoints(directory)
        endpoints.work_dir.mkdir(mode=0o700, exist_ok=True)
        secret = secrets.token_bytes(32)
        fd = os.open(endpoints.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secret)
        self._endpoints = endpoints
        try:
            self.channel = Channel(self._zctx, endpoints, secret, self.config.limits.max_frame)
            spec = build_launch(self.manifest, endpoints, self._runtime_dir)
            self.process = ExtensionProcess(spec, self.log)
        except (OSError, zmq.ZMQError) as exc:
            self._cleanup_launch()
            self._set_state(ExtState.DEAD, f"could not start: {exc}")
            raise ExtensionStartError(self.name, f"could not start: {exc}") from exc
        self._kill_reason = None
        proc = self.process
        # An exit wakes the supervisor at once (no waiting for its next tick): kill → ready stays close to a
        # cold start. Popen.wait in another thread is safe: Popen serialises its waits.
        threading.Thread(target=lambda: (proc.popen.wait(), self.wake_supervisor()),
                         name=f"kithost-exitwatch-{proc.pid}", daemon=True).start()
        self._set_state(ExtState.STARTING, f"spawned pid {self.process.pid}")

    def finish_start(self) -> None:
        """Wait for the handshake and answer it; raises :class:`ExtensionStartError`."""
        assert self.channel is not None and self.process is not None
        proc = self.process
        try:
            hello = self.channel.wait_hello(self.config.deadlines.start_ms / 1000, proc.alive)
        except ChannelFailure as exc:
            reason = exc.detail
            if not proc.alive() or exc.kind == "disconnected":
                proc.popen.wait(2) if proc.alive() else None
                reason = f"{describe_exit(proc.returncode)} before the handshake"
            self._fail_start(reason)
            raise AssertionError("unreachable") from exc
        finally:
            if self._endpoints is not None:
                self._endpoints.secret_file.unlink(missing_ok=True)
        refusal = self._accept(hello)
        if refusal is not None:
            self.channel.answer_hello("reject", {"reason": refusal})
            self._fail_start(f"handshake refused: {refusal}")
        deadlines = [int(h.deadline_s * 1000) for h in self.declared.handlers]
        self.channel.answer_hello("welcome", {"version": self.declared.protocol, "granted": sorted(self.granted),
                                              "deadlines_ms": deadlines})
        now = time.monotonic()
        self._last_pong = now
        self.last_pong_info = (False, None, 0)  # the previous process's last pong says nothing about this one
        self._ping_outstanding = False
        self._next_ping = now + self.supervision.heartbeat_ms / 1000
        self._next_watch = now
        self._consecutive_ok = 0
        self._set_state(ExtState.READY, f"handshake done (protocol {self.declared.protocol})")

    def _fail_start(self, reason: str) -> None:
        time.sleep(0.05)  # let the last stderr lines arrive
        if self.process is not None:
            self.process.kill()
            self.last_exit = describe_exit(self.process.returncode)
        tail = self.log.tail(12)
        self._cleanup_launch()
        if self.restarts == 0 and self._restart_thread is None:
            self._set_state(ExtState.DEAD, reason)  # a first start that fails is a setup problem: not retried
        raise ExtensionStartError(self.name, reason, tail)

    def _accept(self, hello: dict[str, Any]) -> str | None:
        """Validate the hello against the manifest and config; ``None`` = accepted."""
        from ext_sdk.wire import PROTOCOL_VERSIONS

        version = choose_version(hello["versions"])
        if version is None:
            return f"no common protocol version (extension speaks {hello['versions']}, host speaks " \
                   f"{list(PROTOCOL_VERSIONS)})"
        if hello["name"] != self.name:
            return f"extension calls itself {hello['name']!r} but its manifest says {self.name!r}"
        allowed = set(self.config.permissions.get(self.name, self.manifest.permissions))
        asked = set(hello["permissions"])
        not_in_manifest = asked - set(self.manifest.permissions) - ALWAYS_GRANTED
        if not_in_manifest:
            return f"asks for permission(s) {sorted(not_in_manifest)} that its manifest does not declare"
        granted = frozenset((asked & allowed) | ALWAYS_GRANTED)
        handlers: list[HandlerDecl] = []
        for index, sub in enumerate(hello["subscriptions"]):
            event = sub["event"]
            spec = spec_for(event)
            if spec is None:
                return f"subscribes to unknown event {event!r}"
            if event not in self.manifest.events:
                return f"subscribes to {event!r}, which its manifest does not list in events"
            if spec.exposes_content and "conversation" not in granted:
                return (f"subscribes to {event!r}, which exposes conversation content, but 'conversation' "
                        "was not granted")
            deadline = effective_deadline_ms(self.config, self.name, spec, event, sub.get("deadline_ms"))
            policy = effective_policy(self.config, self.name, spec, event, sub.get("policy"))
            handlers.append(HandlerDecl(index, event, sub["priority"], deadline / 1000, policy))
        self.granted = granted
        self.declared = _Declared(hello["version"], hello["sdk"], version, handlers, list(hello["tools"]),
                                  list(hello["commands"]))
        return None

    def stop(self, reason: str = "host shutting down") -> ShutdownRung:
        """Shutdown ladder; the extension ends ``stopped``."""
        with self._state_lock:
            self._stopping = True  # from now on an exit is expected: no crash handling, no restart
        rung = ShutdownRung.ALREADY_EXITED
        if self.process is not None:
            channel = self.channel

            def polite(timeout: float) -> object:
                if channel is None:
                    return None
                return channel.control_request("shutdown", {"reason": reason}, timeout)

            with self.lock:
                rung = self.process.stop(polite, self.config.deadlines.shutdown_ms / 1000)
                self.last_exit = describe_exit(self.process.returncode)
        self.last_shutdown = rung
        self._cleanup_launch()
        self._set_state(ExtState.STOPPED, f"{reason} ({rung.value})")
        return rung

    def _cleanup_launch(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self._endpoints is not None:
            for name in ("e", "c", "k", "secret"):
                (self._endpoints.directory / name).unlink(missing_ok=True)

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.process is not None and self.process.alive()

    def channel_in_flight(self) -> int | None:
        """Id of the events request being waited on (host calls must carry it)."""
        return self.channel.in_flight if self.channel is not None else None

    def spec_of(self, event: str) -> EventSpec:
        spec = spec_for(event)
        assert spec is not None
        return spec

    # ------------------------------------------------------------------ calls

    def _on_call(self, method: str, args: dict[str, Any], event_id: int | None) -> Any:
        return self.router.handle(self, method, args, event_id)

    def _check_ready(self) -> None:
        if self.state is not ExtState.READY and self.state is not ExtState.DEGRADED:
            raise HandlerFailure("not_running", f"{self.name} is {self.state.value}")
        # No syscall here (this is the hot path): the exit watcher's wait() sets returncode when it exits;
        # a connection dropped for other reasons surfaces from the request's own poll.
        if self.channel is None or self.process is None or self.process.popen.returncode is not None:
            self.process_gone()
            raise HandlerFailure("not_running", f"{self.name} is not running ({self.last_exit})")

    def call_handler(self, decl: HandlerDecl, payload: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        """Run one gate/chain handler; returns its result map or ``None``; raises HandlerFailure."""
        start = time.monotonic()
        if not self.lock.acquire(timeout=timeout_s):
            raise HandlerFailure("busy", f"{self.name} stayed busy for {timeout_s * 1000:.0f} ms")
        try:
            self._check_ready()
            assert self.channel is not None
            item = {"event": decl.event, "handler": decl.index, "data": payload}
            pending, dropped = self._take_pending()
            if pending:
                extra = self._backlog_wait(pending)
                items = [{"event": p.event, "data": p.data} for p in pending] + [item]
                kind, fields = "batch", {"events": items, "dropped": dropped}
            else:
                extra, kind, fields = 0.0, "event", item
            left = timeout_s - (time.monotonic() - start)
            if left <= 0 and not extra:
                raise HandlerFailure("busy", f"{self.name} stayed busy with earlier events for the whole "
                                             f"{timeout_s * 1000:.0f} ms deadline")
            try:
                reply = self.channel.request(kind, fields, max(left, 0.0) + extra, self._on_call)
            except ChannelFailure as exc:
                if pending:
                    self._count_notify_failure(len(pending), exc.kind)
                self._after_failure(exc)
                detail = exc.detail
                if exc.kind == "disconnected" and self.process is not None and not self.process.alive():
                    detail = f"the extension died during the handler ({self.last_exit})"
                raise HandlerFailure(exc.kind, detail) from None
            results = reply["results"]
            if len(results) != len(pending) + 1:
                raise HandlerFailure("bad_frame", f"reply has {len(results)} results for {len(pending) + 1} events")
            if pending:
                self._count_notify_results(results[:-1])
            out = results[-1]
            if not out["ok"]:
                raise HandlerFailure("error", str(out.get("error") or "handler failed"))
            result = out.get("result")
            if result is not None:
                spec = self.spec_of(decl.event)
                try:
                    if spec.result is None:
                        raise SchemaError("result", "this event takes no result")
                    spec.result.check(result, "result")
                except SchemaError as exc:
                    raise HandlerFailure("bad_result", f"bad result for {decl.event}: {exc}") from None
            self.stats.record_ok((time.monotonic() - start) * 1e6)
            if self.state is ExtState.DEGRADED:
                self.note_ok()
            return result  # type: ignore[no-any-return]
        finally:
            self.lock.release()
            if self._queue:  # queued while we held the lock: hand them to the delivery thread
                self.wake_delivery()

    def _after_failure(self, exc: ChannelFailure) -> None:
        if exc.kind == "disconnected" and self.process is not None:
            try:  # the socket closes a moment before the exit status is there: give it that moment
                self.process.popen.wait(0.25)
            except subprocess.TimeoutExpired:
                return  # still running: it dropped the connection (oversized frame), not a crash
            self.process_gone()
        elif exc.kind == "timeout":
            self.note_slow(exc.detail)

    # ------------------------------------------------------------------ supervision

    def process_gone(self, cause: str | None = None) -> None:
        """The process ended (or was killed for ``cause``): decide restart or death (once per process)."""
        with self._state_lock:
            if self._stopping or self.state not in (ExtState.READY, ExtState.DEGRADED) or self.process is None:
                return
            proc = self.process
            if proc.alive():
                proc.kill()
            cause = cause or self._kill_reason
            self.last_exit = describe_exit(proc.returncode)
            why = cause or f"process {self.last_exit}"
            if cause:
                self.last_exit = f"{cause} ({self.last_exit})"
            code = proc.returncode if cause is None else None
            self._apply(self.restart_policy.after_exit(time.monotonic(), time.monotonic() - proc.started, code, why))
        pending, _ = self._take_pending()  # queued notify events cannot be delivered any more
        if pending:
            self._count_notify_failure(len(pending), "not_running")

    def _apply(self, decision: ExitDecision) -> None:
        """Enter the decided state; a restart wakes the supervisor when its backoff is over."""
        with self._state_lock:
            restarting = decision.state == "restarting"
            self.next_restart_at = time.monotonic() + decision.delay_s if restarting else None
            self._set_state(_DECIDED[decision.state], decision.reason)
        if restarting:
            timer = threading.Timer(decision.delay_s, self.wake_supervisor)
            timer.daemon = True
            timer.start()

    def kill(self, reason: str) -> None:
        """Kill the process tree for ``reason`` (hang, limit) and apply the restart policy."""
        self._kill_reason = reason  # whoever notices the exit first records this cause
        if self.process is not None:
            self.process.kill()
        self.process_gone(reason)

    def note_slow(self, detail: str = "") -> None:
        """A handler ran past its deadline: count it; often enough → ``degraded`` and a warning."""
        now = time.monotonic()
        busy = self.last_pong_info
        what = f"{busy[1]} handler" if busy[0] and busy[1] else "a handler"
        self._last_slow = f"{what} ({detail})" if detail else what
        self._consecutive_ok = 0
        self._slow.append(now)
        while self._slow and now - self._slow[0] > 60:
            self._slow.popleft()
        limit = self.supervision.slow_warn_per_min
        if len(self._slow) >= limit and self.state is ExtState.READY:
            self._set_state(ExtState.DEGRADED, f"slow: {len(self._slow)} handler timeouts in the last minute")
        if len(self._slow) >= limit and now - self._slow_warned_at > 60:
            self._slow_warned_at = now
            log.warning("extension %s is slow: %d handler timeout(s) in the last minute; last: %s", self.name,
                        len(self._slow), self._last_slow)

    def note_ok(self) -> None:
        """A handler answered in time; enough of these bring a degraded extension back to ready."""
        self._consecutive_ok += 1
        if self.state is ExtState.DEGRADED and self._consecutive_ok >= 20:
            self._slow.clear()
            self._set_state(ExtState.READY, "answering in time again")

    def supervise(self, now: float) -> None:
        """One supervision step (supervisor thread only): exit, heartbeat, resources, due restart."""
        state = self.state
        if self._stopping:
            return
        if state is ExtState.RESTARTING:
            due = self.next_restart_at is not None and time.monotonic() >= self.next_restart_at
            if due and self._restart_thread is None:
                self._respawn()
            return
        if state not in (ExtState.READY, ExtState.DEGRADED) or self.process is None or self.channel is None:
            return
        if not self.process.alive():
            self.process_gone()  # a restart is then woken by its timer when its backoff is over
            return
        cfg = self.supervision
        # Only look for a pong while one is outstanding: every socket call releases the GIL, and under a
        # busy main thread each re-acquire can cost a switch interval (the tick must stay cheap).
        pong = self.channel.poll_pong() if self._ping_outstanding else None
        if pong is not None:
            self._ping_outstanding = False
            self._last_pong = now
            self.last_pong_info = (bool(pong["busy"]), pong.get("current"), int(pong["busy_ms"]))  # type: ignore[arg-type]
        if now - self._last_pong > cfg.hang_ms / 1000:
            self.kill(f"hung: no heartbeat for {(now - self._last_pong):.1f} s")
            return
        busy, current, busy_ms = self.last_pong_info
        if busy and cfg.stuck_ms and busy_ms > cfg.stuck_ms:
            # Alive but one handler has run far past any deadline: every later event would time out.
            self.kill(f"stuck: {current} handler running for {busy_ms / 1000:.0f} s")
            return
        if now >= self._next_ping:
            self._next_ping = now + cfg.heartbeat_ms / 1000
            self.channel.send_ping()
            self._ping_outstanding = True
        if now >= self._next_watch:
            self._next_watch = now + cfg.watch_ms / 1000
            try:
                self.resources, self._cpu_prev = sample_tree(psutil.Process(self.process.pid), self._cpu_prev)
            except psutil.Error:
                return
            reason = limit_exceeded(cfg, self.resources)
            if reason is not None:
                self.kill(reason)

    def _respawn(self) -> None:
        """Start a new process (here, on the supervisor thread); await its handshake on a worker."""
        if not self.lock.acquire(timeout=1.0):
            return  # someone still holds the old channel; try again next tick
        try:
            self._cleanup_launch()
            self._cpu_prev = None
            self.resources = None
            try:
                self.spawn()
            except ExtensionStartError as exc:
                self._restart_failed(str(exc.reason))
                return
        finally:
            self.lock.release()

        def await_handshake() -> None:
            try:
                self.finish_start()
            except ExtensionStartError as exc:
                self._restart_failed(exc.reason)
            else:
                self.restarts += 1
                self.on_ready(self)
            finally:
                self._restart_thread = None

        self._restart_thread = threading.Thread(target=await_handshake, name=f"kithost-restart-{self.name}",
                                                daemon=True)
        self._restart_thread.start()

    def _restart_failed(self, reason: str) -> None:
        with self._state_lock:
            proc = self.process
            ran = time.monotonic() - proc.started if proc is not None else 0.0
            code = proc.returncode if proc is not None else None
            self._apply(self.restart_policy.after_exit(time.monotonic(), ran, code, f"restart failed: {reason}"))

    def restart_now(self, reason: str = "restarted by the operator") -> None:
        """Operator restart: stop the process if running, forget the crash history, respawn next tick."""
        with self._state_lock:
            self._stopping = False
            if self.process is not None and self.process.alive():
                self.process.kill()
                self.last_exit = describe_exit(self.process.returncode)
            self.restart_policy.reset()
            self.next_restart_at = time.monotonic()
            self._set_state(ExtState.RESTARTING, reason)
        self.wake_supervisor()

    # ------------------------------------------------------------------ notify queue

    def enqueue(self, event: str, data: dict[str, Any], deadline_s: float) -> bool:
        """Queue a notify event; ``False`` (and counted) when the queue is full."""
        with self._queue_lock:
            if len(self._queue) >= self.config.limits.notify_queue:
                self._dropped_unreported += 1
                self.stats.record_dropped()
                return False
            self._queue.append(_Pending(event, data, deadline_s))
            return True

    def _backlog_wait(self, pending: list[_Pending]) -> float:
        """How long a batch of ``pending`` notify events may take: their deadlines, capped."""
        return min(sum(p.deadline_s for p in pending), self.config.deadlines.notify_batch_ms / 1000)

    def queued(self) -> int:
        """Notify events waiting for delivery."""
        return len(self._queue)

    def _take_pending(self, limit: int | None = None) -> tuple[list[_Pending], int]:
        with self._queue_lock:
            count = len(self._queue) if limit is None else min(limit, len(self._queue))
            items = [self._queue.popleft() for _ in range(count)]
            dropped, self._dropped_unreported = self._dropped_unreported, 0
        return items, dropped

    def begin_notify_batch(self) -> tuple[int, float] | None:
        """Send a batch of queued notify events (caller holds ``lock``).

        Returns ``(request id, deadline seconds)`` or ``None`` when nothing was sent.
        """
        pending, dropped = self._take_pending(self.config.limits.notify_batch)
        if not pending:
            return None
        self._in_batch = pending
        try:
            self._check_ready()
            assert self.channel is not None
            deadline = max(self._backlog_wait(pending), max(p.deadline_s for p in pending))
            items = [{"event": p.event, "data": p.data} for p in pending]
            req = self.channel.send_request("batch", {"events": items, "dropped": dropped}, deadline)
        except HandlerFailure as exc:
            self._count_notify_failure(len(pending), exc.kind)
            self._in_batch = []
            return None
        except ChannelFailure as exc:
            self._count_notify_failure(len(pending), exc.kind)
            self._in_batch = []
            return None
        return req, deadline

    def service_notify(self, sock: zmq.Socket[bytes]) -> bool:
        """Handle one readable socket during a notify batch; ``True`` when the batch is finished."""
        assert self.channel is not None
        try:
            reply = self.channel.service(sock, self._on_call)
        except ChannelFailure as exc:
            self._count_notify_failure(len(self._in_batch), exc.kind)
            self._after_failure(exc)
            self._in_batch = []
            return True
        if reply is None:
            return False
        results = reply["results"]
        if len(results) != len(self._in_batch):
            self._count_notify_failure(len(self._in_batch), "bad_frame")
        else:
            self._count_notify_results(results)
        self._in_batch = []
        return True

    def expire_notify(self) -> None:
        """The in-flight notify batch passed its deadline."""
        if self.channel is not None:
            self.channel.in_flight = None
        self._count_notify_failure(len(self._in_batch), "timeout")
        self._in_batch = []
        self.note_slow("notify batch timed out")

    def _count_notify_results(self, results: list[dict[str, Any]]) -> None:
        ok = 0
        errors: list[str] = []
        for item in results:
            if item.get("ok"):
                ok += 1
            else:
                self.stats.record_failure("error", "open")
                errors.append(str(item.get("error") or "failed"))
        self.stats.record_notified(ok)
        if errors:
            self._warn_notify_errors(errors)

    def _warn_notify_errors(self, errors: list[str]) -> None:
        """Name failing notify handlers with the error text, at most once per 10 s per extension."""
        now = time.monotonic()
        self._notify_errors_unlogged += len(errors)
        if now - self._notify_warned_at < 10:
            return
        count, self._notify_errors_unlogged = self._notify_errors_unlogged, 0
        self._notify_warned_at = now
        log.warning("extension %s: %d notify handler error(s); latest: %s", self.name, count, errors[-1])

    def _count_notify_failure(self, count: int, kind: str) -> None:
        for _ in range(count):
            self.stats.record_failure(kind, "open")

    # ------------------------------------------------------------------ tools and commands

    def invoke(self, target: str, name: str, args: Any, timeout_s: float,
               cancel: threading.Event | None = None) -> tuple[str, bool]:
        """Run one of this extension's tools (``args``: map) or commands (``args``: string).

        Returns ``(content, is_error)``; every failure (not running, timeout,
        bad reply) is returned as an error text naming the extension, never raised.
        """
        start = time.monotonic()
        if not self.lock.acquire(timeout=timeout_s):
            return f"Error: extension {self.name!r} stayed busy for {timeout_s:.0f} s", True
        try:
            try:
                self._check_ready()
            except HandlerFailure as exc:
                return f"Error: {exc.detail}", True
            assert self.channel is not None
            pending, dropped = self._take_pending()
            if pending:  # keep the extension's FIFO order: flush its notify backlog first
                self._flush_pending(pending, dropped)
            left = max(timeout_s - (time.monotonic() - start), 0.0)
            try:
                reply = self.channel.request("invoke", {"target": target, "name": name, "args": args}, left,
                                             self._on_call, cancel)
            except ChannelFailure as exc:
                if exc.kind == "cancelled":
                    return f"Error: {target} {name!r} cancelled", True
                self._after_failure(exc)
                self.stats.record_failure(exc.kind, "open")
                return f"Error: {target} {name!r} of extension {self.name!r} failed ({exc.kind}: {exc.detail})", True
            results = reply["results"]
            item = results[0] if len(results) == 1 else {"ok": False, "error": "malformed reply"}
            if not item["ok"]:
                self.stats.record_failure("error", "open")
                return f"Error: {item.get('error') or 'failed'}", True
            result = item.get("result")
            if not isinstance(result, dict) or not isinstance(result.get("content"), str):
                self.stats.record_failure("bad_result", "open")
                return f"Error: extension {self.name!r} returned a malformed {target} result", True
            self.stats.record_ok((time.monotonic() - start) * 1e6)
            return result["content"], bool(result.get("is_error"))
        finally:
            self.lock.release()

    def _flush_pending(self, pending: list[_Pending], dropped: int) -> None:
        """Deliver a notify backlog synchronously (caller holds ``lock``)."""
        assert self.channel is not None
        items = [{"event": p.event, "data": p.data} for p in pending]
        try:
            reply = self.channel.request("batch", {"events": items, "dropped": dropped}, self._backlog_wait(pending),
                                         self._on_call)
        except ChannelFailure as exc:
            self._count_notify_failure(len(pending), exc.kind)
            self._after_failure(exc)
            return
        self._count_notify_results(reply["results"])

    # ------------------------------------------------------------------ views


    def info(self) -> dict[str, Any]:
        """Plain-data status (for ``--json``, tables and tests)."""
        proc = self.process
        return {
            "name": self.name,
            "version": self.declared.version or self.manifest.version,
            "state": self.state.value,
            "pid": proc.pid if proc is not None and proc.alive() else None,
            "uptime_s": round(time.monotonic() - proc.started, 3) if proc is not None and proc.alive() else 0.0,
            "last_exit": self.last_exit,
            "restarts": self.restarts,
            "restart_policy": self.restart_policy.mode,
            "resources": self.resources.as_dict() if self.resources is not None else None,
            "busy": {"event": self.last_pong_info[1], "ms": self.last_pong_info[2]} if self.last_pong_info[0]
            else None,
            "last_reason": self.transitions[-1].reason if self.transitions else "",
            "protocol": self.declared.protocol,
            "sdk": self.declared.sdk,
            "granted": sorted(self.granted),
            "subscriptions": [
                {"event": h.event, "priority": h.priority, "deadline_ms": round(h.deadline_s * 1000),
                 "policy": h.policy} for h in self.declared.handlers
            ],
            "tools": [t["name"] for t in self.declared.tools],
            "queued": self.queued(),
            "frame_errors": dict(self.channel.frame_errors) if self.channel is not None else {},
            "stats": self.stats.snapshot(),
            "manifest": str(self.manifest.path),
        }

