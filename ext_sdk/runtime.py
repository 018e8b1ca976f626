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
5. Connect the three sockets (:mod:`ext_sdk.zmtp`, ZeroMQ's wire protocol without
   pyzmq), send ``hello`` on the calls channel; ``reject``, or a refused connection,
   → reason on stderr, exit 4.
6. Start the control thread (answers ``ping`` while handlers run; on
   ``shutdown`` replies ``bye`` and ends the process as soon as no handler
   runs, at the latest after :data:`SHUTDOWN_GRACE_S`).
7. Serve the events channel until shutdown: one request at a time, strictly in
   order, each answered with exactly one ``reply``.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import select
import sys
import threading
import time
from importlib.machinery import SOURCE_SUFFIXES, ModuleSpec, SourceFileLoader
from time import perf_counter_ns
from types import ModuleType

from . import __version__
from .context import HostCallError
from .extension import Extension
from .handling import HandlerRunner
from .startup import run_pth_files
from .wire import (
    CONTROL_FRAME,
    DEFAULT_MAX_FRAME,
    ENV_CALLS,
    ENV_CONTROL,
    ENV_EVENTS,
    ENV_SECRET_FILE,
    ENV_VERSIONS,
    EXIT_BAD_EXTENSION,
    EXIT_REJECTED,
    EXIT_USAGE,
    MAC_SIZE,
    PROTOCOL_VERSIONS,
    FrameError,
    Opener,
    Sealer,
)
from .zmtp import ConnectionLost, Refused, Reply, Request

TYPE_CHECKING = False  # not typing's: ``import typing`` is ~3 ms of an extension's start-up
if TYPE_CHECKING:
    from typing import Any

__all__ = ["SHUTDOWN_GRACE_S", "load_extension", "serve"]

#: How long a handler may keep running after ``shutdown`` before the process exits anyway.
SHUTDOWN_GRACE_S = 2.0
#: How long the handshake may take.
HELLO_TIMEOUT_MS = 10_000
#: How long a ``ctx`` call waits for the host's answer (PROTOCOL.md §7).
CALL_TIMEOUT_MS = 30_000
#: The largest frame accepted from the host (events, calls; control), sealed, with room for the envelope.
_WIRE_LIMIT = DEFAULT_MAX_FRAME + MAC_SIZE + 64
_CONTROL_WIRE_LIMIT = CONTROL_FRAME + MAC_SIZE + 64

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
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL (9 on every Linux; ``signal`` builds enums: ~1 ms)
    except (OSError, AttributeError):
        return


def load_extension(path: str | os.PathLike[str]) -> Extension:
    """Import the extension file at ``path`` and return its single :class:`Extension`.

    Raises ``ValueError`` if the file is not a ``.py`` file or defines no or more than one extension.
    (``importlib.machinery`` rather than ``importlib.util`` and ``pathlib``: those two cost an extension
    process ~4 ms of start-up for one file name.)
    """
    real = os.path.realpath(os.fspath(path))
    stem, suffix = os.path.splitext(os.path.basename(real))
    if suffix not in SOURCE_SUFFIXES:
        raise ValueError(f"{real}: not a Python file")
    name = f"kithost_ext_{stem}"
    loader = SourceFileLoader(name, real)
    module = ModuleType(name)
    module.__spec__ = ModuleSpec(name, loader, origin=real)
    module.__spec__.has_location = True
    module.__loader__ = loader
    module.__file__ = real
    sys.modules[name] = module
    sys.path.insert(0, os.path.dirname(real))
    loader.exec_module(module)
    found = [v for v in vars(module).values() if isinstance(v, Extension)]
    if len(found) != 1:
        raise ValueError(f"{real}: expected exactly one ext_sdk.Extension at module level, found {len(found)}")
    return found[0]


class _Link:
    """The extension's three sockets and their codecs."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.events = Reply(os.environ[ENV_EVENTS], _WIRE_LIMIT)
        self.calls = Request(os.environ[ENV_CALLS], _WIRE_LIMIT)
        # Connected before the handshake (the host may ping or stop us right after it);
        # from then on used only by the control thread.
        self.control = Reply(os.environ[ENV_CONTROL], _CONTROL_WIRE_LIMIT)
        peers = (self.events, self.calls, self.control)
        for peer in peers:  # all three greetings out first: the host's ZAP checks of the three overlap
            peer.start()
        for peer in peers:
            peer.finish()
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
        frame = self.calls_out.seal("call", {"id": call_id, "event_id": self.event_id, "method": method, "args": args})
        deadline = time.monotonic() + CALL_TIMEOUT_MS / 1000
        try:
            self.calls.send(frame)
        except ConnectionLost as exc:
            raise HostCallError(f"cannot reach the host for {method!r}: {exc}") from None
        while True:
            try:
                frame = self.calls.recv(deadline - time.monotonic())
            except TimeoutError:
                raise HostCallError(f"host did not answer {method!r} within {CALL_TIMEOUT_MS} ms") from None
            except ConnectionLost as exc:
                raise HostCallError(f"lost the connection to the host during {method!r}: {exc}") from None
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
        try:
            return self.calls_in.open(self.calls.recv(HELLO_TIMEOUT_MS / 1000))
        except TimeoutError:
            raise TimeoutError("host did not answer the handshake") from None


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
        opener = Opener(self.link.secret, frozenset({"ping", "shutdown"}), CONTROL_FRAME)
        while True:
            try:
                frame = sock.recv()
            except Refused as exc:  # no way left to be stopped politely: the host ends the process
                print(f"kithost-sdk: control channel: {exc}", file=sys.stderr)
                os._exit(EXIT_REJECTED)
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
            sys.stdout.flush()  # "bye" is already in the host's receive queue: it was written by this thread
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
    run_pth_files()  # the site directories' .pth files, as ``site`` would have (see ext_sdk.startup)
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
    return _serve(extension, secret)


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


def _serve(extension: Extension, secret: bytes) -> int:
    try:
        link = _Link(secret)
        answer = link.handshake(extension)
    except (OSError, FrameError) as exc:  # TimeoutError, ConnectionLost and Refused are OSErrors
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
        try:
            frame = events.recv()
        except Refused as exc:
            print(f"kithost-sdk: events channel: {exc}", file=sys.stderr)
            return EXIT_REJECTED
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
