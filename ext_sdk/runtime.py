"""The extension process: connect, handshake, serve events; heartbeat from a thread.

``python -m ext_sdk run path/to/ext.py`` ends up in :func:`serve`. Order of
work, and the exit status at each failure (the host does not retry 3 and 4):

1. Without the host's environment (``KITHOST_EVENTS`` …) print how to run an
   extension and exit 2 — running an extension file by hand is a usage error.
2. Arrange to die with the host (``PR_SET_PDEATHSIG``) before anything else.
3. Read the per-launch secret (to end of file: it may be a named pipe that
   the host writes only when it needs this process, a *warm spare*, so this
   comes before any of the extension's code runs); unreadable → exit 2.
4. Load the file and find its :class:`~ext_sdk.extension.Extension`; any
   error → traceback on stderr, exit 3.
5. Connect the three sockets, send ``hello`` on the calls channel;
   ``reject`` → reason on stderr, exit 4.
6. Start the control thread (answers ``ping`` while handlers run; on
   ``shutdown`` replies ``bye`` and ends the process as soon as no handler
   runs, at the latest after :data:`SHUTDOWN_GRACE_S`).
7. Serve the events channel until shutdown: one request at a time, strictly in
   order, each answered with exactly one ``reply``.
"""

from __future__ import annotations

import ctypes
import importlib.util
import itertools
import os
import select
import signal
import sys
import threading
import time
from pathlib import Path
from time import perf_counter_ns
from types import ModuleType
from typing import Any

import zmq

from . import __version__
from .context import HostCallError
from .extension import Extension
from .handling import HandlerRunner
from .wire import (
    DEFAULT_MAX_FRAME,
    ENV_CALLS,
    ENV_CONTROL,
    ENV_EVENTS,
    ENV_SECRET_FILE,
    ENV_VERSIONS,
    EXIT_BAD_EXTENSION,
    EXIT_REJECTED,
    EXIT_USAGE,
    PROTOCOL_VERSIONS,
    FrameError,
    Opener,
    Sealer,
)

__all__ = ["SHUTDOWN_GRACE_S", "load_extension", "serve"]

#: How long a handler may keep running after ``shutdown`` before the process exits anyway.
SHUTDOWN_GRACE_S = 2.0
#: How long the handshake may take.
HELLO_TIMEOUT_MS = 10_000
#: How long a ``ctx`` call waits for the host's answer (PROTOCOL.md §7).
CALL_TIMEOUT_MS = 30_000

_NOT_UNDER_HOST = """\
This is a kithost extension; it runs inside kithost, not on its own.
  try:  kithost ext check {path}
  or:   kithost run -e {dir} "your prompt"
"""


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when the host process dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


def load_extension(path: str | Path) -> Extension:
    """Import the extension file at ``path`` and return its single :class:`Extension`.

    Raises ``ValueError`` if the file defines none or more than one.
    """
    path = Path(path).resolve()
    spec = importlib.util.spec_from_file_location(f"kithost_ext_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: not a Python file")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(path.parent))
    spec.loader.exec_module(module)
    found = [v for v in vars(module).values() if isinstance(v, Extension)]
    if len(found) != 1:
        raise ValueError(f"{path}: expected exactly one ext_sdk.Extension at module level, found {len(found)}")
    return found[0]


class _Link:
    """The extension's three sockets and their codecs."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], secret: bytes) -> None:
        self.ctx = ctx
        self.secret = secret
        self.events = ctx.socket(zmq.REP)
        self.events.linger = 0
        self.events.connect(os.environ[ENV_EVENTS])
        self.calls = ctx.socket(zmq.REQ)
        self.calls.linger = 0
        self.calls.setsockopt(zmq.REQ_RELAXED, 1)
        self.calls.setsockopt(zmq.REQ_CORRELATE, 1)
        self.calls.connect(os.environ[ENV_CALLS])
        # Connected before the handshake (the host may ping or stop us right after it);
        # from then on used only by the control thread.
        self.control = ctx.socket(zmq.REP)
        self.control.linger = 0
        self.control.connect(os.environ[ENV_CONTROL])
        self.events_out = Sealer(secret)
        # Frames from the host are authenticated (MAC + seq); their shape is the host's promise, so the
        # per-event schema walk is skipped here (it is the host that checks everything it receives).
        self.events_in = Opener(secret, frozenset({"event", "batch", "invoke"}), DEFAULT_MAX_FRAME, validate=False)
        self.calls_out = Sealer(secret)
        self.calls_in = Opener(secret, frozenset({"welcome", "reject", "answer"}), DEFAULT_MAX_FRAME)
        self._call_ids = itertools.count(1)
        #: Id of the events-channel request being handled (sent with every call).
        self.event_id: int | None = None

    def call(self, method: str, args: dict[str, Any]) -> Any:
        """One host call; raises :class:`HostCallError`."""
        if self.event_id is None:
            raise HostCallError("ctx is only usable while a handler runs")
        call_id = next(self._call_ids)
        self.calls.send(
            self.calls_out.seal("call", {"id": call_id, "event_id": self.event_id, "method": method, "args": args})
        )
        deadline = time.monotonic() + CALL_TIMEOUT_MS / 1000
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.calls.poll(max(1, int(left * 1000))):
                raise HostCallError(f"host did not answer {method!r} within {CALL_TIMEOUT_MS} ms")
            try:
                # NOBLOCK: REQ_CORRELATE makes poll() report a stale answer that recv() then discards.
                frame = self.calls.recv(zmq.NOBLOCK)
            except zmq.Again:
                continue
            try:
                msg = self.calls_in.open(frame)
            except FrameError as exc:
                print(f"kithost-sdk: dropped frame from host: {exc}", file=sys.stderr)
                continue
            if msg.get("id") != call_id:
                continue
            if msg["ok"]:
                return msg.get("value")
            raise HostCallError(str(msg.get("error") or "host call failed"))

    def handshake(self, extension: Extension) -> dict[str, Any]:
        versions = [int(v) for v in os.environ.get(ENV_VERSIONS, "1").split(",") if v.strip().isdigit()]
        offered = sorted(set(versions).intersection(PROTOCOL_VERSIONS)) or list(PROTOCOL_VERSIONS)
        hello = {"versions": offered, "sdk": f"python/{__version__}", **extension.hello_fields()}
        self.calls.send(self.calls_out.seal("hello", hello))
        if not self.calls.poll(HELLO_TIMEOUT_MS):
            raise TimeoutError("host did not answer the handshake")
        return self.calls_in.open(self.calls.recv())


class _Control(threading.Thread):
    """Answers ``ping``/``shutdown`` on the control channel, independent of handlers.

    On ``shutdown``: reply ``bye``, wait (up to :data:`SHUTDOWN_GRACE_S`) until no
    handler runs, flush stdout/stderr and end the process (``os._exit(0)``) — the
    main loop blocks in ``recv`` and is never woken for this.
    """

    def __init__(self, link: _Link, runner: HandlerRunner) -> None:
        super().__init__(name="kithost-control", daemon=True)
        self.link = link
        self.runner = runner
        self.busy_since = 0.0
        self.stopping = threading.Event()

    def run(self) -> None:
        sock = self.link.control
        sealer = Sealer(self.link.secret)
        opener = Opener(self.link.secret, frozenset({"ping", "shutdown"}), 64 * 1024)
        while True:
            frame = sock.recv()
            try:
                msg = opener.open(frame)
            except FrameError as exc:
                print(f"kithost-sdk: dropped control frame: {exc}", file=sys.stderr)
                sock.send(b"")  # REP must answer; the host drops an empty frame
                continue
            if msg["k"] == "ping":
                current = self.runner.current
                busy_ms = int((time.monotonic() - self.busy_since) * 1000) if current else 0
                sock.send(sealer.seal("pong", {"id": msg["id"], "busy": current is not None,
                                               "current": current, "busy_ms": busy_ms}))
                continue
            sock.send(sealer.seal("bye", {"id": msg["id"]}))
            self.stopping.set()
            self._wait_idle(SHUTDOWN_GRACE_S)
            time.sleep(0.01)  # let libzmq's I/O thread put "bye" on the wire
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    def _wait_idle(self, grace: float) -> bool:
        end = time.monotonic() + grace
        while time.monotonic() < end:
            if self.runner.current is None:
                return True
            time.sleep(0.01)
        return False


def serve(path: str) -> int:
    """Run the extension at ``path`` under the host; returns the exit status."""
    if ENV_EVENTS not in os.environ:
        print(_NOT_UNDER_HOST.format(path=path, dir=os.path.dirname(path) or "."), file=sys.stderr)
        return EXIT_USAGE
    _die_with_parent()
    try:  # before the extension's code: a warm spare waits here, its imports paid, none of that code run
        secret = _read_secret(os.environ[ENV_SECRET_FILE])
    except (KeyError, OSError) as exc:
        print(f"kithost-sdk: cannot read the launch secret: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        extension = load_extension(path)
    except Exception:  # noqa: BLE001 - the author's code failed to load
        import traceback  # only on this path: the extension process imports what it uses

        traceback.print_exc(file=sys.stderr)
        return EXIT_BAD_EXTENSION
    zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        return _serve(zctx, extension, secret)
    finally:
        zctx.destroy(linger=0)


def _read_secret(path: str) -> bytes:
    """The launch secret: the whole content of ``path``, a file or a named pipe (a warm spare's).

    Opened non-blocking and then polled, so a spare waits with the pipe open: the host sees from ``/proc``
    that it is ready to be started, and writes the secret only into a pipe that is being read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        waiter = select.poll()
        waiter.register(fd, select.POLLIN)
        data = b""
        while True:
            waiter.poll()  # a pipe: until the host writes, then until it closes; a file: at once
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                continue
            if not chunk:
                return data
            data += chunk
    finally:
        os.close(fd)


def _serve(zctx: zmq.Context[zmq.Socket[bytes]], extension: Extension, secret: bytes) -> int:
    link = _Link(zctx, secret)
    try:
        answer = link.handshake(extension)
    except (TimeoutError, FrameError) as exc:
        print(f"kithost-sdk: handshake failed: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    if answer["k"] == "reject":
        print(f"kithost-sdk: host refused {extension.name!r}: {answer['reason']}", file=sys.stderr)
        return EXIT_REJECTED
    runner = HandlerRunner(extension, link.call)
    control = _Control(link, runner)
    control.start()
    events = link.events
    # Blocking recv, no poller: the cheapest wait there is. Shutdown does not need to wake this loop:
    # the control thread ends the process once no handler runs (see _Control).
    while True:
        frame = events.recv()
        try:
            msg = link.events_in.open(frame)
        except FrameError as exc:
            print(f"kithost-sdk: dropped frame from host: {exc}", file=sys.stderr)
            events.send(link.events_out.seal("reply", {"id": 0, "results": []}))
            continue
        link.event_id = msg["id"]  # type: ignore[assignment]
        control.busy_since = time.monotonic()
        try:
            results = _handle(runner, msg)
        finally:
            link.event_id = None
        events.send(link.events_out.seal("reply", {"id": msg["id"], "results": results}))
        if control.stopping.is_set():
            return 0


def _timed_item(runner: HandlerRunner, event: str, handler: int | None, data: dict[str, Any]) -> dict[str, Any]:
    """One event item's result, with ``us``: the time spent on it here (the host's latency split)."""
    start = perf_counter_ns()
    out = runner.run_item(event, handler, data)
    out["us"] = (perf_counter_ns() - start) // 1000
    return out


def _handle(runner: HandlerRunner, msg: dict[str, Any]) -> list[dict[str, Any]]:
    kind = msg["k"]
    if kind == "event":
        return [_timed_item(runner, msg["event"], msg.get("handler"), msg["data"])]
    if kind == "batch":
        if msg.get("dropped"):
            print(f"kithost-sdk: host dropped {msg['dropped']} notify event(s) (queue full)", file=sys.stderr)
        return [_timed_item(runner, i["event"], i.get("handler"), i["data"]) for i in msg["events"]]
    return [runner.invoke(msg["target"], msg["name"], msg["args"])]
