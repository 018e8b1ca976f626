"""One loaded extension: its lifecycle — start, handshake, crash, restart, stop — and its records.

:class:`RunningExtension` is the host's handle of one extension. It owns the
records (state and transitions, counters, log, what the handshake granted) and
carries out the lifecycle; the decisions and the mechanics live elsewhere:

=========================  ==================================================
what                       where
=========================  ==================================================
private dir, secret, argv  :func:`.launch.prepare_launch`
confinement (sandbox)      :class:`.sandbox.confine.Confiner`
who may connect            :class:`.peers.PeerGate` (ZAP: the launched process tree)
the process and its group  :class:`.process.ExtensionProcess`
sockets and frames         :class:`.channel.Channel`
handshake decision         :func:`.handshake.check_hello` (pure)
notify FIFO and requests   :class:`.exchange.Exchange`
watchdog, restart policy   :class:`.supervisor.Watchdog`, :class:`.supervisor.RestartPolicy`
status view                :func:`.status.extension_status`
=========================  ==================================================

Thread rules: the supervisor thread calls :meth:`supervise` (and respawns);
any thread may call :meth:`handler_transport`'s transports, :meth:`invoke`, :meth:`stop`,
:meth:`restart_now`. State changes happen under ``_state_lock``; an exit is
acted on once per process (:meth:`process_gone`). Lifecycle notifications go
to the :class:`Hooks` given at construction.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import zmq

from ext_sdk.combine import FailureKind, HandlerFailure, HandlerTransport
from ext_sdk.events import Policy
from ext_sdk.sandbox.plan import PlanError

from ..config import HostConfig
from ..errors import ExtensionStartError
from .channel import Channel, ChannelFailure
from .exchange import Exchange
from .handshake import NOTHING_DECLARED, Granted, Refused, check_hello, welcome_fields
from .launch import Launch, prepare_launch
from .manifest import Manifest
from .peers import PeerGate
from .process import ExtensionProcess, LogBuffer, ShutdownRung, describe_exit
from .sandbox.confine import Confined, Confiner, SandboxRefused
from .stats import ExtensionStats
from .status import extension_status
from .supervisor import ExitDecision, ExtState, Resources, RestartPolicy, Watchdog
from .trust import Grant

if TYPE_CHECKING:
    from .hostcalls import HostCallRouter

__all__ = ["ExtState", "Hooks", "RunningExtension", "Transition"]

log = logging.getLogger("kithost.ext")


@dataclass
class Transition:
    """One state change."""

    at: float
    old: str
    new: str
    reason: str


@dataclass(frozen=True, slots=True)
class Hooks:
    """What the host wants to hear from an extension handle."""

    #: Notify events wait for delivery (wake the delivery thread).
    queued: Callable[[], None] = lambda: None
    #: A restarted process reached ``ready`` (route its handlers again).
    ready_again: Callable[[RunningExtension], None] = lambda ext: None
    #: A process exited or a restart is due (wake the supervisor).
    needs_supervision: Callable[[], None] = lambda: None
    #: ``state_changed(ext, old, new, reason)``: after every state change (any thread, maybe under the
    #: extension's state lock: keep it quick, do not call back into the extension).
    state_changed: Callable[[RunningExtension, str, str, str], None] = lambda ext, old, new, reason: None


class RunningExtension:
    """Host-side handle of one extension (see the module doc)."""

    def __init__(self, manifest: Manifest, load_order: int, config: HostConfig, router: HostCallRouter,
                 zctx: zmq.Context[zmq.Socket[bytes]], gate: PeerGate, confiner: Confiner, runtime_dir: Path,
                 grant: Grant, hooks: Hooks = Hooks()) -> None:
        self.manifest = manifest
        #: What it was granted before it started (permissions and access; :mod:`.trust`).
        self.grant = grant
        self.name = manifest.name
        self.load_order = load_order
        self.config = config
        self.hooks = hooks
        self._router = router
        self._zctx = zctx
        self._gate = gate
        self._confiner = confiner
        #: The confinement of the current launch (layers in force, cgroup, uid lease).
        self.confined: Confined | None = None
        self._runtime_dir = runtime_dir
        self.stats = ExtensionStats()
        self.log = LogBuffer(config.limits.log_lines, config.limits.log_line_bytes)
        ext_log = logging.getLogger(f"kithost.ext.{manifest.name}")
        self.log.listener = lambda stream, line: ext_log.info("[%s] %s", manifest.name, line)
        self.state = ExtState.STARTING
        self.transitions: list[Transition] = []
        #: What the last accepted handshake declared and granted.
        self.declared: Granted = NOTHING_DECLARED
        self.process: ExtensionProcess | None = None
        self.channel: Channel | None = None
        self._launch: Launch | None = None
        #: Exit description of the last process that ended, e.g. "killed by SIGKILL".
        self.last_exit = ""
        #: Rung of the shutdown ladder used by the last stop.
        self.last_shutdown: ShutdownRung | None = None
        #: Supervision settings of this extension (operator's per-extension limits applied).
        self.supervision = config.supervision_for(manifest.name)
        self.restart_policy = RestartPolicy(self.supervision, config.restart_mode(manifest.name, manifest.restart))
        self.watchdog = Watchdog(manifest.name, self.supervision)
        #: Successful restarts since load.
        self.restarts = 0
        #: When a ``restarting`` extension is due to be respawned (``time.monotonic()``).
        self.next_restart_at: float | None = None
        self.exchange = Exchange(manifest.name, config, self.stats, self._on_call, self._ready_channel,
                                 self._after_channel_failure, hooks.queued)
        self.exchange.warn_notify_errors = lambda count, latest: log.warning(
            "extension %s: %d notify handler error(s); latest: %s", self.name, count, latest)
        self._state_lock = threading.RLock()
        self._restart_thread: threading.Thread | None = None
        self._kill_reason: str | None = None
        self._stopping = False
        #: Events answered when the current process started (did it ever answer one? rule 4 of the restart policy).
        self._answers_at_start = 0

    # ------------------------------------------------------------------ records

    @property
    def granted(self) -> frozenset[str]:
        """Permissions granted in the last handshake."""
        return self.declared.granted

    @property
    def resources(self) -> Resources | None:
        """Last resource sample of the process tree."""
        return self.watchdog.resources

    @property
    def last_pong_info(self) -> tuple[bool, str | None, int]:
        """What the last pong said: ``(busy, current event, busy ms)``."""
        return self.watchdog.last_pong_info

    def confiner_level(self) -> str:
        """The isolation level this host gives (before a launch says which layers it got)."""
        return str(self._confiner.probe.level)

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.process is not None and self.process.alive()

    def queued(self) -> int:
        """Notify events waiting for delivery."""
        return self.exchange.queued()

    def channel_in_flight(self) -> int | None:
        """Id of the events request being waited on (host calls must carry it)."""
        return self.channel.in_flight if self.channel is not None else None

    def _set_state(self, new: ExtState, reason: str) -> None:
        with self._state_lock:
            self.transitions.append(Transition(time.time(), self.state.value, new.value, reason))
            del self.transitions[:-100]
            old, self.state = self.state, new
        level = logging.WARNING if old is not new and new in (ExtState.DEAD, ExtState.RESTARTING,
                                                              ExtState.DEGRADED) else logging.INFO
        log.log(level, "extension %s: %s → %s: %s", self.name, old.value, new.value, reason)
        self.hooks.state_changed(self, old.value, new.value, reason)

    # ------------------------------------------------------------------ start

    def spawn(self) -> None:
        """Prepare a launch, bind the channel, start the process (no waiting)."""
        try:
            launch = self._launch = prepare_launch(self.manifest, self._runtime_dir, self.load_order)
            self.channel = Channel(self._zctx, launch, self.config.limits.max_frame)
            confined = self.confined = self._confiner.confine(launch, self.manifest, self.grant.access,
                                                              self.load_order, self.supervision)
            self._gate.admit(launch.domain, self.name, self.channel.frame_errors)
            self.process = ExtensionProcess(confined.spec, self.log)
            self._gate.started(launch.domain, self.process.pid)
        except (OSError, zmq.ZMQError, SandboxRefused, PlanError) as exc:
            self._cleanup_launch()
            self._set_state(ExtState.DEAD, f"could not start: {exc}")
            raise ExtensionStartError(self.name, f"could not start: {exc}") from exc
        self._kill_reason = None
        self._answers_at_start = self._answers()
        proc = self.process
        # An exit wakes the supervisor at once (no waiting for its next tick): kill → ready stays close to a
        # cold start. Popen.wait in another thread is safe: Popen serialises its waits.
        def watch_exit() -> None:
            proc.popen.wait()
            self.hooks.needs_supervision()

        threading.Thread(target=watch_exit, name=f"kithost-exitwatch-{proc.pid}", daemon=True).start()
        self._set_state(ExtState.STARTING, f"spawned pid {proc.pid}")

    def finish_start(self) -> None:
        """Wait for the handshake and answer it; raises :class:`ExtensionStartError`."""
        assert self.channel is not None and self.process is not None and self._launch is not None
        proc = self.process
        try:
            hello = self.channel.wait_hello(self.config.deadlines.start_ms / 1000, proc.alive)
        except ChannelFailure as exc:
            reason = exc.detail
            if not proc.alive() or exc.kind == FailureKind.DISCONNECTED:
                if proc.alive():
                    proc.popen.wait(2)
                reason = f"{describe_exit(proc.returncode)} before the handshake"
            self._fail_start(reason)
        finally:
            self._launch.forget_secret_file()
        decision = check_hello(hello, self.manifest, self.config, self.grant.permissions)
        if isinstance(decision, Refused):
            self.channel.answer_hello("reject", {"reason": decision.reason})
            self._fail_start(f"handshake refused: {decision.reason}")
        assert isinstance(decision, Granted)
        self.declared = decision
        self.channel.answer_hello("welcome", welcome_fields(decision))
        self.watchdog.reset()
        self._set_state(ExtState.READY, f"handshake done (protocol {decision.protocol})")

    def _fail_start(self, reason: str) -> NoReturn:
        time.sleep(0.05)  # let the last stderr lines arrive
        if self.process is not None:
            self.process.kill()
            self.last_exit = describe_exit(self.process.returncode)
        tail = self.log.tail(12)
        self._cleanup_launch()
        if self.restarts == 0 and self._restart_thread is None:
            self._set_state(ExtState.DEAD, reason)  # a first start that fails is a setup problem: not retried
        raise ExtensionStartError(self.name, reason, tail)

    def _cleanup_launch(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.confined is not None:
            self.confined.release()
        if self._launch is not None:
            self._gate.forget(self._launch.domain)
            self._launch.cleanup()

    # ------------------------------------------------------------------ stop

    def stop(self, reason: str = "host shutting down") -> ShutdownRung:
        """Shutdown ladder; the extension ends ``stopped``."""
        with self._state_lock:
            self._stopping = True  # from now on an exit is expected: no crash handling, no restart
        rung = ShutdownRung.ALREADY_EXITED
        # A respawn swaps process and channel while it holds the exchange's lock: read both under it, so the
        # ladder never talks to a channel a respawn has already closed.
        with self.exchange.lock:
            process, channel = self.process, self.channel
            if process is not None:

                def polite(timeout: float) -> object:
                    if channel is None:
                        return None
                    return channel.control_request("shutdown", {"reason": reason}, timeout)

                rung = process.stop(polite, self.config.deadlines.shutdown_ms / 1000)
                self.last_exit = describe_exit(process.returncode)
        handshaking = self._restart_thread  # a respawned process's handshake fails now that it is gone
        if handshaking is not None and handshaking is not threading.current_thread():
            handshaking.join(self.config.deadlines.start_ms / 1000 + 1)
        self.last_shutdown = rung
        self._cleanup_launch()
        self._set_state(ExtState.STOPPED, f"{reason} ({rung.value})")
        return rung

    # ------------------------------------------------------------------ handlers, tools, commands

    def handler_transport(self, event: str, index: int) -> HandlerTransport:
        """The transport that runs this extension's subscription ``index`` (for the dispatcher)."""
        call = self.exchange.call

        def transport(payload: dict[str, Any], timeout_s: float | None, /) -> dict[str, Any] | None:
            assert timeout_s is not None, "extension handlers are always bounded"
            return call(event, index, payload, timeout_s)

        return transport

    def invoke(self, target: str, name: str, args: Any, timeout_s: float,
               cancel: threading.Event | None = None) -> tuple[str, bool]:
        """Run one of this extension's tools (``args``: map) or commands (``args``: string).

        Returns ``(content, is_error)``; every failure (not running, timeout,
        bad reply) is returned as an error text naming the extension, never raised.
        """
        return self.exchange.invoke(target, name, args, timeout_s, cancel)

    def record_ok(self, elapsed_s: float) -> None:
        """A handler's result passed the checks (accounting; a degraded extension may recover)."""
        self.stats.record_ok(elapsed_s * 1e6)
        if self.state is ExtState.DEGRADED and self.watchdog.note_ok():
            self._set_state(ExtState.READY, "answering in time again")

    def record_failure(self, kind: FailureKind, policy: Policy) -> None:
        """A handler failed and ``policy`` was applied."""
        self.stats.record_failure(kind, policy)

    def record_stop(self) -> None:
        """A handler's result stopped its event."""
        self.stats.record_stop()

    def _on_call(self, method: str, args: dict[str, Any], event_id: int | None) -> Any:
        return self._router.handle(self, method, args, event_id)

    def _ready_channel(self) -> Channel:
        """The channel of the running process; raises ``HandlerFailure(not_running)`` otherwise."""
        if not self.state.running:
            raise HandlerFailure(FailureKind.NOT_RUNNING, f"{self.name} is {self.state.value}")
        # No syscall here (this is the hot path): the exit watcher's wait() sets returncode when it exits;
        # a connection dropped for other reasons surfaces from the request's own poll.
        channel, process = self.channel, self.process
        if channel is None or process is None or process.popen.returncode is not None:
            self.process_gone(in_handler=False)  # it died before this request was sent
            raise HandlerFailure(FailureKind.NOT_RUNNING, f"{self.name} is not running ({self.last_exit})")
        return channel

    def _after_channel_failure(self, exc: ChannelFailure) -> str:
        """Supervision's view of a failed request; returns the detail to report."""
        if exc.kind == FailureKind.DISCONNECTED and self.process is not None:
            try:  # the socket closes a moment before the exit status is there: give it that moment
                self.process.popen.wait(0.25)
            except subprocess.TimeoutExpired:
                return exc.detail  # still running: it dropped the connection (oversized frame), not a crash
            self.process_gone(in_handler=True)
            return f"the extension died during the handler ({self.last_exit})"
        if exc.kind == FailureKind.TIMEOUT:
            self.note_slow(exc.detail)
        return exc.detail

    def note_slow(self, detail: str = "") -> None:
        """A handler ran past its deadline: counted; often enough → ``degraded`` (see :class:`Watchdog`)."""
        if self.watchdog.note_slow(detail) and self.state is ExtState.READY:
            self._set_state(ExtState.DEGRADED, f"slow: {self.watchdog.slow_count()} handler timeouts in the "
                                               "last minute")

    # ------------------------------------------------------------------ supervision

    def supervise(self) -> None:
        """One supervision step (supervisor thread only): exit, watchdog, due restart."""
        if self._stopping:
            return
        state = self.state
        if state is ExtState.RESTARTING:
            due = self.next_restart_at is not None and time.monotonic() >= self.next_restart_at
            if due and self._restart_thread is None:
                self._respawn()
            return
        process, channel = self.process, self.channel
        if not state.running or process is None or channel is None:
            return
        if not process.alive():
            self.process_gone()  # a restart is then woken by its timer when its backoff is over
            return
        channel.drain_monitors()
        reason = self.watchdog.check(process.pid, channel.poll_pong, channel.send_ping)
        if reason is not None:
            self.kill(reason)

    def _answers(self) -> int:
        """Events answered successfully so far: handler results, notify deliveries, tools and commands."""
        return self.stats.handled + self.stats.notified

    def process_gone(self, cause: str | None = None, in_handler: bool | None = None) -> None:
        """The process ended (or was killed for ``cause``): decide restart or death (once per process).

        ``in_handler``: whether a request was in flight; unknown (``None``: the supervisor saw the exit or
        killed the process), a request holding the exchange's lock says so.
        """
        with self._state_lock:
            if self._stopping or not self.state.running or self.process is None:
                return
            proc = self.process
            if proc.alive():
                proc.kill()
            cause = cause or self._kill_reason or (self.confined.exit_reason() if self.confined else None)
            self.last_exit = describe_exit(proc.returncode)
            why = cause or f"process {self.last_exit}"
            if cause:
                self.last_exit = f"{cause} ({self.last_exit})"
            code = proc.returncode if cause is None else None
            in_handler = self.exchange.lock.locked() if in_handler is None else in_handler
            self._apply(self.restart_policy.after_exit(time.monotonic() - proc.started, code, why,
                                                       in_handler=in_handler,
                                                       answered=self._answers() > self._answers_at_start))
        self.exchange.discard_backlog()

    def _apply(self, decision: ExitDecision) -> None:
        """Enter the decided state; a restart wakes the supervisor when its backoff is over."""
        with self._state_lock:
            restarting = decision.state is ExtState.RESTARTING
            self.next_restart_at = time.monotonic() + decision.delay_s if restarting else None
            self._set_state(decision.state, decision.reason)
        if restarting:
            timer = threading.Timer(decision.delay_s, self.hooks.needs_supervision)
            timer.daemon = True
            timer.start()

    def kill(self, reason: str) -> None:
        """Kill the process tree for ``reason`` (hang, limit) and apply the restart policy."""
        self._kill_reason = reason  # whoever notices the exit first records this cause
        if self.process is not None:
            self.process.kill()
        self.process_gone(reason)

    def _respawn(self) -> None:
        """Start a new process (here, on the supervisor thread); await its handshake on a worker."""
        if not self.exchange.lock.acquire(timeout=1.0):
            return  # someone still holds the old channel; try again next tick
        try:
            if self._stopping:
                return  # stop() owns the process from here
            self._cleanup_launch()
            try:
                self.spawn()
            except ExtensionStartError as exc:
                self._restart_failed(str(exc.reason))
                return
        finally:
            self.exchange.lock.release()

        def await_handshake() -> None:
            try:
                self.finish_start()
            except ExtensionStartError as exc:
                self._restart_failed(exc.reason)
            else:
                self.restarts += 1
                self.hooks.ready_again(self)
            finally:
                self._restart_thread = None

        self._restart_thread = threading.Thread(target=await_handshake, name=f"kithost-restart-{self.name}",
                                                daemon=True)
        self._restart_thread.start()

    def _restart_failed(self, reason: str) -> None:
        with self._state_lock:
            if self._stopping:
                return  # stop() ends in STOPPED; no restart is scheduled past it
            proc = self.process
            ran = time.monotonic() - proc.started if proc is not None else 0.0
            code = proc.returncode if proc is not None else None
            self._apply(self.restart_policy.after_exit(ran, code, f"restart failed: {reason}"))

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
        self.hooks.needs_supervision()

    # ------------------------------------------------------------------ views

    def info(self) -> dict[str, Any]:
        """Plain-data status (for ``--json``, tables and tests); see :func:`.status.extension_status`."""
        return extension_status(self)
