"""Who may connect to an extension's sockets: the ZAP handler that admits only the launched process tree.

Every socket the host binds for an extension is in a ZAP domain of its own
launch (``ZMQ_ZAP_DOMAIN``, with ``ZMQ_ZAP_ENFORCE_DOMAIN`` so that a missing
handler fails closed). libzmq asks the handler about every new connection,
before any frame is delivered, and for ``ipc://`` it tells the peer's
credentials as the kernel gave them (``SO_PEERCRED``; the ZAP address reads
``localhost:<uid>:<gid>:<pid>``, the pid in the host's pid namespace). The
handler admits a connection only when that pid is the launched process or one
of its descendants (a process under bubblewrap is a grandchild of the one the
host started). So no other process — another extension, or anything else of
the same user — can connect to an extension's endpoints, receive its events or
send frames as it. Every refused connection is counted on that extension
(``frame_errors["unauthenticated"]``) and logged.

The host's operator socket (``kithost ext status|logs|restart``) is in a
domain with the opposite rule (:meth:`PeerGate.guard_operators`): any process
of the user may connect *except* an extension's process tree — so an
extension that got hold of ``ops.key`` (where no filesystem layer hides it)
still cannot restart or read its neighbours. Refusals there are counted in
:attr:`PeerGate.operator_refusals`.

Remote workers (:mod:`host.remote`) connect over TCP with CurveZMQ instead: a domain registered with
:meth:`PeerGate.admit_keys` admits only the CURVE mechanism and only a client whose public key is on that
domain's allow-list (the ZAP request carries the key the client proved it holds). Refusals are counted the
same way. The user id answered is empty: a non-empty one breaks REP replies through libzmq 4.3.5's routing
of the ``User-Id`` metadata.

Why not CurveZMQ for local extensions: it was tried, and encrypting every frame of a local
``ipc://`` round trip cost ~15 µs (≈13 % of a gate dispatch) for no gain over
the kernel's own peer credentials; CURVE is for transports that leave the
machine. Why a hand-written handler rather than pyzmq's
:class:`zmq.auth.Authenticator`: pyzmq's NULL-mechanism check knows only IP
allow/deny lists, not peer credentials; the ZAP protocol (RFC 27) is seven
frames in, six out.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field

import psutil
import zmq
from zmq.utils import z85

__all__ = ["UNAUTHENTICATED", "PeerGate", "peer_pid", "secure_server_socket"]

log = logging.getLogger("kithost.peers")

#: The ``frame_errors`` key under which refused connections are counted.
UNAUTHENTICATED = "unauthenticated"
#: Where libzmq sends ZAP requests (RFC 27).
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
#: How long a ZAP request for a launch whose process is not started yet may wait for its pid.
PID_WAIT_S = 2.0


def secure_server_socket(sock: zmq.Socket[bytes], domain: str) -> None:
    """Put ``sock`` (not yet bound) in ``domain``; without a ZAP handler every connection is refused."""
    sock.zap_domain = domain.encode()
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


def peer_pid(address: str) -> int | None:
    """The pid in an ``ipc://`` ZAP address (``localhost:<uid>:<gid>:<pid>``), or ``None``."""
    parts = address.split(":")
    if len(parts) != 4 or not parts[3].isdigit():
        return None
    return int(parts[3])


@dataclass
class _Launch:
    name: str
    refusals: Counter[str]
    pid: int | None = None
    started: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class _KeyDomain:
    name: str
    keys: frozenset[bytes]
    refusals: Counter[str]


class PeerGate(threading.Thread):
    """The host's ZAP handler (one thread per host context)."""

    def __init__(self, zctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        super().__init__(name="kithost-zap", daemon=True)
        self._sock = zctx.socket(zmq.REP)
        self._sock.linger = 0
        self._sock.bind(ZAP_ENDPOINT)
        self._lock = threading.Lock()
        self._launches: dict[str, _Launch] = {}
        self._key_domains: dict[str, _KeyDomain] = {}
        self._stopping = threading.Event()
        self._operator_domain: str | None = None
        #: Connections to the operator socket refused because they came from an extension.
        self.operator_refusals = 0
        self.start()

    def guard_operators(self, domain: str) -> None:
        """``domain`` admits every process except the extensions' (the host's operator socket)."""
        self._operator_domain = domain

    def admit(self, domain: str, name: str, refusals: Counter[str]) -> None:
        """Register a launch before its process starts; refusals in ``domain`` go to ``refusals``."""
        with self._lock:
            self._launches[domain] = _Launch(name, refusals)

    def started(self, domain: str, pid: int) -> None:
        """The launch's process is ``pid``: from now on it and its descendants are admitted."""
        with self._lock:
            launch = self._launches.get(domain)
        if launch is not None:
            launch.pid = pid
            launch.started.set()

    def admit_keys(self, domain: str, name: str, public_keys: frozenset[bytes], refusals: Counter[str]) -> None:
        """``domain`` admits CURVE clients whose (Z85) public key is in ``public_keys``, nobody else."""
        with self._lock:
            self._key_domains[domain] = _KeyDomain(name, frozenset(public_keys), refusals)

    def forget(self, domain: str) -> None:
        """The launch ended: nobody is admitted in ``domain`` any more."""
        with self._lock:
            self._launches.pop(domain, None)
            self._key_domains.pop(domain, None)

    def decide(self, domain: str, address: str, mechanism: bytes = b"NULL",
               credentials: tuple[bytes, ...] = ()) -> bool:
        """Whether the peer at ``address`` may connect in ``domain`` (counted and logged when not)."""
        with self._lock:
            keyed = self._key_domains.get(domain)
        if keyed is not None:
            return self._key_may_connect(keyed, address, mechanism, credentials)
        pid = peer_pid(address)
        if domain == self._operator_domain:
            return self._operator_may_connect(pid, address)
        with self._lock:
            launch = self._launches.get(domain)
        if launch is None:
            log.warning("refused a connection to a closed launch (%s from %s)", domain, address)
            return False
        launch.started.wait(PID_WAIT_S)
        if pid is not None and launch.pid is not None and _descends_from(pid, launch.pid):
            return True
        launch.refusals[UNAUTHENTICATED] += 1
        log.warning("extension %s: refused a connection from %s (not its process)", launch.name,
                    f"pid {pid}" if pid is not None else repr(address))
        return False

    @staticmethod
    def _key_may_connect(keyed: _KeyDomain, address: str, mechanism: bytes,
                         credentials: tuple[bytes, ...]) -> bool:
        key = credentials[0] if mechanism == b"CURVE" and credentials and len(credentials[0]) == 32 else None
        if key is not None and z85.encode(key) in keyed.keys:
            return True
        keyed.refusals[UNAUTHENTICATED] += 1
        shown = z85.encode(key).decode() if key is not None else f"no CURVE key ({mechanism.decode()})"
        log.warning("%s: refused a connection from %s: %s is not on the allow-list", keyed.name, address, shown)
        return False

    def _operator_may_connect(self, pid: int | None, address: str) -> bool:
        with self._lock:
            roots = [(launch.name, launch.pid) for launch in self._launches.values() if launch.pid is not None]
        if pid is None:
            self.operator_refusals += 1
            log.warning("refused a connection to the operator socket from %r (no peer credentials)", address)
            return False
        for name, root in roots:
            if _descends_from(pid, root):
                self.operator_refusals += 1
                log.warning("extension %s tried to use the host's operator socket (pid %d): refused", name, pid)
                return False
        return True

    def run(self) -> None:
        sock = self._sock
        while not self._stopping.is_set():
            try:
                if not sock.poll(200):
                    continue
                request = sock.recv_multipart()
            except zmq.ZMQError:
                return  # the context is going away
            version, request_id = request[0], request[1] if len(request) > 1 else b""
            # RFC 27: version, request id, domain, address, identity, mechanism, credentials...
            ok = len(request) >= 6 and version == b"1.0" and self.decide(
                request[2].decode(errors="replace"), request[3].decode(errors="replace"), request[5],
                tuple(request[6:]))
            reply = [version, request_id, b"200" if ok else b"400", b"OK" if ok else b"not admitted", b"", b""]
            try:
                sock.send_multipart(reply)
            except zmq.ZMQError:
                return

    def close(self) -> None:
        """Stop the handler thread and close its socket (before the context is destroyed)."""
        self._stopping.set()
        self.join(timeout=2)
        self._sock.close(linger=0)


def _descends_from(pid: int, root: int) -> bool:
    """Whether ``pid`` is ``root`` or one of its descendants (by the live process tree)."""
    if pid == root:
        return True
    try:
        ancestors = psutil.Process(pid).parents()
    except psutil.Error:
        return False
    return any(parent.pid == root for parent in ancestors)
