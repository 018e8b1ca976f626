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
reload rules, switch gate  :mod:`.reload`
status view                :func:`.status.extension_status`
=========================  ==================================================

A restart starts from the extension's *warm spare* when it has one
(``[supervision] spare``, Python extensions; :mod:`.spare`), once the
extension has served ``spare_after``: the spare handshakes like any new
process (fresh work directory, ``session_start`` again) and the crashed
launch is released once it is ready; the supervisor starts the next spare
(:meth:`RunningExtension.tend_spare`). A reload or a stop drops the spare.

A reload starts the new version beside the running one
(:meth:`RunningExtension.prepare_replacement`), swaps it in between two
events (:meth:`RunningExtension.switch_to`) and stops the old process
(:meth:`RunningExtension.retire`); the handle — name, load order, FIFO,
counters, log — stays the same. A replaced process (restart or reload) gets
the host's last ``session_start`` before any other event.

Thread rules: the supervisor thread calls :meth:`supervise` (and respawns);
any thread may call :meth:`handler_transport`'s transports, :meth:`invoke`, :meth:`stop`,
:meth:`restart_now`; one thread at a time (the host's reload lock) runs a reload.
Processes are started from the main thread or one long-lived spawner thread
(:class:`_Spawner`: the parent-death signal follows the forking thread).
State changes happen under ``_state_lock``; the current process and channel
are swapped under the exchange's lock and ``_swap_lock`` (lock order:
switch gate → exchange lock → ``_swap_lock`` → ``_state_lock``); an exit is
acted on once per process (:meth:`process_gone`). Lifecycle notifications go
to the :class:`Hooks` given at construction.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol, TypeVar

import zmq

from ext_sdk.combine import FailureKind, HandlerFailure, HandlerTransport
from ext_sdk.events import Policy
from ext_sdk.sandbox.plan import PlanError

from ..config import HostConfig
from ..errors import ExtensionStartError, HostError
from .channel import CallHandler, Channel, ChannelFailure
from .exchange import Exchange
from .handshake import NOTHING_DECLARED, Granted, Refused, check_hello, welcome_fields
from .launch import Launch, prepare_launch
from .manifest import Manifest
from .peers import PeerGate
from .process import ExtensionProcess, LogBuffer, ProcessHandle, ShutdownRung, describe_exit
from .reload import ReloadFailed, SwitchGate
from .sandbox.confine import Confined, Confiner, SandboxRefused
from .sandbox.probe import Probe
from .spare import Spare
from .stats import ExtensionStats
from .status import extension_status
from .supervisor import ExitDecision, ExtState, Resources, RestartPolicy, Watchdog
from .trust import Grant

if TYPE_CHECKING:
    from .hostcalls import HostCallRouter

__all__ = ["NOTICE_RECORD", "ExtState", "Hooks", "RemoteLauncher", "Replacement", "Retired", "RunningExtension",
           "Transition"]

log = logging.getLogger("kithost.ext")

#: Attribute of a log record whose content a host notice already carries (``run --json`` does not repeat it).
NOTICE_RECORD: Final = "kithost_notice"

_T = TypeVar("_T")

#: The event a replaced process gets again (:attr:`Hooks.last_session_start`).
SESSION_START = "session_start"


class _Spawner:
    """Starts processes from threads that live as long as the interpreter.

    The parent-death signal that makes an extension die with the host (bwrap's ``--die-with-parent``, the
    boot's ``PR_SET_PDEATHSIG``) fires when the *thread* that forked the process ends, not the process. A
    process started from a thread that ends early — a reload from the watcher, the operator channel or a
    worker, a restart from the supervisor thread, which stops before the shutdown ladder runs — would be
    killed with it. The main thread lives until the interpreter ends, so it starts processes itself; any
    other thread hands the start to a pool whose threads never end before the interpreter does
    (``ThreadPoolExecutor`` keeps idle workers). :meth:`run_all` starts several processes on the pool side by
    side: a start waits until its child has exec'd, and with interpreters already starting on every CPU
    that wait, not the host's work, is what a serial start of many extensions would add up.
    """

    #: Processes started side by side by :meth:`run_all`.
    WORKERS = 4

    def __init__(self) -> None:
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=self.WORKERS, thread_name_prefix="kithost-spawn",
                                        initializer=self._mark)

    def _mark(self) -> None:
        self._local.spawner = True

    def _here(self) -> bool:
        return threading.current_thread() is threading.main_thread() or getattr(self._local, "spawner", False)

    def run(self, start: Callable[[], _T]) -> _T:
        """``start()`` on a thread that outlives every host; its result or exception."""
        if self._here():
            return start()
        return self._pool.submit(start).result()

    def run_all(self, starts: Sequence[Callable[[], object]]) -> list[BaseException | None]:
        """Run every ``start()`` on the pool, side by side; for each, the exception it raised or ``None``."""
        futures = [self._pool.submit(start) for start in starts]
        return [future.exception() for future in futures]


_SPAWNER = _Spawner()


def spawn_all(extensions: Sequence[RunningExtension]) -> list[ExtensionStartError | None]:
    """:meth:`RunningExtension.spawn` of each (prepared) extension, side by side (:meth:`_Spawner.run_all`);
    for each, the start error or ``None``."""
    errors = _SPAWNER.run_all([ext.spawn for ext in extensions])
    for error in errors:
        if error is not None and not isinstance(error, ExtensionStartError):
            raise error  # a bug, not a start failure
    return errors  # type: ignore[return-value]


class RemoteLauncher(Protocol):
    """Starts an extension's processes on a remote worker instead of here (:class:`host.remote.handle.RemoteSource`).

    The handle, its records, events, deadlines, policies and restart decisions stay the same; only the
    launch differs: no local confinement or process (the worker confines it with the same code), a channel
    that connects to the worker's relay, and a :class:`.process.ProcessHandle` whose exit the worker reports.
    """

    def start(self, slot_dir: Path, max_frame: int, timeout_s: float) -> tuple[Launch, Channel, ProcessHandle]:
        """Launch on the worker and connect a channel; raises :class:`HostError` or ``zmq.ZMQError``."""
        ...

    def reachable(self) -> bool:
        """Whether the worker answers (a restart waits for it instead of counting a crash)."""
        ...

    def retry_delay(self) -> float:
        """Seconds to wait before trying again while it does not (grows with each call)."""
        ...

    def info(self) -> dict[str, Any]:
        """Plain data for ``ext status`` (worker address, reachability, link latency)."""
        ...


@dataclass
class Transition:
    """One state change."""

    at: float
    old: str
    new: str
    reason: str


@dataclass(slots=True)
class _Incarnation:
    """One launch of the extension: its sockets, confinement and process."""

    launch: Launch
    channel: Channel | None = None
    confined: Confined | None = None
    process: ProcessHandle | None = None
    #: Finishes a deferred cgroup join before the secret is handed over (:meth:`.sandbox.confine.Confined.adopting`).
    joined: Callable[[], None] | None = None
    #: A parked launch's secret was handed over (:meth:`RunningExtension.hand_over`); why that failed, if it did.
    handed_over: bool = False
    handover_failed: _StartFailed | None = None


@dataclass(frozen=True, slots=True)
class Replacement:
    """A new version started and handshaken beside the running one (:meth:`RunningExtension.prepare_replacement`)."""

    manifest: Manifest
    grant: Grant
    #: Launch slot of its private directory (unique in the host).
    slot: int
    #: What its handshake declared and was granted.
    declared: Granted
    incarnation: _Incarnation
    #: The ``session_start`` payload it was given (``None``: none).
    session_start: object


@dataclass(frozen=True, slots=True)
class Retired:
    """The process a reload replaced, to stop (:meth:`RunningExtension.retire`)."""

    incarnation: _Incarnation | None
    #: Whether it was serving (it gets a polite shutdown request first).
    was_running: bool


class _StartFailed(Exception):
    """A handshake that did not succeed; the message says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: What starting a process raises (:meth:`RunningExtension._start_process`); it then could not start.
_START_ERRORS = (OSError, zmq.ZMQError, SandboxRefused, PlanError, HostError)


def _exited_before_handshake(proc: ProcessHandle) -> _StartFailed:
    """The failure of a process that ended (or is ended now, after 2 s) before its handshake."""
    if not proc.wait(2):
        proc.kill()
    return _StartFailed(f"{describe_exit(proc.returncode)} before the handshake")


class _PendingCaller:
    """The host-call identity of a process started beside the running one (a reload), until it serves."""

    def __init__(self, name: str, channel: Channel) -> None:
        self.name = name
        self._channel = channel
        self.declared = NOTHING_DECLARED

    @property
    def granted(self) -> frozenset[str]:
        return self.declared.granted

    def channel_in_flight(self) -> int | None:
        return self._channel.in_flight


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
    #: The ``session_start`` payload a replaced process (restart, reload) must get before any other event,
    #: or ``None`` (no session started, or it was shut down).
    last_session_start: Callable[[], dict[str, Any] | None] = lambda: None
    #: ``notify_failed(ext, event, error)``: a notify handler reported an error (any thread; keep it quick).
    notify_failed: Callable[[RunningExtension, str, str], None] = lambda ext, event, error: None


class RunningExtension:
    """Host-side handle of one extension (see the module doc)."""

    def __init__(self, manifest: Manifest, load_order: int, config: HostConfig, router: HostCallRouter,
                 zctx: zmq.Context[zmq.Socket[bytes]], gate: PeerGate, confiner: Confiner, runtime_dir: Path,
                 grant: Grant, hooks: Hooks = Hooks(), remote: RemoteLauncher | None = None,
                 next_slot: Callable[[], int] | None = None) -> None:
        """``next_slot``: a launch slot unique in the host, for a warm spare (``None``: no spares)."""
        self.manifest = manifest
        #: Where its processes run when not here (``None``: a local extension).
        self.remote = remote
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
        self._runtime_dir = runtime_dir
        self.stats = ExtensionStats()
        ext_log = logging.getLogger(f"kithost.ext.{manifest.name}")
        self.log = LogBuffer(config.limits.log_lines, config.limits.log_line_bytes,
                             lambda stream, line: ext_log.info("[%s] %s", manifest.name, line))
        self.state = ExtState.STARTING
        self.transitions: list[Transition] = []
        #: What the last accepted handshake declared and granted.
        self.declared: Granted = NOTHING_DECLARED
        #: The current launch: :attr:`process`, :attr:`channel` and :attr:`confined` are its parts.
        self._incarnation: _Incarnation | None = None
        #: A first launch prepared by :meth:`prepare` and not started yet.
        self._prepared: _Incarnation | None = None
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
        #: Successful reloads since load (a reload is not a restart).
        self.reloads = 0
        #: Launch slot of the current process's private directory (a reload takes a new one).
        self._slot = load_order
        #: Closed by a reload while it switches processes (handler calls wait at it).
        self._switch = SwitchGate()
        #: Held while the current process/channel are swapped or supervised (reload vs. watchdog).
        self._swap_lock = threading.Lock()
        #: When a ``restarting`` extension is due to be respawned (``time.monotonic()``).
        self.next_restart_at: float | None = None
        self.exchange = Exchange(
            manifest.name, config, self.stats, self._on_call, self._ready_channel, self._after_channel_failure,
            hooks.queued, notify_failed=lambda event, error: hooks.notify_failed(self, event, error),
            warn_notify_errors=lambda count, latest: log.warning(
                "extension %s: %d notify handler error(s); latest: %s", self.name, count, latest,
                extra={NOTICE_RECORD: True}))
        self._state_lock = threading.RLock()
        self._restart_thread: threading.Thread | None = None
        self._kill_reason: str | None = None
        self._stopping = False
        #: A remote extension's restart waits for its worker to answer again (:meth:`_wait_for_worker`).
        self._waiting_for_worker = False
        #: Events answered when the current process started (did it ever answer one? rule 4 of the restart policy).
        self._answers_at_start = 0
        self._next_slot = next_slot
        #: The warm spare: a parked launch a restart starts from (:mod:`.spare`).
        self.spare: Spare[_Incarnation] = Spare(
            manifest.name, lambda manifest, grant, slot: self._start_process(manifest, grant, slot, spare=True),
            self._discard_incarnation, next_slot or (lambda: -1), {NOTICE_RECORD: True})
        #: When the extension last became ``ready`` (``time.monotonic()``).
        self._ready_since = 0.0

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

    def confiner_probe(self) -> Probe:
        """What the host's sandbox probe found: layers, level, and why each missing layer is missing."""
        return self._confiner.probe

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
            if new is ExtState.READY:
                self._ready_since = time.monotonic()
        level = logging.WARNING if old is not new and new in (ExtState.DEAD, ExtState.RESTARTING,
                                                              ExtState.DEGRADED) else logging.INFO
        log.log(level, "extension %s: %s → %s: %s", self.name, old.value, new.value, reason)
        self.hooks.state_changed(self, old.value, new.value, reason)

    # ------------------------------------------------------------------ start

    def _start_process(self, manifest: Manifest, grant: Grant, slot: int, spare: bool = False) -> _Incarnation:
        """Prepare a launch in slot ``slot``, bind its channel, confine and start the process (no waiting).

        A Python extension's launch is *parked* (:func:`.launch.prepare_launch`: its SDK waits at the secret
        pipe before the extension's code): a ``spare`` waits there until a restart needs it; any other
        joins its cgroup meanwhile (:meth:`.sandbox.confine.Confined.adopt`, in :meth:`_handshake`) instead
        of before its interpreter starts.

        Touches none of the current process's records. Raises ``OSError``, ``zmq.ZMQError``,
        :class:`SandboxRefused`, :class:`PlanError` or (remote) :class:`HostError` after releasing what it had
        set up.
        """
        if self.remote is not None:  # the worker prepares, confines and starts it; its heartbeat reports the exit
            launch, channel, remote_proc = self.remote.start(self._runtime_dir / f"x{slot}",
                                                             self.config.limits.max_frame,
                                                             self.config.deadlines.start_ms / 1000)
            return _Incarnation(launch, channel, None, remote_proc)
        return self._run_process(self._prepare_process(manifest, grant, slot, spare))

    def _prepare_process(self, manifest: Manifest, grant: Grant, slot: int, spare: bool = False) -> _Incarnation:
        """The part of :meth:`_start_process` before the process starts: launch files, channel, confinement,
        admission (same errors, released on failure)."""
        parked = spare or manifest.runtime == "python"
        inc = _Incarnation(prepare_launch(manifest, self._runtime_dir, slot, parked))
        try:
            channel = inc.channel = Channel(self._zctx, inc.launch, self.config.limits.max_frame)
            inc.confined = self._confiner.confine(inc.launch, manifest, grant.access, slot, self.supervision,
                                                  defer_join=not spare)
            self._gate.admit(inc.launch.domain, self.name, channel.frame_errors)
        except BaseException:
            self._release(inc)
            raise
        return inc

    def _run_process(self, inc: _Incarnation) -> _Incarnation:
        """Start the process of a prepared launch (no waiting); releases the launch if that fails."""
        confined = inc.confined
        assert confined is not None
        try:
            proc = inc.process = _SPAWNER.run(lambda: ExtensionProcess(confined.spec, self.log))
            inc.joined = confined.adopting(proc.pid)  # a deferred cgroup join runs beside the start
            self._gate.started(inc.launch.domain, proc.pid)
        except BaseException:
            if inc.process is not None:
                inc.process.kill()
            self._release(inc)
            raise

        # An exit wakes the supervisor at once (no waiting for its next tick): kill → ready stays close to a
        # cold start. Popen.wait in another thread is safe: Popen serialises its waits.
        def watch_exit() -> None:
            proc.wait(None)
            self.hooks.needs_supervision()

        threading.Thread(target=watch_exit, name=f"kithost-exitwatch-{proc.pid}", daemon=True).start()
        return inc

    def _current(self) -> _Incarnation | None:
        return self._incarnation

    def _install(self, inc: _Incarnation) -> None:
        """Make ``inc`` the current process (caller holds ``_swap_lock``)."""
        self._incarnation = inc

    @property
    def process(self) -> ProcessHandle | None:
        """The current launch's process (``None`` before the first start)."""
        inc = self._incarnation
        return inc.process if inc is not None else None

    @property
    def channel(self) -> Channel | None:
        """The current launch's sockets."""
        inc = self._incarnation
        return inc.channel if inc is not None else None

    @property
    def confined(self) -> Confined | None:
        """The current launch's confinement (layers in force, cgroup, uid lease)."""
        inc = self._incarnation
        return inc.confined if inc is not None else None

    def prepare(self) -> None:
        """Do the host's part of a first start (launch files, channel, confinement) without starting the
        process; :meth:`spawn` then starts it. :meth:`ExtensionHost.load_many` prepares every extension before
        it starts any, so that this work does not compete for the CPU with interpreters already starting.
        Raises :class:`ExtensionStartError` (the extension is then ``dead``)."""
        try:
            self._prepared = self._prepare_process(self.manifest, self.grant, self._slot)
        except _START_ERRORS as exc:
            raise self._could_not_start(exc) from exc

    def _could_not_start(self, exc: BaseException) -> ExtensionStartError:
        """Mark the extension ``dead`` because its process could not be started; the error to raise."""
        self._set_state(ExtState.DEAD, f"could not start: {exc}")
        return ExtensionStartError(self.name, f"could not start: {exc}")

    def spawn(self, spare: _Incarnation | None = None) -> None:
        """Start the process — ``spare`` (from :meth:`_take_spare`) if given, else the launch :meth:`prepare`
        made, else a new launch in the current slot, whose files the caller has released — and make it
        current (no waiting)."""
        inc, how = spare, "the spare"
        if inc is None:
            how = "spawned"
            prepared, self._prepared = self._prepared, None
            try:
                inc = (self._run_process(prepared) if prepared is not None
                       else self._start_process(self.manifest, self.grant, self._slot))
            except _START_ERRORS as exc:
                raise self._could_not_start(exc) from exc
        with self._swap_lock:
            self._install(inc)
        self._kill_reason = None
        self._answers_at_start = self._answers()
        assert inc.process is not None
        self._set_state(ExtState.STARTING, f"{how} pid {inc.process.pid}")

    # ------------------------------------------------------------------ warm spare

    @property
    def spare_pid(self) -> int | None:
        """Pid of the warm spare waiting to replace the process, if there is one."""
        return self.spare.pid

    def spare_parked(self) -> bool:
        """Whether the spare waits at its secret, imports done (see :meth:`.spare.Spare.parked`)."""
        return self.spare.parked()

    def _take_spare(self) -> _Incarnation | None:
        """The spare, if it was started for the current manifest and grant (:meth:`.spare.Spare.take`)."""
        taken = self.spare.take(self.manifest, self.grant)
        if taken is None:
            return None
        inc, self._slot = taken
        return inc

    def _discard_incarnation(self, inc: _Incarnation) -> None:
        """Kill a launch that never served (a spare) and remove all of it, its slot directory included."""
        if inc.process is not None:
            inc.process.kill()
        self._release(inc)
        shutil.rmtree(inc.launch.endpoints.directory, ignore_errors=True)

    def tend_spare(self) -> None:
        """Start the spare when one is due, replace one that exited (supervisor thread; module doc)."""
        wanted = (self.supervision.spare and self._next_slot is not None and self.remote is None
                  and not self._stopping and self.manifest.runtime == "python"
                  and self.state in (ExtState.READY, ExtState.DEGRADED)
                  and time.monotonic() - self._ready_since >= self.supervision.spare_after_s)
        self.spare.tend(self.manifest, self.grant, wanted,
                        keep=lambda manifest: not self._stopping and manifest is self.manifest)

    def _handshake(self, inc: _Incarnation, manifest: Manifest, grant: Grant) -> Granted:
        """Wait for ``inc``'s hello and answer it; raises :class:`_StartFailed`. Records untouched."""
        channel, proc = inc.channel, inc.process
        assert channel is not None and proc is not None

        try:
            self._hand_over(inc)
            if inc.handover_failed is not None:
                raise inc.handover_failed
            try:
                hello = channel.wait_hello(self.config.deadlines.start_ms / 1000, proc.alive)
            except ChannelFailure as exc:
                if not proc.alive() or exc.kind == FailureKind.DISCONNECTED:
                    raise _exited_before_handshake(proc) from None
                raise _StartFailed(exc.detail) from None
        finally:
            inc.launch.forget_secret_file()
        decision = check_hello(hello, manifest, self.config, grant.permissions)
        if isinstance(decision, Refused):
            channel.answer_hello("reject", {"reason": decision.reason})
            raise _StartFailed(f"handshake refused: {decision.reason}")
        channel.answer_hello("welcome", welcome_fields(decision))
        return decision

    def _hand_over(self, inc: _Incarnation) -> None:
        """Give a parked launch its secret, once (a failure is kept for :meth:`_handshake` to raise)."""
        proc = inc.process
        if not inc.launch.parked or inc.handed_over or proc is None:
            return
        inc.handed_over = True
        try:
            inc.launch.unpark(proc.alive, self.config.deadlines.start_ms / 1000, inc.joined)
        except ProcessLookupError:
            inc.handover_failed = _exited_before_handshake(proc)
        except OSError as exc:
            inc.handover_failed = _StartFailed(f"could not hand over the secret: {exc}")

    def hand_over(self) -> None:
        """Let a just spawned process go on past its secret (to load the extension and say ``hello``) without
        waiting for the handshake: :meth:`ExtensionHost.load_many` hands every new process its secret first,
        then awaits the handshakes, so the processes load and connect in parallel instead of one by one.
        Never raises: a failure is raised by :meth:`finish_start`."""
        inc = self._current()
        if inc is not None:
            self._hand_over(inc)

    def finish_start(self, replaced: bool = False) -> None:
        """Wait for the handshake and answer it; raises :class:`ExtensionStartError`.

        ``replaced``: this process replaces an earlier one (a restart): it gets the host's last
        ``session_start`` (:attr:`Hooks.last_session_start`) before it is ``ready`` for any other event.
        """
        inc = self._current()
        assert inc is not None and inc.channel is not None
        try:
            decision = self._handshake(inc, self.manifest, self.grant)
        except _StartFailed as exc:
            self._fail_start(exc.reason)
        self.declared = decision
        self.watchdog.reset()
        if replaced:
            self._replay_session_start(inc.channel, decision, self._on_call)
        self._set_state(ExtState.READY, f"handshake done (protocol {decision.protocol})")

    def _replay_session_start(self, channel: Channel, declared: Granted, on_call: CallHandler) -> object:
        """Send the host's last ``session_start`` to a replacing process, if it handles that event.

        Returns the payload considered (identity tells a later one apart). A failure is counted and
        logged like any notify failure; it never fails the start.
        """
        payload = self.hooks.last_session_start()
        handlers = [h for h in declared.handlers if h.event == SESSION_START]
        if payload is None or not handlers:
            return payload
        timeout = max(h.deadline_s or 0.0 for h in handlers) or 1.0
        try:
            reply = channel.request("batch", {"events": [{"event": SESSION_START, "data": payload}], "dropped": 0},
                                    timeout, on_call)
        except ChannelFailure as exc:
            self.stats.record_failure(exc.kind, Policy.OPEN)
            log.warning("extension %s: session_start (sent again to its new process) failed: %s: %s", self.name,
                        exc.kind, exc.detail)
            return payload
        results = reply["results"]
        if len(results) == 1 and results[0].get("ok"):
            self.stats.record_notified(1)
        else:
            self.stats.record_failure(FailureKind.ERROR, Policy.OPEN)
            error = results[0].get("error") if len(results) == 1 else "malformed reply"
            log.warning("extension %s: session_start (sent again to its new process) failed: %s", self.name, error)
        return payload

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

    def _release(self, inc: _Incarnation) -> None:
        """Close ``inc``'s sockets, confinement, admission and files (idempotent)."""
        if inc.channel is not None:
            inc.channel.close()
        if inc.confined is not None:
            inc.confined.release()
        self._gate.forget(inc.launch.domain)
        inc.launch.cleanup()

    def _cleanup_launch(self) -> None:
        inc = self._current()
        if inc is not None:
            self._release(inc)

    # ------------------------------------------------------------------ reload

    def prepare_replacement(self, manifest: Manifest, grant: Grant, slot: int) -> Replacement:
        """Start ``manifest``'s version in launch slot ``slot`` beside the running process and finish its
        handshake; it gets the host's last ``session_start`` before anything else.

        The running process and every record are untouched. Raises :class:`.reload.ReloadFailed` (the new
        process is gone by then) with the reason and the new process's last output lines.
        """
        if self.remote is not None:
            raise ReloadFailed(self.name, "it runs on a remote worker: update it there, then restart it "
                                          f"(`kithost ext restart {self.name}`)")
        lines = self.log.since(0)
        mark = lines[-1][0] if lines else 0
        try:
            inc = self._start_process(manifest, grant, slot)
        except (OSError, zmq.ZMQError, SandboxRefused, PlanError) as exc:
            raise ReloadFailed(self.name, f"the new version could not start: {exc}") from exc
        assert inc.channel is not None and inc.process is not None
        caller = _PendingCaller(self.name, inc.channel)

        def on_call(method: str, args: dict[str, Any], event_id: int | None) -> Any:
            return self._router.handle(caller, method, args, event_id)

        try:
            decision = self._handshake(inc, manifest, grant)
            caller.declared = decision
            sent = self._replay_session_start(inc.channel, decision, on_call)
            if not inc.process.alive():
                raise _StartFailed(f"{describe_exit(inc.process.returncode)} right after the handshake")
        except _StartFailed as exc:
            time.sleep(0.05)  # let the last stderr lines arrive
            inc.process.kill()
            self._release(inc)
            tail = "\n".join(text for _, _, _, text in self.log.since(mark, 12))
            raise ReloadFailed(self.name, f"the new version did not start: {exc.reason}", tail) from None
        except BaseException:
            inc.process.kill()
            self._release(inc)
            raise
        return Replacement(manifest, grant, slot, decision, inc, sent)

    def discard(self, replacement: Replacement) -> None:
        """Stop a prepared replacement that will not be switched to."""
        if replacement.incarnation.process is not None:
            replacement.incarnation.process.kill()
        self._release(replacement.incarnation)

    def switch_to(self, replacement: Replacement, route: Callable[[], None], wait_s: float) -> Retired:
        """Make ``replacement`` the serving process between two events (see :mod:`.reload`).

        ``route`` replaces the dispatcher's routes of this extension; it runs while no event can reach it.
        Returns the old process to :meth:`retire`, or raises :class:`.reload.ReloadFailed` (the replacement is
        discarded, the old process keeps serving) when the extension stayed busy for ``wait_s`` or is
        stopping or in the middle of a restart.
        """
        with self._switch.closed(wait_s) as drained:
            if not drained:
                self.discard(replacement)
                raise ReloadFailed(self.name, f"its handlers were still running after {wait_s:.0f} s; "
                                                     "the old version keeps serving")
            if not self.exchange.lock.acquire(timeout=wait_s):
                self.discard(replacement)
                raise ReloadFailed(self.name, f"it stayed busy (a tool, command or notify batch) for "
                                                     f"{wait_s:.0f} s; the old version keeps serving")
            try:
                with self._swap_lock, self._state_lock:
                    # STARTING under the exchange's lock: a respawn has just started a process
                    if self._stopping or self._restart_thread is not None or self.state is ExtState.STARTING:
                        self.discard(replacement)
                        why = "it is being stopped" if self._stopping else "it is restarting"
                        raise ReloadFailed(self.name, f"{why}; reload it once it is ready")
                    old = self._current()
                    was = self.state
                    inc = replacement.incarnation
                    self.manifest, self.grant, self._slot = replacement.manifest, replacement.grant, replacement.slot
                    self.declared = replacement.declared
                    self._install(inc)
                    self.watchdog.reset()
                    self._kill_reason = None
                    self._answers_at_start = self._answers()
                    self.reloads += 1
                    if not was.running:  # it was dead or waiting for a restart: the new version brings it back
                        self.restart_policy.reset()
                        self.next_restart_at = None
                    assert inc.channel is not None and inc.process is not None
                    if self.hooks.last_session_start() is not replacement.session_start:
                        # a session started (or ended) while it was starting: it must not keep the old one
                        self._replay_session_start(inc.channel, replacement.declared, self._on_call)
                    self._set_state(ExtState.READY, f"reloaded: version {replacement.declared.version or '?'}, "
                                                    f"pid {inc.process.pid}")
                route()
            finally:
                self.exchange.lock.release()
                if self.exchange.queued():
                    self.hooks.queued()  # notify events queued during the switch go to the new process
        self.spare.drop()  # started for the old version; the supervisor starts one of the new version
        return Retired(old, was.running)

    def retire(self, retired: Retired) -> ShutdownRung:
        """Stop the process a reload replaced (shutdown ladder) and remove its launch directory."""
        old = retired.incarnation
        if old is None:
            return ShutdownRung.ALREADY_EXITED
        rung = ShutdownRung.ALREADY_EXITED
        if old.process is not None:
            channel = old.channel

            def polite(timeout: float) -> object:
                if channel is None:
                    return None
                return channel.control_request("shutdown", {"reason": "reloaded"}, timeout)

            rung = old.process.stop(polite if retired.was_running else lambda timeout: None,
                                    self.config.deadlines.shutdown_ms / 1000)
        self._release(old)
        current = self._incarnation
        if current is None or old.launch.endpoints.directory != current.launch.endpoints.directory:
            shutil.rmtree(old.launch.endpoints.directory, ignore_errors=True)
        return rung

    # ------------------------------------------------------------------ stop

    def stop(self, reason: str = "host shutting down") -> ShutdownRung:
        """Shutdown ladder; the extension ends ``stopped``."""
        with self._state_lock:
            self._stopping = True  # from now on an exit is expected: no crash handling, no restart
        self.spare.drop()
        prepared, self._prepared = self._prepared, None
        if prepared is not None:  # prepared by load_many and never started
            self._release(prepared)
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
        """The transport that runs this extension's subscription ``index`` (for the dispatcher).

        If the extension was reloaded (or restarted) after the route was made, the call goes to the serving
        version's handler at the same position among its handlers for ``event``, or returns ``None`` (no
        opinion) if it has no such handler (:mod:`.reload`).
        """
        call = self.exchange.call
        switch = self._switch
        routed = self.declared
        nth = sum(1 for h in routed.handlers if h.event == event and h.index < index)
        name = self.name

        def transport(payload: dict[str, Any], timeout_s: float | None, /) -> dict[str, Any] | None:
            assert timeout_s is not None, "extension handlers are always bounded"
            start = time.monotonic()
            if not switch.enter(timeout_s):
                raise HandlerFailure(FailureKind.BUSY, f"{name} was being reloaded for the whole "
                                                       f"{timeout_s * 1000:.0f} ms deadline")
            try:
                current = self.declared
                if current is routed:
                    return call(event, index, payload, timeout_s - (time.monotonic() - start))
                same = [h.index for h in current.handlers if h.event == event]
                if nth >= len(same):
                    return None
                return call(event, same[nth], payload, timeout_s - (time.monotonic() - start))
            finally:
                switch.leave()

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
        if channel is None or process is None or process.exited:
            self.process_gone(in_handler=False)  # it died before this request was sent
            raise HandlerFailure(FailureKind.NOT_RUNNING, f"{self.name} is not running ({self.last_exit})")
        return channel

    def _after_channel_failure(self, exc: ChannelFailure) -> str:
        """Supervision's view of a failed request; returns the detail to report."""
        if exc.kind == FailureKind.DISCONNECTED and self.process is not None:
            # the socket closes a moment before the exit status is there: give it that moment
            if not self.process.wait(0.25):
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
            if self._waiting_for_worker and self.remote is not None and self.remote.reachable():
                due = True  # the worker answers again: launch now, not at the end of the backoff
            if due and self._restart_thread is None:
                self._respawn()
            return
        with self._swap_lock:  # a reload does not swap the process under the watchdog's feet
            process, channel = self.process, self.channel
            if not self.state.running or process is None or channel is None:
                return
            if not process.alive():
                self.process_gone()  # a restart is then woken by its timer when its backoff is over
                return
            channel.drain_monitors()
            self.exchange.accept_reconnect(channel)
            # a remote process's resources are sampled (and limited) on its worker's machine, not here
            pid = process.pid if self.remote is None else None
            confined = self.confined
            # memory counted once: where the launch's cgroup holds a memory limit, the kernel enforces it
            memory = confined.cgroup_memory if confined is not None and confined.memory_limit_bytes else None
            reason = self.watchdog.check(pid, channel.poll_pong, channel.send_ping, cgroup_memory=memory)
        if reason is not None:
            self.kill(reason)
        else:
            self.tend_spare()

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
            cause = (cause or self._kill_reason or (self.confined.exit_reason() if self.confined else None)
                     or proc.exit_cause())
            self.last_exit = describe_exit(proc.returncode) if proc.returncode is not None else "exit status unknown"
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
            if self._stopping or self.state is not ExtState.RESTARTING:
                return  # stop() owns the process from here, or a reload brought it back meanwhile
            spare = self._take_spare()
            # The old launch's files go before a new launch reuses its slot; a spare has a slot of its own, so
            # then they go once it is ready (off the restart's path: a cgroup takes a while to empty).
            old = self._current() if spare is not None else None
            if spare is None:
                self._cleanup_launch()
            if self.remote is not None and not self.remote.reachable():
                self._wait_for_worker()
                return
            self._waiting_for_worker = False
            try:
                self.spawn(spare)
            except ExtensionStartError as exc:
                if self.remote is not None and not self.remote.reachable():
                    self._wait_for_worker()  # it went away between the check and the launch
                else:
                    self._restart_failed(str(exc.reason))
                return
        finally:
            self.exchange.lock.release()

        def await_handshake() -> None:
            try:
                self.finish_start(replaced=True)
            except ExtensionStartError as exc:
                self._restart_failed(exc.reason)
            else:
                self.restarts += 1
                self.hooks.ready_again(self)
            finally:
                if old is not None:  # the crashed process's launch, its slot and work dir
                    self._release(old)
                    shutil.rmtree(old.launch.endpoints.directory, ignore_errors=True)
                self._restart_thread = None

        self._restart_thread = threading.Thread(target=await_handshake, name=f"kithost-restart-{self.name}",
                                                daemon=True)
        self._restart_thread.start()

    def _wait_for_worker(self) -> None:
        """A remote extension's worker is unreachable: stay ``restarting`` (no crash counted) and look again
        after the link's backoff, or as soon as the worker answers (its heartbeat wakes the supervisor)."""
        assert self.remote is not None
        delay = self.remote.retry_delay()
        info = self.remote.info()
        with self._state_lock:
            self._waiting_for_worker = True
            self.next_restart_at = time.monotonic() + delay
            reason = f"waiting for worker {info.get('worker')} (unreachable)"
            if not self.transitions or self.transitions[-1].reason != reason or self.state is not ExtState.RESTARTING:
                self._set_state(ExtState.RESTARTING, reason)
        timer = threading.Timer(delay, self.hooks.needs_supervision)
        timer.daemon = True
        timer.start()

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
