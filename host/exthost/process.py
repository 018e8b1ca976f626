"""Starting, watching and stopping one extension OS process; capturing its output.

* Start: ``Popen`` with the :class:`~.launch.LaunchSpec`'s argv/env/cwd, stdin
  from ``/dev/null``, stdout and stderr piped, ``close_fds``, and its own
  session (so it has its own process group and no controlling terminal).
* Output: each line of stderr (and stray stdout) is kept in a bounded
  :class:`LogBuffer`, cut at ``line_bytes`` (marked ``…[cut]``), oldest lines
  dropped first; never an unbounded read.
* Stop (:meth:`ExtensionProcess.stop`), the ladder — each rung gets half the
  grace period: the polite ``shutdown`` request → ``SIGTERM`` to the process
  group (or, inside a sandbox wrapper such as bubblewrap, to every process it
  wraps: SIGTERM to the wrapper would end them all at once) → ``SIGKILL`` to
  the group *and* every descendant found (even those that left the group).
  Returns which rung ended it (:class:`ShutdownRung`).
* Reaping uses ``Popen`` only (never psutil's ``wait_procs``, which would
  hide the exit status from ``Popen``).
"""

from __future__ import annotations

import enum
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO, Protocol

import psutil

from .launch import LaunchSpec

__all__ = ["ExtensionProcess", "LogBuffer", "ProcessHandle", "ShutdownRung", "descendants", "describe_exit"]


class ShutdownRung(enum.Enum):
    """Which step of the shutdown ladder ended the process."""

    ALREADY_EXITED = "already exited"
    POLITE = "shutdown request"
    SIGTERM = "SIGTERM"
    SIGKILL = "SIGKILL"


def describe_exit(status: int | None) -> str:
    """An exit status in words: ``exited with status 3``, ``killed by SIGKILL``."""
    if status is None:
        return "running"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exited with status {status}"


def descendant_pids(root: int) -> list[int]:
    """The pids of every descendant of process ``root``, from each of its threads'
    ``/proc/PID/task/TID/children`` (Linux). Raises ``OSError`` where that file does not exist (another OS,
    or a kernel without ``CONFIG_PROC_CHILDREN``)."""
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:  # exited meanwhile: its children are reparented, not ours to follow
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                    kids = [int(k) for k in f.read().split()]
            except FileNotFoundError:
                if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                    continue  # that thread ended
                raise  # no children file in this kernel
            found += kids
            todo += kids
    return found


def descendants(proc: psutil.Process) -> list[psutil.Process]:
    """Every live descendant of ``proc`` (:func:`descendant_pids`).

    About 15x cheaper than ``psutil.Process.children(recursive=True)``, which reads
    the status of every process on the machine (2-3 ms per call; the supervisor
    samples each extension every ``watch_ms`` while holding the GIL). Falls back
    to psutil where the children files do not exist.
    """
    try:
        found = descendant_pids(proc.pid)
    except OSError:
        try:
            return proc.children(recursive=True)  # type: ignore[no-any-return]
        except psutil.Error:
            return []
    out = []
    for pid in found:
        try:
            out.append(psutil.Process(pid))
        except psutil.Error:
            continue
    return out


class LogBuffer:
    """The last ``max_lines`` lines of an extension's output, thread-safe."""

    def __init__(self, max_lines: int, line_bytes: int, listener: Callable[[str, str], None] | None = None) -> None:
        """``listener(stream, line)`` is called for each line (any thread)."""
        self._lines: deque[tuple[float, str, str]] = deque(maxlen=max_lines)
        self._seqs: deque[int] = deque(maxlen=max_lines)
        self._lock = threading.Lock()
        self.line_bytes = line_bytes
        #: Lines ever received (including those since dropped from the buffer).
        self.total = 0
        self.listener = listener

    def add(self, stream: str, line: str) -> None:
        with self._lock:
            self.total += 1
            self._lines.append((time.time(), stream, line))
            self._seqs.append(self.total)
        if self.listener is not None:
            self.listener(stream, line)

    def lines(self, last: int | None = None) -> list[tuple[float, str, str]]:
        """``(unix time, stream, text)``, oldest first."""
        with self._lock:
            items = list(self._lines)
        return items if last is None else items[-last:]

    def since(self, after: int = 0, last: int | None = None) -> list[tuple[int, float, str, str]]:
        """``(seq, unix time, stream, text)`` of lines numbered after ``after`` (for ``logs -f``)."""
        with self._lock:
            items = [(seq, *line) for seq, line in zip(self._seqs, self._lines, strict=True) if seq > after]
        return items if last is None else items[-last:]

    def tail(self, last: int = 20) -> str:
        """The last lines as text."""
        return "\n".join(text for _, _, text in self.lines(last))


def _pump(stream: IO[bytes], name: str, log: LogBuffer) -> None:
    limit = log.line_bytes
    cut = False
    try:
        while True:
            chunk = stream.readline(limit)
            if not chunk:
                return
            complete = chunk.endswith(b"\n")
            if cut:  # the rest of a line already cut: skip it
                cut = not complete
                continue
            text = chunk.rstrip(b"\r\n").decode("utf-8", "replace")
            if not complete and len(chunk) >= limit:
                text += "…[cut]"
                cut = True
            log.add(name, text)
    except (OSError, ValueError):
        return
    finally:
        stream.close()


class ProcessHandle(Protocol):
    """What the host needs of an extension's process: a local :class:`ExtensionProcess`, or a launch on a
    remote worker (:class:`host.remote.handle.RemoteProcess`)."""

    #: Process id (on the machine that runs it).
    pid: int
    #: ``time.monotonic()`` at spawn (on the host).
    started: float

    def alive(self) -> bool:
        """Whether it has not exited (may ask the OS)."""
        ...

    @property
    def exited(self) -> bool:
        """Whether its exit is already known, without a system call (the hot path's check)."""
        ...

    @property
    def returncode(self) -> int | None:
        """Exit status (negative: killed by that signal), ``None`` while running."""
        ...

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (``None``: no bound) for the exit; whether it exited."""
        ...

    def exit_cause(self) -> str | None:
        """Why it ended when its status alone does not say (a remote worker lost), else ``None``."""
        ...

    def kill(self) -> None:
        """Kill it (and everything it started) and reap it; bounded."""
        ...

    def stop(self, polite: Callable[[float], object], grace_s: float) -> ShutdownRung:
        """The shutdown ladder; ``polite(timeout)`` sends the shutdown request. Returns the rung that ended it."""
        ...


class ExtensionProcess:
    """One running OS process of an extension (a :class:`ProcessHandle`)."""

    def __init__(self, spec: LaunchSpec, log: LogBuffer) -> None:
        self.spec = spec
        self.log = log
        self.popen = subprocess.Popen(
            list(spec.argv),
            env=spec.env,
            cwd=spec.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
        )
        #: Process id.
        self.pid = self.popen.pid
        #: ``time.monotonic()`` at spawn.
        self.started = time.monotonic()
        self._readers = [
            threading.Thread(target=_pump, args=(s, n, log), name=f"kithost-log-{self.pid}-{n}", daemon=True)
            for s, n in ((self.popen.stderr, "stderr"), (self.popen.stdout, "stdout"))
            if s is not None
        ]
        for reader in self._readers:
            reader.start()

    def alive(self) -> bool:
        """Whether the process has not exited."""
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status, ``None`` while running."""
        return self.popen.poll()

    @property
    def exited(self) -> bool:
        """Whether its exit was already reaped (the exit watcher's ``wait`` sets it; no system call)."""
        return self.popen.returncode is not None

    def exit_cause(self) -> str | None:
        """Always ``None``: a local exit status says it all (a cgroup verdict is the confinement's)."""
        return None

    def wait(self, timeout: float | None) -> bool:
        """Wait for the exit (``Popen.wait``; safe from several threads); whether it exited in time."""
        if timeout is None:
            self.popen.wait()
            return True
        return self._wait(timeout)

    def descendants(self) -> list[psutil.Process]:
        """Every live descendant (best effort)."""
        try:
            return descendants(psutil.Process(self.pid))
        except psutil.Error:
            return []

    def stop(self, polite: Callable[[float], object], grace_s: float) -> ShutdownRung:
        """Run the shutdown ladder; ``polite(timeout)`` sends the shutdown request."""
        if not self.alive():
            self._kill_leftovers(self.descendants())
            self._join_readers()
            return ShutdownRung.ALREADY_EXITED
        step = grace_s / 2
        family = self.descendants()
        rung = ShutdownRung.POLITE
        polite_end = time.monotonic() + step
        polite(step)  # its wait for "bye" counts against this rung's half of the grace period
        if not self._wait(max(0.05, polite_end - time.monotonic())):
            rung = ShutdownRung.SIGTERM
            family = self.descendants() or family
            self._terminate(family)
            if not self._wait(step):
                rung = ShutdownRung.SIGKILL
                family = self.descendants() or family
                self._signal_group(signal.SIGKILL)
                self._kill_leftovers(family)
                self._wait(5.0)
        self._kill_leftovers(family)
        self._join_readers()
        return rung

    def kill(self) -> None:
        """SIGKILL the process, its group and every descendant; reap it."""
        family = self.descendants()
        self._signal_group(signal.SIGKILL)
        self._kill_leftovers(family)
        self._wait(5.0)
        self._join_readers()

    def _terminate(self, family: list[psutil.Process]) -> None:
        """SIGTERM to the extension: its process group, or, inside wrappers, every process they wrap."""
        wrappers = self.spec.wrappers
        if not wrappers:
            self._signal_group(signal.SIGTERM)
            return
        for proc in family:
            try:
                if proc.name() not in wrappers:
                    proc.send_signal(signal.SIGTERM)
            except psutil.Error:
                continue

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    @staticmethod
    def _kill_leftovers(family: list[psutil.Process]) -> None:
        for proc in family:
            try:
                proc.kill()
            except psutil.Error:
                pass

    def _wait(self, timeout: float) -> bool:
        try:
            self.popen.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=1.0)
