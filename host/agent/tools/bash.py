"""``bash``: run a command with ``bash -c`` in its own session, streaming its output.

Contract:

* The command runs in a new session and process group (``start_new_session``),
  in ``ctx.cwd``, stdin from ``/dev/null``, with the agent's environment.
* stdout and stderr are read as they arrive (UTF-8, invalid bytes replaced) and
  each chunk goes to ``ctx.on_output(chunk, is_stderr)`` at once — up to
  :attr:`BashTool.max_stream_chars`, then one note and no more streaming.
* The result's content is the output interleaved in arrival order, capped at
  :attr:`BashTool.max_output_chars` (head and tail kept), followed by
  ``[exit code N]`` when non-zero, or a timeout/cancel note. ``is_error`` is
  true for a non-zero exit, a timeout or a cancel. Metadata: ``exit_code``
  (negative = killed by that signal, ``None`` if unknown), ``timed_out``,
  ``cancelled``, ``duration_ms``, ``output_chars``, ``truncated``.
* Timeout (``timeout`` argument, default 120 s) or ``ctx.cancel``: the whole
  process tree gets SIGTERM — the process group plus any descendant seen
  that left it (``setsid``) — then SIGKILL after :attr:`BashTool.kill_grace_s`.
* When the command exits, output is read until the pipes close; if background
  processes keep them open longer than :attr:`BashTool.drain_grace_s`, reading
  stops. Either way, whatever is left in the process group (and descendants
  seen while it ran) gets SIGKILL: a tool call never leaves processes behind.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterable
from typing import IO, Any, Final

import psutil

from .base import ToolContext, ToolKind, ToolResult
from .output import CappedText

__all__ = ["TOOL", "BashTool"]

#: Default timeout in seconds.
DEFAULT_TIMEOUT_S: Final = 120
#: Largest timeout the model may ask for.
MAX_TIMEOUT_S: Final = 3600


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _signal_tree(pgid: int, extra: Iterable[psutil.Process], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for proc in extra:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


class BashTool:
    """Run a shell command."""

    name: Final = "bash"
    kind: Final[ToolKind] = "execute"
    description: Final = (
        "Run a bash command in the working directory and return its combined stdout and stderr. "
        f"Times out after `timeout` seconds (default {DEFAULT_TIMEOUT_S}); the command and everything it "
        "started are killed then, and any background process is killed when the command exits."
    )
    parameters: Final[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The command, run with bash -c."},
            "timeout": {"type": "integer", "minimum": 1, "maximum": MAX_TIMEOUT_S,
                        "description": f"Seconds before the command is killed (default {DEFAULT_TIMEOUT_S})."},
        },
        "required": ["command"],
        "additionalProperties": False,
    }

    def __init__(self, *, max_output_chars: int = 30_000, max_stream_chars: int = 1_000_000,
                 kill_grace_s: float = 1.0, drain_grace_s: float = 0.5) -> None:
        #: Characters of output kept in the result (head + tail).
        self.max_output_chars = max_output_chars
        #: Characters streamed through ``on_output`` before streaming stops.
        self.max_stream_chars = max_stream_chars
        #: Seconds between SIGTERM and SIGKILL.
        self.kill_grace_s = kill_grace_s
        #: Seconds the output pipes may stay open after the command exited.
        self.drain_grace_s = drain_grace_s

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Run ``args['command']`` (rules in the module doc)."""
        command: str = args["command"]
        timeout = float(args.get("timeout", DEFAULT_TIMEOUT_S))
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                ["bash", "-c", command], cwd=ctx.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            return ToolResult(f"cannot start bash: {exc.strerror or exc}", True, {"exit_code": None})
        output = CappedText(self.max_output_chars)
        streamed = 0
        timed_out = cancelled = False
        seen: dict[int, psutil.Process] = {}

        def emit(text: str, is_stderr: bool) -> None:
            nonlocal streamed
            if not text:
                return
            output.append(text)
            if streamed < self.max_stream_chars:
                part = text[: self.max_stream_chars - streamed]
                streamed += len(part)
                ctx.output(part, is_stderr)
                if streamed >= self.max_stream_chars:
                    ctx.output(f"\n[output streaming stopped after {self.max_stream_chars} characters]\n", True)

        assert proc.stdout is not None and proc.stderr is not None
        streams: dict[int, tuple[IO[bytes], bool, codecs.IncrementalDecoder]] = {
            s.fileno(): (s, is_err, codecs.getincrementaldecoder("utf-8")(errors="replace"))
            for s, is_err in ((proc.stdout, False), (proc.stderr, True))
        }
        selector = selectors.DefaultSelector()
        try:
            for fd, (stream, _, _) in streams.items():
                selector.register(stream, selectors.EVENT_READ, fd)
            deadline = started + timeout
            exited_at: float | None = None
            next_scan = 0.0
            while True:
                now = time.monotonic()
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                if exited_at is not None and (not selector.get_map() or now - exited_at > self.drain_grace_s):
                    break  # done; background processes still holding the pipes are killed below
                if exited_at is None and now >= deadline:
                    timed_out = True
                    break
                if ctx.cancelled:
                    cancelled = True
                    break
                if exited_at is None and now >= next_scan:  # remember descendants, even ones that leave the group
                    seen.update((p.pid, p) for p in _descendants(proc.pid))
                    next_scan = now + 0.2
                wait = min(0.1, max(0.0, deadline - now))
                if not selector.get_map():  # the command closed its output but still runs
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=min(wait, 0.05))
                    continue
                for key, _ in selector.select(timeout=wait):
                    stream, is_err, decoder = streams[key.data]
                    data = os.read(key.data, 65536)
                    if not data:
                        selector.unregister(stream)
                        emit(decoder.decode(b"", final=True), is_err)
                        continue
                    emit(decoder.decode(data), is_err)
        finally:
            selector.close()
            self._kill_tree(proc, seen.values(), polite=timed_out or cancelled)
            for stream, is_err, decoder in streams.values():
                emit(decoder.decode(b"", final=True), is_err)
                stream.close()
        duration_ms = int((time.monotonic() - started) * 1000)
        code = proc.returncode
        text = output.text()
        notes: list[str] = []
        if timed_out:
            notes.append(f"[timed out after {timeout:g} s; the command and its processes were killed]")
        elif cancelled:
            notes.append("[cancelled; the command and its processes were killed]")
        elif code:
            notes.append(f"[exit code {code}]")
        if not text and not notes:
            text = "(no output)"
        content = "\n".join(part for part in (text.rstrip("\n"), *notes) if part)
        meta = {"exit_code": code, "timed_out": timed_out, "cancelled": cancelled, "duration_ms": duration_ms,
                "output_chars": output.total, "truncated": output.truncated}
        return ToolResult(content, bool(code) or timed_out or cancelled, meta)

    def _kill_tree(self, proc: subprocess.Popen[bytes], seen: Iterable[psutil.Process], *, polite: bool) -> None:
        """End the command's process group and every descendant seen; reap the command; wait until all are gone.

        ``polite``: SIGTERM first and up to :attr:`kill_grace_s` for the command to exit, then SIGKILL.
        """
        targets = {p.pid: p for p in [*seen, *_descendants(proc.pid)]}
        if polite:
            _signal_tree(proc.pid, targets.values(), signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.kill_grace_s)
        targets.update((p.pid, p) for p in _group_members(proc.pid))
        _signal_tree(proc.pid, targets.values(), signal.SIGKILL)
        proc.wait()
        _wait_gone(targets.values(), self.kill_grace_s)


def _group_members(pgid: int) -> list[psutil.Process]:
    """Live processes of process group ``pgid`` (cheap when the group is empty)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return []
    members: list[psutil.Process] = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(pid) == pgid:
                members.append(psutil.Process(pid))
    return members


def _wait_gone(procs: Iterable[psutil.Process], timeout: float) -> None:
    """Wait (at most ``timeout``) until each process has exited (a zombie counts as exited)."""
    pending = list(procs)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        still: list[psutil.Process] = []
        for proc in pending:
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    still.append(proc)
        pending = still
        if pending:
            time.sleep(0.01)


#: The tool instance the registry discovers.
TOOL: Final = BashTool()
