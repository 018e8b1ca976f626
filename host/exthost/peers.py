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

A local launch's ``events`` socket is not a libzmq socket (:mod:`.events_link`, the host's own ZMTP
peer): it takes the same kernel credentials from the connection it accepts and asks
:meth:`PeerGate.decide` with the same address form before it writes anything, so the same rules apply to
it, and it frees its slot (:meth:`PeerGate.released`) itself when it sees the connection close.

One peer per socket: each socket of a host :class:`~.channel.Channel` is in a
domain of its own, :func:`socket_domain` (the launch's domain plus the
socket's name), and the handler admits *one* connection on it at a time. Any
further one is refused — a child of the extension that attaches a second REP
to its events endpoint gets no event, and one holding the key cannot send a
frame with a huge sequence number that would make every later frame of the
real extension a replay. Another process gets the slot only once the socket's
monitor has reported that the admitted connection closed
(:meth:`PeerGate.released`, called by the channel, which finds its context's
gate with :meth:`PeerGate.of`: a context has at most one ZAP handler, its
``inproc://zeromq.zap.01`` can be bound once). The process that holds the slot
may connect again at any time: that is the extension's own reconnect (libzmq
retries 100 ms after a frame over the size limit cut its connection, which can
be before the host has read the monitor), and it must not be refused — a
client refused at the handshake gets a ZMTP ``ERROR`` and libzmq then ends that
connect for good, which would cut the extension off. It grants nothing: that
process is the peer, with the key and every event already. A refused second
connection is counted like a stranger's. A socket bound in the launch's whole
domain (the conformance kit's, a remote worker's relay) gets the process-tree
rule alone. Nothing assumes a connection right after a bind: a warm spare's
launch is admitted when it starts and connects when it is used.

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
import weakref
from collections import Counter
from dataclasses import dataclass, field

import psutil
import zmq
from zmq.utils import z85

__all__ = ["UNAUTHENTICATED", "PeerGate", "peer_pid", "secure_server_socket", "socket_domain"]

log = logging.getLogger("kithost.peers")

#: The ``frame_errors`` key under which refused connections are counted.
UNAUTHENTICATED = "unauthenticated"
#: Where libzmq sends ZAP requests (RFC 27).
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
#: How long a ZAP request for a launch whose process is not started yet may wait for its pid.
PID_WAIT_S = 2.0
#: Between a launch's domain and a socket's name in that socket's own domain (:func:`socket_domain`).
SOCKET_SEP = "#"
#: The ZAP handler of each context (libzmq allows one per context).
_GATES: weakref.WeakKeyDictionary[zmq.Context[zmq.Socket[bytes]], PeerGate] = weakref.WeakKeyDictionary()


def secure_server_socket(sock: zmq.Socket[bytes], domain: str) -> None:
    """Put ``sock`` (not yet bound) in ``domain``; without a ZAP handler every connection is refused."""
    sock.zap_domain = domain.encode()
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


def socket_domain(domain: str, socket: str) -> str:
    """The ZAP domain of the socket named ``socket`` of the launch in ``domain``: one peer at a time."""
    return f"{domain}{SOCKET_SEP}{socket}"


def peer_pid(address: str) -> int | None:
    """The pid in an ``ipc://`` ZAP address (``localhost:<uid>:<gid>:<pid>``), or ``None``."""
    parts = address.split(":")
    if len(parts) != 4 or not parts[3].isdigit():
        return None
    return int(parts[3])


@dataclass
class _Slot:
    """One socket of a launch: whether a connection admitted on it may still be open."""

    held: bool = False
    #: Connections admitted so far (compared with what the socket's monitor has seen succeed).
    admitted: int = 0
    #: Pid of the process whose connection holds the slot.
    holder: int | None = None


@dataclass
class _Launch:
    name: str
    refusals: Counter[str]
    pid: int | None = None
    started: threading.Event = field(default_factory=threading.Event)
    #: By socket name (:func:`socket_domain`), created at the first connection.
    slots: dict[str, _Slot] = field(default_factory=dict)


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
        _GATES[zctx] = self
        self.start()

    @staticmethod
    def of(zctx: zmq.Context[zmq.Socket[bytes]]) -> PeerGate | None:
        """The ZAP handler running for ``zctx``, if one is."""
        return _GATES.get(zctx)

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
        socket = ""
        with self._lock:
            launch = self._launches.get(domain)
            if launch is None and SOCKET_SEP in domain:
                launch_domain, _, socket = domain.rpartition(SOCKET_SEP)
                launch = self._launches.get(launch_domain)
        if launch is None:
            log.warning("refused a connection to a closed launch (%s from %s)", domain, address)
            return False
        launch.started.wait(PID_WAIT_S)
        if pid is None or launch.pid is None or not _descends_from(pid, launch.pid):
            launch.refusals[UNAUTHENTICATED] += 1
            log.warning("extension %s: refused a connection from %s (not its process)", launch.name,
                        f"pid {pid}" if pid is not None else repr(address))
            return False
        if not socket:
            return True
        with self._lock:
            slot = launch.slots.setdefault(socket, _Slot())
            held, holder = slot.held, slot.holder
            if not held or pid == holder:
                slot.held, slot.holder = True, pid
                slot.admitted += 1
        if not held:
            return True
        if pid == holder:
            log.info("extension %s: pid %d connected to its %s socket again before its earlier connection was seen "
                     "closed (a reconnect); admitted", launch.name, pid, socket)
            return True
        launch.refusals[UNAUTHENTICATED] += 1
        log.warning("extension %s: refused a second connection to its %s socket from pid %d (pid %s holds it; "
                    "one peer per socket)", launch.name, socket, pid, holder)
        return False

    def released(self, domain: str, seen: int) -> bool:
        """The socket in ``domain`` (a :func:`socket_domain`) has no open connection, and its monitor has seen
        ``seen`` handshakes succeed there: when that is every connection admitted, the next one may be
        admitted (whether it was freed). Thread-safe; a forgotten launch is ignored."""
        launch_domain, _, socket = domain.rpartition(SOCKET_SEP)
        with self._lock:
            launch = self._launches.get(launch_domain)
            slot = launch.slots.get(socket) if launch is not None else None
            if slot is None or not slot.held or slot.admitted != seen:
                return False
            slot.held, slot.holder = False, None
            return True

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
        for zctx, gate in list(_GATES.items()):
            if gate is self:
                del _GATES[zctx]


def _descends_from(pid: int, root: int) -> bool:
    """Whether ``pid`` is ``root`` or one of its descendants (by the live process tree).

    Walks up the parent pids from ``/proc/PID/stat`` and stops at ``root``: a process under bubblewrap is
    found two steps up, where a full ancestor list (``psutil.Process.parents``, up to pid 1, one object
    per process) cost about 1 ms per connection — three per start, inside the handshake.
    """
    seen = 0
    while pid > 1 and seen < 64:
        if pid == root:
            return True
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            return _descends_from_psutil(pid, root) if seen == 0 else False
        pid = int(stat[stat.rindex(b")") + 2:].split(b" ", 2)[1])  # after "(comm) state ": the ppid
        seen += 1
    return pid == root


def _descends_from_psutil(pid: int, root: int) -> bool:
    """The same, where ``/proc`` cannot be read this way (another OS)."""
    try:
        ancestors = psutil.Process(pid).parents()
    except psutil.Error:
        return False
    return any(parent.pid == root for parent in ancestors)
