"""``kithost worker``: start extensions on this machine for hosts elsewhere, over CURVE-secured TCP.

A :class:`Worker` serves the link (:mod:`.link`: a ROUTER bound where the operator says, CURVE server with
the worker's key pair, ZAP domain admitting only the host keys on its allow-list; every refused peer counted
in :attr:`Worker.refusals`). Per ``launch`` request it starts the named extension **locally with the host's
own launch code** — :func:`~host.exthost.launch.prepare_launch`, :class:`~host.exthost.sandbox.confine.Confiner`,
:class:`~host.exthost.process.ExtensionProcess`, and a :class:`~host.exthost.peers.PeerGate` admitting only
the launched process tree on its local ``ipc://`` sockets — binds those sockets through a
:class:`~.relay.Relay` whose TCP side is on the link's interface (same allow-list), and answers with the
relay's endpoints, the launch secret (over the encrypted link) and the pid. The host then talks to the
extension end to end; the worker never opens a frame.

The worker keeps no extension state and makes no restart decision: a launch that exits is reaped (its relay,
confinement and files released at once) and reported by ``status``; the host's restart policy asks for a
new launch. Each host names its live launches in every ``status`` heartbeat (``mine``); a launch not named for
twice the worker's ``[supervision] hang`` belongs to a host that died or lost the worker, and is killed (a
host that restarts launches again; nothing is left running for nobody).

Every wait is bounded; :meth:`Worker.close` stops every extension (shutdown ladder) and closes every socket.
Extensions die with the worker (the sandbox's parent-death signal), so a worker killed with ``SIGKILL``
leaves nothing running.

Nothing listens on a non-loopback address unless ``--listen`` names one.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import zmq

from ext_sdk.sandbox.plan import PlanError
from ext_sdk.wire import MAC_SIZE

from ..config import Access, HostConfig
from ..errors import HostError
from ..exthost.launch import Launch, prepare_launch
from ..exthost.manifest import Manifest
from ..exthost.peers import UNAUTHENTICATED, PeerGate
from ..exthost.process import ExtensionProcess, LogBuffer, describe_exit
from ..exthost.sandbox.confine import Confined, Confiner, SandboxRefused
from ..exthost.trust import TrustStore, decide, default_trust_file
from .keys import KeyPair
from .link import LINK_MAX, pack, unpack
from .relay import Endpoints, Relay

__all__ = ["LINK_DOMAIN", "Worker", "WorkerError", "listen_interface"]

log = logging.getLogger("kithost.worker")

#: ZAP domain of the link and of every relay's TCP sockets (the host keys on the allow-list).
LINK_DOMAIN: Final = "kithost-worker"
#: Exited launches remembered for ``status`` (oldest forgotten first).
_KEEP_EXITED: Final = 64


class WorkerError(HostError):
    """The worker cannot start as configured (bad address, no extension, a key problem)."""


def listen_interface(address: str) -> str:
    """``tcp://HOST`` of a ``tcp://HOST:PORT`` listen address (the relays bind random ports there)."""
    if not address.startswith("tcp://") or ":" not in address[len("tcp://"):]:
        raise WorkerError(f"--listen {address!r}: expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:7600")
    return address.rsplit(":", 1)[0]


@dataclass
class _Launched:
    """One launch on this worker."""

    name: str
    launch: Launch
    relay: Relay | None = None
    confined: Confined | None = None
    process: ExtensionProcess | None = None
    refusals: Counter[str] = field(default_factory=Counter)
    exit: int | None = None
    reason: str = ""
    released: bool = False
    #: ``time.monotonic()`` when its host last named it in a ``status`` request (or when it was launched).
    last_seen: float = field(default_factory=time.monotonic)


class Worker:
    """Serve ``manifests`` to hosts whose public key is in ``allowed`` (see the module doc).

    ``config`` gives the sandbox, supervision limits (cgroup memory/pids), frame limit and the grants
    (``[access]``, trust store) exactly as for a host. ``listen`` is ``tcp://HOST:PORT`` (port 0: any).
    Call :meth:`serve` from the thread that should own the extension processes (it lives until
    :meth:`close`); :attr:`address` is where the link listens.
    """

    def __init__(self, config: HostConfig, keys: KeyPair, allowed: frozenset[bytes], listen: str,
                 manifests: list[Manifest], runtime_dir: Path) -> None:
        if keys.secret is None:
            raise WorkerError("the worker needs its secret key file (NAME.key_secret)")
        if not allowed:
            raise WorkerError("no host key is allowed (--allow FILE|DIR|Z85): every host would be refused")
        names = [m.name for m in manifests]
        if not manifests or len(set(names)) != len(names):
            raise WorkerError(f"give each extension once with -e (got {names or 'none'})")
        self.config = config
        self.keys = keys
        self.manifests = {m.name: m for m in manifests}
        self._interface = listen_interface(listen)
        self._runtime = runtime_dir
        self._zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._gate = PeerGate(self._zctx)
        #: Peers refused on the link or any relay (key not allowed, or no CURVE at all), by reason.
        self.refusals: Counter[str] = Counter()
        self._gate.admit_keys(LINK_DOMAIN, "worker link", allowed, self.refusals)
        self._confiner = Confiner(config)
        #: The isolation this machine gives (probed once, before the first host asks).
        self.level = str(self._confiner.probe.level)
        self._trust = TrustStore(config.sandbox.trust_file or default_trust_file())
        self._slots = itertools.count()
        self._launches: dict[str, _Launched] = {}
        self._stop = threading.Event()
        self._closed = False
        self._reported = 0
        self._closing: list[threading.Thread] = []
        link = self._link = self._zctx.socket(zmq.ROUTER)
        link.linger = 0
        link.maxmsgsize = LINK_MAX
        link.curve_server = True
        link.curve_secretkey = keys.secret  # type: ignore[assignment]
        link.zap_domain = LINK_DOMAIN.encode()
        link.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        self._link_monitor = link.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                                     | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        try:
            link.bind(listen)
        except zmq.ZMQError as exc:
            self.close()
            raise WorkerError(f"cannot listen on {listen}: {exc}") from None
        #: The link's bound endpoint (the port filled in).
        endpoint = link.getsockopt(zmq.LAST_ENDPOINT)
        self.address: str = endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)

    # ------------------------------------------------------------------ serving

    def serve(self, tick_s: float = 0.1) -> None:
        """Answer link requests and reap exited launches until :meth:`close` (or :meth:`stop`)."""
        poller = zmq.Poller()
        poller.register(self._link, zmq.POLLIN)
        poller.register(self._link_monitor, zmq.POLLIN)
        while not self._stop.is_set():
            for sock, _ in poller.poll(int(tick_s * 1000)):
                if sock is self._link_monitor:
                    self._link_monitor.recv_multipart()
                    self.refusals[UNAUTHENTICATED] += 1  # a peer without CURVE, or with a broken handshake
                    continue
                frames = self._link.recv_multipart()
                if len(frames) != 2:
                    continue
                peer, body = frames
                self._link.send_multipart([peer, pack(self._answer(body))])
            self._reap()
            self._report_refusals()
        self._shutdown_all()

    def _report_refusals(self) -> None:
        total = sum(self.refusals.values())
        if total > self._reported:
            log.warning("refused %d connection(s) from peers whose key is not allowed (%d so far)",
                        total - self._reported, total)
            self._reported = total

    def stop(self) -> None:
        """Make :meth:`serve` return (after stopping every extension)."""
        self._stop.set()

    def _answer(self, body: bytes) -> dict[str, Any]:
        try:
            msg = unpack(body)
        except ValueError as exc:
            return {"id": None, "ok": False, "error": str(exc)}
        req_id, op = msg.get("id"), msg.get("op")
        try:
            if op == "describe":
                reply = self._describe()
            elif op == "launch":
                reply = self._launch(str(msg.get("name")))
            elif op == "stop":
                reply = self._stop_launch(str(msg.get("launch")), bool(msg.get("kill")))
            elif op == "status":
                mine = msg.get("mine")
                reply = self._status(mine if isinstance(mine, list) else [])
            else:
                raise WorkerError(f"unknown link request {op!r}")
        except (HostError, OSError, zmq.ZMQError, SandboxRefused, PlanError) as exc:
            return {"id": req_id, "ok": False, "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
        return {"id": req_id, "ok": True, **reply}

    def _describe(self) -> dict[str, Any]:
        return {"sandbox": self.level,
                "extensions": {m.name: {"version": m.version, "description": m.description, "events": list(m.events),
                                        "permissions": list(m.permissions), "restart": str(m.restart)}
                               for m in self.manifests.values()}}

    def _launch(self, name: str) -> dict[str, Any]:
        manifest = self.manifests.get(name)
        if manifest is None:
            raise WorkerError(f"this worker does not offer {name!r} (it offers: {', '.join(sorted(self.manifests))})")
        # The worker decides what the process may reach (its confinement); host calls are each host's to grant.
        verdict = decide(manifest, self.config, self._trust)
        if verdict.grant is not None:
            access = verdict.grant.access
        elif verdict.request.access.empty:
            access = Access()
        else:
            raise WorkerError(f"{name} is not trusted on the worker: {verdict.reason}")
        slot = next(self._slots)
        launch = prepare_launch(manifest, self._runtime, slot)
        launch_id = f"{slot}-{launch.domain.rsplit('/', 1)[-1]}"
        entry = _Launched(name, launch)
        self._launches[launch_id] = entry
        try:
            local = Endpoints(launch.endpoints.events, launch.endpoints.calls, launch.endpoints.control)
            relay = entry.relay = Relay(self._zctx, local, self._interface, self.keys, remote_domain=LINK_DOMAIN,
                                        max_frame=self.config.limits.max_frame + MAC_SIZE,
                                        local_domain=launch.domain)
            supervision = self.config.supervision_for(name)
            confined = entry.confined = self._confiner.confine(launch, manifest, access, slot,
                                                               supervision)
            self._gate.admit(launch.domain, name, entry.refusals)
            buffer = LogBuffer(self.config.limits.log_lines, self.config.limits.log_line_bytes,
                               lambda stream, line: log.info("[%s] %s", name, line))
            process = entry.process = ExtensionProcess(confined.spec, buffer)
            self._gate.started(launch.domain, process.pid)
        except BaseException:
            if entry.process is not None:
                entry.process.kill()
            self._release(entry)
            del self._launches[launch_id]
            raise
        remote = relay.remote
        log.info("launched %s (launch %s, pid %d)", name, launch_id, process.pid)
        return {"launch": launch_id, "pid": process.pid, "secret": launch.secret,
                "endpoints": {"events": remote.events, "calls": remote.calls, "control": remote.control}}

    def _stop_launch(self, launch_id: str, kill: bool) -> dict[str, Any]:
        entry = self._launches.get(launch_id)
        if entry is None:
            raise WorkerError(f"no launch {launch_id!r} on this worker")
        if entry.process is not None and entry.process.alive():
            if kill:
                entry.process.kill()
            else:  # the host already asked politely through the relay: SIGTERM, then SIGKILL
                entry.process.stop(lambda timeout: None, self.config.deadlines.shutdown_ms / 1000)
        self._finish(entry, "stopped by the host")
        return {"exit": entry.exit}

    def _status(self, mine: list[Any]) -> dict[str, Any]:
        now = time.monotonic()
        for launch_id in mine:
            entry = self._launches.get(str(launch_id))
            if entry is not None:
                entry.last_seen = now
        self._reap()
        return {"launches": {lid: {"alive": e.process is not None and e.process.alive(), "exit": e.exit,
                                   "reason": e.reason} for lid, e in self._launches.items()}}

    # ------------------------------------------------------------------ bookkeeping

    def _reap(self) -> None:
        """Release every launch whose process exited; forget the oldest exited ones."""
        self._closing = [t for t in self._closing if t.is_alive()]
        orphan_s = 2 * self.config.supervision.hang_ms / 1000
        now = time.monotonic()
        for entry in list(self._launches.values()):
            if entry.released or entry.process is None:
                continue
            if not entry.process.alive():
                self._finish(entry, "")
            elif now - entry.last_seen > orphan_s:  # its host died or lost us: nobody will ever stop it
                entry.process.kill()
                self._finish(entry, f"its host went away (not named in a heartbeat for {orphan_s:.0f} s)")
        exited = [lid for lid, e in self._launches.items() if e.released]
        for lid in exited[:-_KEEP_EXITED]:
            del self._launches[lid]

    def _finish(self, entry: _Launched, reason: str) -> None:
        if entry.released:
            return
        entry.exit = entry.process.returncode if entry.process is not None else None
        cause = entry.confined.exit_reason() if entry.confined is not None else None
        entry.reason = cause or reason or describe_exit(entry.exit)
        log.info("%s ended: %s", entry.name, entry.reason)
        self._release(entry)

    def _release(self, entry: _Launched) -> None:
        entry.released = True
        if entry.relay is not None:
            # off this thread: a proxy blocked in a send ends only at its send timeout, and the link must keep
            # answering meanwhile (a host counts a silent worker as lost)
            closing = threading.Thread(target=entry.relay.close, name=f"kithost-relay-close-{entry.name}")
            closing.start()
            self._closing.append(closing)
        if entry.confined is not None:
            entry.confined.release()
        self._gate.forget(entry.launch.domain)
        entry.launch.cleanup()
        shutil.rmtree(entry.launch.endpoints.directory, ignore_errors=True)

    def _shutdown_all(self) -> None:
        for entry in list(self._launches.values()):
            if entry.process is not None and entry.process.alive():
                entry.process.stop(lambda timeout: None, self.config.deadlines.shutdown_ms / 1000)
            self._finish(entry, "worker shutting down")

    def close(self) -> None:
        """Stop every extension and close every socket (idempotent; call after :meth:`serve` returned)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._shutdown_all()
        for closing in self._closing:
            closing.join()  # bounded: a relay's close waits at most its send timeout + 2 s
        try:
            self._link.disable_monitor()
        except zmq.ZMQError:
            pass
        self._link_monitor.close(linger=0)
        self._link.close(linger=0)
        self._gate.close()
        self._zctx.term()

