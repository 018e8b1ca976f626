"""The operator channel of a running host: ``kithost ext status|logs|restart|reload`` talk to it.

Every :class:`~host.exthost.host.ExtensionHost` binds a REP socket at
``<its private 0700 dir>/ops`` (mode 0600) and writes ``host.json`` (pid,
start time, working directory, checkout) and ``ops.key`` (both 0600; the key
random) beside it. The CLI finds running hosts by listing the runtime base directory,
so only the same user can reach them.

Frames are sealed and opened by the one code path of :mod:`ext_sdk.wire`
(HMAC-SHA256 with ``ops.key``, sequence numbers, size and schema limits),
with this channel's own kinds (:data:`OPS_MESSAGES`):

* request ``op`` ``{op: "status" | "logs" | "restart" | "reload", args: {...}}``; its
  ``seq`` is the client's ``time.time_ns()``, so every request carries a
  number above any earlier one and a replayed request is refused;
* reply ``op_reply`` ``{id: <the request's seq>, ok, data | error}``.

A refused request frame is answered with an error and counted by reason in
:attr:`OpsServer.rejected` (``status`` reports it as ``ops_rejected``): the
codec's reasons (:data:`ext_sdk.wire.FRAME_ERRORS`), ``multipart`` (a request
of more than one frame, answered once), and ``unauthenticated`` (a connection
that broke the ZMTP handshake — raw bytes written to the socket — seen on
the socket's monitor). No
extension's process may connect at all (the host's ZAP handler,
:meth:`host.exthost.peers.PeerGate.guard_operators`; ``status`` reports those
refusals as ``ops_refused_extensions``).
Requests are served one at a time on the server's own thread
(:meth:`OpsServer.start`), so a slow operation (``reload`` waits for the new
version's handshake) never holds up supervision; a handler's exception is
the operator's error reply, never the thread's end.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psutil
import zmq
from zmq.utils.monitor import parse_monitor_message

from ext_sdk.schema import Any as AnyValue
from ext_sdk.schema import Bool, Enum, Field, Int, Map, Str, Struct
from ext_sdk.wire import FrameError, Opener, Sealer

from .peers import UNAUTHENTICATED, secure_server_socket

__all__ = ["OPS", "OPS_MESSAGES", "OpsClient", "OpsServer", "RunningHost", "find_hosts"]

log = logging.getLogger("kithost.ops")

#: The operations a host answers.
OPS: Final = ("status", "logs", "restart", "reload")
_HEAD = {"k": Str, "seq": Int}
#: The operator channel's message kinds.
OPS_MESSAGES: Final[dict[str, Struct]] = {
    "op": Struct("An operator request.", **_HEAD, op=Enum(*OPS), args=Map(AnyValue)),
    "op_reply": Struct("The host's answer.", **_HEAD, id=Field(Int, "The request's seq."), ok=Bool,
                       data=Field(AnyValue, required=False), error=Field(Str, required=False)),
}
_MAX_FRAME: Final = 1 << 20
#: Monitor events of a connection that broke the ZMTP handshake (a ZAP refusal is counted by :mod:`.peers`).
_BROKEN_HANDSHAKE: Final = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
#: What the monitor follows: a connection that ends without a finished handshake and without a ZAP refusal
#: sent bytes that were no ZMTP at all.
_MONITORED: Final = (zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                     | zmq.EVENT_HANDSHAKE_FAILED_AUTH | _BROKEN_HANDSHAKE)


class OpsServer:
    """Serves ops requests for one host: on its own thread after :meth:`start`, or by calling :meth:`serve`
    from one thread only."""

    def __init__(self, zctx: zmq.Context[zmq.Socket[bytes]], directory: Path,
                 handlers: dict[str, Callable[[dict[str, Any]], Any]], zap_domain: str | None = None) -> None:
        key = secrets.token_bytes(32)
        key_file = directory / "ops.key"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        self._in = Opener(key, frozenset({"op"}), _MAX_FRAME, schemas=OPS_MESSAGES)
        self._out = Sealer(key)
        #: Refused request frames by reason (see ``ext_sdk.wire.FRAME_ERRORS``).
        self.rejected: Counter[str] = Counter()
        self._sock = zctx.socket(zmq.REP)
        self._sock.linger = 0
        self._sock.setsockopt(zmq.MAXMSGSIZE, _MAX_FRAME)
        if zap_domain is not None:  # no extension's process may connect (host.exthost.peers)
            secure_server_socket(self._sock, zap_domain)
        self._sock.bind(f"ipc://{directory}/ops")
        os.chmod(directory / "ops", 0o600)
        self._monitor = self._sock.get_monitor_socket(_MONITORED)
        #: Connections without a handshake outcome yet (open or closed), and open connections.
        self._greeting = 0
        self._open = 0
        meta = json.dumps({"pid": os.getpid(), "started": time.time(), "cwd": os.getcwd(), "checkout": _checkout()})
        fd = os.open(directory / "host.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(meta)
        self._handlers = handlers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Serve on a thread of its own until :meth:`close`."""
        self._thread = threading.Thread(target=self._run, name="kithost-ops", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while not self._stop.is_set():
            try:
                if poller.poll(100):
                    self.serve()
            except zmq.ZMQError as exc:  # the socket went away under us: only at close
                if not self._stop.is_set():
                    log.warning("operator channel stopped: %s", exc)
                return

    def _drain_monitor(self) -> None:
        """Count connections that broke the ZMTP handshake or closed before finishing it as ``unauthenticated``
        (a ZAP refusal is not one: :mod:`.peers` counts those).

        libzmq's handshake events carry no file descriptor, so a connection closed without a handshake outcome
        is known only by counting: there is one whenever more connections lack an outcome than are open. That
        never counts a good connection; while another connection stays open it may miss one.
        """
        while self._monitor.poll(0):
            kind = parse_monitor_message(self._monitor.recv_multipart())["event"]
            if kind == zmq.EVENT_ACCEPTED:
                self._greeting += 1
                self._open += 1
            elif kind & _BROKEN_HANDSHAKE:
                self._greeting -= 1
                self.rejected[UNAUTHENTICATED] += 1
            elif kind in (zmq.EVENT_HANDSHAKE_SUCCEEDED, zmq.EVENT_HANDSHAKE_FAILED_AUTH):
                self._greeting -= 1
            elif kind == zmq.EVENT_DISCONNECTED:
                self._open -= 1
                if self._greeting > self._open:
                    self._greeting -= 1
                    self.rejected[UNAUTHENTICATED] += 1

    def serve(self) -> None:
        """Answer every request already waiting (non-blocking)."""
        self._drain_monitor()
        while self._sock.poll(0):
            parts = self._sock.recv_multipart()  # all of it: REP answers only after the last part
            try:
                if len(parts) != 1:
                    raise FrameError("multipart", f"{len(parts)} frames in one request")
                msg = self._in.open(parts[0])
            except FrameError as exc:
                self.rejected[exc.reason] += 1
                self._sock.send(self._out.seal("op_reply", {"id": 0, "ok": False, "error": "bad request frame"}))
                continue
            handler = self._handlers.get(str(msg["op"]))
            try:
                if handler is None:
                    raise ValueError(f"unknown op {msg['op']!r}")
                reply: dict[str, object] = {"ok": True, "data": handler(dict(msg["args"]))}  # type: ignore[call-overload]
            except Exception as exc:  # noqa: BLE001 - the operator sees the error text
                reply = {"ok": False, "error": str(exc)}
            self._sock.send(self._out.seal("op_reply", {"id": msg["seq"], **reply}))

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop serving (waits up to ``timeout_s`` for a request being answered) and close the socket."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        self._monitor.close(linger=0)
        self._sock.close(linger=0)


def _checkout() -> str:
    """Where this host's code lives (``ext list`` tells hosts of different checkouts apart)."""
    return str(Path(sys.modules[__name__.split(".")[0]].__file__ or "").resolve().parent)


@dataclass(frozen=True, slots=True)
class RunningHost:
    """A host found in the runtime directory."""

    pid: int
    started: float
    cwd: str
    directory: Path
    #: The code directory of that host's ``host`` package ('' if it did not say).
    checkout: str = ""


def find_hosts(base: Path) -> list[RunningHost]:
    """Running hosts of this user under ``base``, oldest first (stale directories are skipped)."""
    hosts = []
    for info in sorted(base.glob("h*/host.json")):
        try:
            meta = json.loads(info.read_text())
            pid = int(meta["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not psutil.pid_exists(pid) or not (info.parent / "ops").exists():
            continue
        hosts.append(RunningHost(pid, float(meta.get("started", 0)), str(meta.get("cwd", "")), info.parent,
                                 str(meta.get("checkout", ""))))
    return sorted(hosts, key=lambda h: h.started)


class OpsClient:
    """Talks to one running host."""

    def __init__(self, host: RunningHost, timeout_s: float = 3.0) -> None:
        self.host = host
        self._timeout_ms = int(timeout_s * 1000)
        self._key = (host.directory / "ops.key").read_bytes()

    def call(self, op: str, **args: Any) -> Any:
        """One request; raises ``RuntimeError`` with the host's error or a timeout."""
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        sock = ctx.socket(zmq.REQ)
        sock.linger = 0
        seq = time.time_ns()
        try:
            sock.connect(f"ipc://{self.host.directory}/ops")
            sock.send(Sealer(self._key, first_seq=seq).seal("op", {"op": op, "args": args}))
            if not sock.poll(self._timeout_ms):
                raise RuntimeError(f"kithost pid {self.host.pid} did not answer within {self._timeout_ms} ms")
            frame = sock.recv()
        finally:
            sock.close(linger=0)
        try:
            reply = Opener(self._key, frozenset({"op_reply"}), _MAX_FRAME, schemas=OPS_MESSAGES).open(frame)
        except FrameError as exc:
            raise RuntimeError(f"kithost pid {self.host.pid} sent a bad reply ({exc.reason})") from None
        if not reply["ok"]:
            raise RuntimeError(str(reply.get("error")))
        if reply["id"] != seq:
            raise RuntimeError(f"kithost pid {self.host.pid} answered another request")
        return reply.get("data")
