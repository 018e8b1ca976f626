"""``kithost chat`` on a terminal: prompt_toolkit line editing, history, completion, colour, a spinner.

Used only when stdin and stdout are both terminals; a pipe keeps the
line-by-line chat of :mod:`.chat` (tests and scripts rely on it).

Contract of :class:`TerminalUI`:

* :meth:`~TerminalUI.read` shows the prompt: line editing (arrows, Home/End,
  Ctrl-A/E/W...), the history of earlier prompts (Up/Down, Ctrl-R; kept in
  :func:`~host.agent.sessions_store.history_file`, shared by every directory)
  and completion of slash commands (built-in and extension commands, each with
  its description). Raises ``EOFError`` on Ctrl-D and ``KeyboardInterrupt`` on
  Ctrl-C, like ``input``.
* :meth:`~TerminalUI.write` can be called from any thread at any time. While
  the prompt is shown, the text appears *above* it (prompt_toolkit's
  ``patch_stdout``) and the prompt is drawn again below; during a turn it
  goes to the terminal after the spinner is cleared.
* :meth:`~TerminalUI.working` shows a spinner with the elapsed time while the
  model works, whenever nothing was written for a moment and the cursor is at
  the start of a line (never in the middle of a streamed answer); it is gone
  before anything else is written and when the block ends.
* Colour follows the terminal (:func:`use_color`): none when ``NO_COLOR`` is
  set (non-empty, https://no-color.org) or ``TERM=dumb``.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory
from prompt_toolkit.output import ColorDepth
from prompt_toolkit.patch_stdout import patch_stdout
from prompt_toolkit.styles import Style

__all__ = ["Colors", "SlashCompleter", "TerminalUI", "describe_commands", "style_for_event", "use_color"]

#: SGR codes of the styles kithost writes (``None``: plain).
Colors = Mapping[str, str]
_SGR: Final[Colors] = {"tool": "36", "ok": "32", "fail": "31", "warn": "33", "dim": "2", "ext": "35",
                       "prompt": "1;32"}
#: Spinner frames and period.
_FRAMES: Final = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_TICK_S: Final = 0.1
#: Quiet time before the spinner appears (a streaming answer never shows it).
_QUIET_S: Final = 0.3


def use_color(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether to colour ``stream``: a terminal, no ``NO_COLOR``, not ``TERM=dumb``."""
    env = os.environ if environ is None else environ
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and not env.get("NO_COLOR") and env.get("TERM") != "dumb"


def style_for_event(event: str, text: str) -> str | None:
    """The style (a key of the colour table) of a rendered event's text, or ``None`` for plain."""
    if event == "tool_call":
        return "tool"
    if event == "tool_result":
        return "fail" if text.lstrip().startswith("✗") else "ok"
    if event in ("error",):
        return "fail"
    if event in ("warnings", "retry"):
        return "warn"
    if event in ("agent_end", "model_change", "reasoning_start", "before_compact", "subagent_start",
                 "subagent_chunk", "subagent_end", "source"):
        return "dim"
    return None


class SlashCompleter(Completer):
    """Completes ``/command`` at the start of the line; each completion shows its description."""

    def __init__(self, commands: Callable[[], Mapping[str, str]]) -> None:
        #: ``name -> description`` of every slash command, asked at each completion (extensions come and go).
        self.commands = commands

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/") or " " in text:
            return
        word = text[1:]
        for name, description in sorted(self.commands().items()):
            if name.startswith(word):
                yield Completion(name, start_position=-len(word), display=f"/{name}", display_meta=description)


class TerminalUI:
    """The chat's terminal (module doc). ``stream`` is the real stdout."""

    def __init__(self, stream: TextIO, commands: Callable[[], Mapping[str, str]], history: Path, *,
                 color: bool | None = None) -> None:
        self.stream = stream
        self.color = use_color(stream) if color is None else color
        history.parent.mkdir(parents=True, exist_ok=True)
        self._session: PromptSession[str] = PromptSession(
            history=FileHistory(str(history)), completer=SlashCompleter(commands), complete_while_typing=True,
            style=Style.from_dict({"prompt": "ansigreen bold"}),
            color_depth=None if self.color else ColorDepth.DEPTH_1_BIT)
        self._lock = threading.RLock()
        self._prompting = False
        self._at_line_start = True
        self._last_write = time.monotonic()
        self._spinner_shown = False
        self._working_since: float | None = None

    # ------------------------------------------------------------------ writing

    def paint(self, text: str, style: str | None) -> str:
        """``text`` in ``style`` (each line wrapped, so a newline never carries colour), or as is."""
        if not self.color or style is None or not text:
            return text
        code = _SGR[style]
        return "\n".join(f"\x1b[{code}m{line}\x1b[0m" if line else line for line in text.split("\n"))

    def write(self, text: str, style: str | None = None) -> None:
        """Write ``text`` (any thread): above the prompt while it is shown, else after clearing the spinner."""
        if not text:
            return
        with self._lock:
            target = sys.stdout if self._prompting else self.stream  # sys.stdout is patch_stdout's proxy then
            self._clear_spinner()
            target.write(self.paint(text, style))
            target.flush()
            self._at_line_start = text.endswith("\n")
            self._last_write = time.monotonic()

    def _clear_spinner(self) -> None:
        if self._spinner_shown:
            self.stream.write("\r\x1b[K")
            self._spinner_shown = False

    # ------------------------------------------------------------------ reading

    def read(self, prompt: str = "you> ") -> str:
        """One line from the user (module doc); ``EOFError`` on Ctrl-D, ``KeyboardInterrupt`` on Ctrl-C."""
        previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() \
            else None
        with self._lock:
            self._prompting = True
        try:
            with patch_stdout(raw=True):
                # handle_sigint=False: Ctrl-C at the prompt is a key (raw mode), and the chat's own SIGINT
                # handler (cancel the turn) must still be in place after the prompt returns.
                return self._session.prompt(FormattedText([("class:prompt", prompt)]), handle_sigint=False)
        finally:
            with self._lock:
                self._prompting = False
                self._at_line_start = True
            if previous is not None and signal.getsignal(signal.SIGINT) is not previous:
                signal.signal(signal.SIGINT, previous)

    # ------------------------------------------------------------------ spinner

    @contextmanager
    def working(self, label: str = "working") -> Iterator[None]:
        """Show the spinner (module doc) while inside."""
        done = threading.Event()
        start = time.monotonic()
        with self._lock:
            self._working_since = start
            self._last_write = start

        def spin() -> None:
            for frame in itertools.cycle(_FRAMES):
                if done.wait(_TICK_S):
                    return
                with self._lock:
                    now = time.monotonic()
                    if self._prompting or not self._at_line_start or now - self._last_write < _QUIET_S:
                        continue
                    self.stream.write(f"\r\x1b[K{self.paint(f'{frame} {label} {now - start:.1f}s', 'dim')}")
                    self.stream.flush()
                    self._spinner_shown = True

        thread = threading.Thread(target=spin, name="kithost-spinner", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=1)
            with self._lock:
                self._clear_spinner()
                self.stream.flush()
                self._working_since = None


def describe_commands(builtin: Mapping[str, str], extension: Iterable[Any]) -> dict[str, str]:
    """``name -> description`` of the built-in commands and the extensions' (``ExtensionCommand`` records)."""
    out = dict(builtin)
    for command in extension:
        out.setdefault(command.name, command.description or f"from {command.extension}")
    return out
