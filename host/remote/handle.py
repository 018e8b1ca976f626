"""The host's side of a remote extension: its worker link, its heartbeat, and a handle on each launch.

:class:`RemoteSource` is one ``[remote."NAME"]`` of the config: a :class:`~.link.LinkClient` to the worker
and a heartbeat thread asking the worker for ``status`` every ``[supervision] heartbeat``. It is the
:class:`~host.exthost.extension.RemoteLauncher` of its :class:`~host.exthost.extension.RunningExtension`:
:meth:`RemoteSource.start` asks the worker to launch the extension and returns a
:class:`~host.exthost.channel.Channel` that *connects* to the worker's relay (CURVE client) and a
:class:`RemoteProcess` — the handle the supervisor treats like a local process:

* its exit is what the worker's ``status`` reports (status and reason), seen within one heartbeat;
* a worker that does not answer for ``[supervision] hang`` is **lost**: every launch it made is gone (cause
  ``worker … lost``), the supervisor applies the restart policy, and while the worker stays unreachable the
  restart waits for it (:meth:`RemoteSource.reachable`, :meth:`RemoteSource.retry_delay`: exponential from
  ``backoff_initial`` to ``backoff_max``) instead of counting crashes; the first answered heartbeat wakes the
  supervisor, which launches again (libzmq reconnects the link by itself meanwhile);
* a worker that answers but no longer knows a launch (it was restarted) reports that launch gone;
* :meth:`RemoteProcess.kill` / :meth:`RemoteProcess.stop` ask the worker (bounded), and count the process as
  gone even when the worker cannot be reached (it kills its extensions when it dies).

The extension's own heartbeat (``ping``/``pong`` on its control channel, through the relay) keeps working as
for a local extension: a hung remote handler is killed and restarted the same way. Resource sampling
(psutil) is the worker's machine's business: the worker confines with the same cgroup limits; the host
shows none for a remote process.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from ..config import Remote, Supervision
from ..errors import HostError
from ..exthost.channel import Channel, RemoteEndpoints
from ..exthost.launch import Endpoints, Launch, LaunchSpec
from ..exthost.process import ShutdownRung, describe_exit
from .keys import KeyPair, load_keypair, load_public, parse_public
from .link import LinkClient, LinkDown, curve_client

__all__ = ["RemoteProcess", "RemoteSource", "worker_public_key"]

log = logging.getLogger("kithost.remote")


def worker_public_key(key: str) -> bytes:
    """The worker's public key from the config's ``key``: a ``.key`` file or 40 Z85 characters."""
    path = Path(key).expanduser()
    if path.exists():
        return load_public(path)
    return parse_public(key, "[remote] key (neither an existing key file nor a 40-character Z85 key)")


class RemoteProcess:
    """One launch on a worker, as the supervisor sees a process (a :class:`~host.exthost.process.ProcessHandle`)."""

    def __init__(self, source: RemoteSource, launch_id: str, pid: int) -> None:
        self._source = source
        #: The worker's id of this launch.
        self.launch_id = launch_id
        #: Its pid on the worker's machine.
        self.pid = pid
        self.started = time.monotonic()
        self._returncode: int | None = None
        self._cause: str | None = None
        self._gone = threading.Event()

    def alive(self) -> bool:
        """Whether the worker last said it runs (and the worker is not lost)."""
        return not self._gone.is_set()

    @property
    def exited(self) -> bool:
        """Whether its end is known."""
        return self._gone.is_set()

    @property
    def returncode(self) -> int | None:
        """Its exit status on the worker; ``None`` while running or when unknown (a lost worker)."""
        return self._returncode

    def exit_cause(self) -> str | None:
        """Why it ended when the status alone does not say (a lost or restarted worker, a cgroup limit)."""
        return self._cause

    def wait(self, timeout: float | None) -> bool:
        """Wait for its end to be known (the next heartbeat); whether it ended."""
        return self._gone.wait(timeout)

    def ended(self, returncode: int | None, cause: str | None) -> None:
        """The worker reported its exit, or the worker is lost (first report wins)."""
        if self._gone.is_set():
            return
        self._returncode, self._cause = returncode, cause
        self._gone.set()

    def kill(self) -> None:
        """Ask the worker to SIGKILL it (bounded); it counts as gone afterwards in any case."""
        if not self.alive():
            return
        self._end_by(kill=True, timeout_s=self._source.request_timeout_s)

    def stop(self, polite: Callable[[float], object], grace_s: float) -> ShutdownRung:
        """The ladder across the link: the shutdown request (through the relay), then the worker's
        SIGTERM → SIGKILL. Bounded by about ``grace_s`` plus one link round trip."""
        if not self.alive():
            return ShutdownRung.ALREADY_EXITED
        step = grace_s / 2
        polite(step)
        if self._gone.wait(step) or self._source.poll_now(self):
            return ShutdownRung.POLITE
        code = self._end_by(kill=False, timeout_s=grace_s + self._source.request_timeout_s)
        return ShutdownRung.SIGKILL if code == -signal.SIGKILL else ShutdownRung.SIGTERM

    def _end_by(self, *, kill: bool, timeout_s: float) -> int | None:
        code: int | None = -signal.SIGKILL if kill else -signal.SIGTERM
        cause = None
        if self._source.reachable():
            try:
                reply = self._source.link.request("stop", timeout_s, launch=self.launch_id, kill=kill)
                code = reply.get("exit") if isinstance(reply.get("exit"), int) else code
            except LinkDown as exc:
                cause = f"could not reach its worker to stop it ({exc})"
                self._source.lost(cause)
            except HostError as exc:
                cause = f"its worker refused to stop it ({exc})"
        else:
            code, cause = None, f"worker {self._source.address} is unreachable"
        self.ended(code, cause)
        return code


class RemoteSource:
    """One remote extension's worker (``[remote."NAME"]``): link, heartbeat, launches (see the module doc).

    ``wake`` is called (any thread) when a launch ended or the worker came back: the supervisor should look.
    Raises :class:`~.keys.KeyFileError` for a bad key file or key.
    """

    def __init__(self, zctx: zmq.Context[zmq.Socket[bytes]], name: str, remote: Remote, supervision: Supervision,
                 runtime_dir: Path, wake: Callable[[], None]) -> None:
        self.name = name
        #: The extension's name on the worker.
        self.extension = remote.extension or name
        self.address = remote.worker
        self._zctx = zctx
        self._keys: KeyPair = load_keypair(Path(remote.host_key))
        self._worker_public = worker_public_key(remote.key)
        self._supervision = supervision
        self._runtime = runtime_dir
        self._wake = wake
        self.link = LinkClient(zctx, remote.worker, self._keys, self._worker_public,
                               heartbeat_ms=supervision.heartbeat_ms,
                               backoff_initial_ms=supervision.backoff_initial_ms,
                               backoff_max_ms=supervision.backoff_max_ms)
        #: Longest wait for one link request (a heartbeat period, at least 1 s).
        self.request_timeout_s = max(1.0, supervision.heartbeat_ms / 1000)
        self._lock = threading.Lock()
        self._launches: dict[str, RemoteProcess] = {}
        self._reachable = False
        self._retries = 0
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        #: What the worker said in ``describe`` (filled by :meth:`describe`).
        self.description: dict[str, Any] = {}

    # ------------------------------------------------------------------ the worker

    def describe(self, timeout_s: float) -> dict[str, Any]:
        """The worker's offer for this extension (``version``, ``events``, ``permissions``, ``restart``,
        ``description``); raises :class:`~.link.LinkDown` / :class:`~.link.LinkError` (e.g. not offered)."""
        reply = self.link.request("describe", timeout_s)
        offered = reply.get("extensions") or {}
        if self.extension not in offered:
            raise HostError(f"worker {self.address} does not offer {self.extension!r} "
                            f"(it offers: {', '.join(sorted(offered)) or 'nothing'})")
        self._reachable = True
        self.description = {"sandbox": reply.get("sandbox"), **offered[self.extension]}
        self._start_heartbeat()
        return dict(offered[self.extension])

    def reachable(self) -> bool:
        """Whether the worker answered its last heartbeat (within ``hang``)."""
        return self._reachable

    def retry_delay(self) -> float:
        """Seconds until the next launch attempt while the worker is unreachable (grows each call)."""
        cfg = self._supervision
        delay: float = min(cfg.backoff_initial_ms * 2 ** min(self._retries, 30), cfg.backoff_max_ms) / 1000
        self._retries += 1
        return delay

    def info(self) -> dict[str, Any]:
        """Plain data for ``ext status``: worker, reachability, link round trip, the worker's sandbox level."""
        rtt = self.link.last_rtt
        return {"worker": self.address, "extension": self.extension, "reachable": self._reachable,
                "link_rtt_ms": round(rtt * 1000, 3) if rtt is not None else None,
                "sandbox": self.description.get("sandbox")}

    # ------------------------------------------------------------------ launches (the RemoteLauncher)

    def start(self, slot_dir: Path, max_frame: int, timeout_s: float) -> tuple[Launch, Channel, RemoteProcess]:
        """Launch the extension on the worker and connect a channel to its relay (no waiting for ``hello``).

        Raises :class:`~.link.LinkDown` / :class:`~.link.LinkError` (the worker's reason) or ``zmq.ZMQError``.
        """
        reply = self.link.request("launch", timeout_s, name=self.extension)
        launch_id, pid, secret = reply.get("launch"), reply.get("pid"), reply.get("secret")
        ends = reply.get("endpoints")
        if not (isinstance(launch_id, str) and isinstance(pid, int) and isinstance(secret, bytes)
                and isinstance(ends, dict) and all(isinstance(ends.get(k), str) and str(ends[k]).startswith("tcp://")
                                                   for k in ("events", "calls", "control"))):
            raise HostError(f"worker {self.address}: malformed launch reply")
        launch = Launch(Endpoints(slot_dir), secret, f"kithost-remote/{self.name}/{secrets.token_hex(6)}",
                        LaunchSpec(argv=(), env={}, cwd=slot_dir))
        proc = RemoteProcess(self, launch_id, pid)
        with self._lock:
            self._launches[launch_id] = proc
        try:
            channel = Channel(self._zctx, launch, max_frame,
                              RemoteEndpoints(ends["events"], ends["calls"], ends["control"], self._secure))
        except zmq.ZMQError:
            proc.kill()
            raise
        self._retries = 0
        return launch, channel, proc

    def _secure(self, sock: zmq.Socket[bytes]) -> None:
        curve_client(sock, self._keys, self._worker_public)

    # ------------------------------------------------------------------ heartbeat

    def _start_heartbeat(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._heartbeat, name=f"kithost-remote-{self.name}", daemon=True)
            self._thread.start()

    def _heartbeat(self) -> None:
        period = self._supervision.heartbeat_ms / 1000
        hang = self._supervision.hang_ms / 1000
        last_answer = time.monotonic()
        while not self._closing.wait(period):
            try:
                reply = self.link.request("status", min(period, hang), mine=self._live_ids())
            except HostError:
                if self._reachable and time.monotonic() - last_answer > hang:
                    self.lost(f"worker {self.address} lost: no answer for {time.monotonic() - last_answer:.1f} s")
                continue
            last_answer = time.monotonic()
            self._apply_status(reply.get("launches") or {})
            if not self._reachable:
                log.info("remote %s: worker %s answers again", self.name, self.address)
                self._reachable = True
                self._wake()

    def poll_now(self, proc: RemoteProcess) -> bool:
        """Ask the worker now whether ``proc`` ended (the shutdown ladder); whether it did."""
        try:
            reply = self.link.request("status", self.request_timeout_s, mine=self._live_ids())
        except HostError:
            return False
        self._apply_status(reply.get("launches") or {})
        return proc.exited

    def _live_ids(self) -> list[str]:
        with self._lock:
            return list(self._launches)

    def _apply_status(self, launches: dict[str, Any]) -> None:
        ended = False
        with self._lock:
            for launch_id, proc in list(self._launches.items()):
                state = launches.get(launch_id)
                if state is None:
                    proc.ended(None, f"worker {self.address} no longer knows this launch (was it restarted?)")
                elif not state.get("alive"):
                    code = state.get("exit")
                    code = code if isinstance(code, int) else None
                    reason = state.get("reason")  # the worker's cgroup verdict (memory, pids), if that ended it
                    cause = reason if isinstance(reason, str) and reason and reason != describe_exit(code) else None
                    proc.ended(code, cause)
                else:
                    continue
                del self._launches[launch_id]
                ended = True
        if ended:
            self._wake()

    def lost(self, cause: str) -> None:
        """The worker does not answer: every launch it made counts as gone, restarts wait for it."""
        log.warning("remote %s: %s", self.name, cause)
        self._reachable = False
        with self._lock:
            lost, self._launches = list(self._launches.values()), {}
        for proc in lost:
            proc.ended(None, cause)
        self._wake()

    def close(self) -> None:
        """Stop the heartbeat and close the link (launches still running are the caller's to stop first)."""
        self._closing.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.request_timeout_s + 1)
        self.link.close()
