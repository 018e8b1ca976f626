"""Plain line-based terminal prompts and status line for extensions' ``ctx.prompt_*`` and ``ctx.set_status``.

:class:`TerminalPrompts` is a :class:`~host.exthost.services.PromptUI`: it
writes the question to ``out`` and reads one line from ``read_line`` (default
:func:`input`). Contract:

* ``select``: numbered options; the answer is a number (1-based) or an
  option's exact text; an empty line, end of input or Ctrl-C cancels; a wrong
  answer is asked again (at most 3 times, then cancelled).
* ``confirm``: ``y``/``yes``/``n``/``no`` (any case); an empty line takes the
  default (not cancelled); end of input or Ctrl-C cancels.
* ``input``: the line as typed; an empty line takes the default; end of input
  or Ctrl-C cancels.

One prompt at a time (a lock): prompts from several extensions never
interleave. :func:`format_status` renders the status line's entries for
``on_status``; :class:`TerminalStatus` writes it to a stream when it changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final, TextIO

__all__ = ["MAX_ATTEMPTS", "TerminalPrompts", "TerminalStatus", "format_status"]

#: Wrong answers to a select or confirm before it is cancelled.
MAX_ATTEMPTS: Final = 3


class _Cancelled(Exception):
    pass


class TerminalPrompts:
    """Asks on a terminal, one line per answer (contract in the module doc)."""

    def __init__(self, out: TextIO, read_line: Callable[[str], str] | None = None) -> None:
        self._out = out
        self._read = read_line or input
        self._lock = threading.Lock()

    def _ask(self, prompt: str) -> str:
        self._out.flush()
        try:
            return self._read(prompt).strip()
        except (EOFError, KeyboardInterrupt):
            raise _Cancelled from None

    def select(self, extension: str, message: str, options: list[str]) -> dict[str, Any]:
        with self._lock:
            self._out.write(f"[{extension}] {message}\n")
            for i, option in enumerate(options, 1):
                self._out.write(f"  {i}. {option}\n")
            try:
                for _ in range(MAX_ATTEMPTS):
                    answer = self._ask(f"choose 1-{len(options)} (empty: cancel): ")
                    if not answer:
                        break
                    if answer.isdigit() and 1 <= int(answer) <= len(options):
                        index = int(answer) - 1
                        return {"value": options[index], "index": index, "cancelled": False}
                    if answer in options:
                        return {"value": answer, "index": options.index(answer), "cancelled": False}
                    self._out.write(f"  not an option: {answer}\n")
            except _Cancelled:
                pass
            return {"value": "", "index": -1, "cancelled": True}

    def confirm(self, extension: str, message: str, default: bool) -> dict[str, Any]:
        with self._lock:
            hint = "Y/n" if default else "y/N"
            try:
                for _ in range(MAX_ATTEMPTS):
                    answer = self._ask(f"[{extension}] {message} [{hint}] ").lower()
                    if not answer:
                        return {"value": default, "cancelled": False}
                    if answer in ("y", "yes", "n", "no"):
                        return {"value": answer.startswith("y"), "cancelled": False}
                    self._out.write("  answer y or n\n")
            except _Cancelled:
                pass
            return {"value": default, "cancelled": True}

    def input(self, extension: str, message: str, placeholder: str, default: str) -> dict[str, Any]:
        with self._lock:
            hint = f" [{default}]" if default else (f" ({placeholder})" if placeholder else "")
            try:
                answer = self._ask(f"[{extension}] {message}{hint}: ")
            except _Cancelled:
                return {"value": default, "cancelled": True}
            return {"value": answer or default, "cancelled": False}


def format_status(items: list[tuple[str, str, str]]) -> str:
    """The status line: entries' texts, highest priority first, joined with `` · `` ('' when empty)."""
    return " · ".join(text for _, _, text in items)


class TerminalStatus:
    """An ``on_status`` sink that writes the status line to ``out`` whenever it changes (and is not empty)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._last = ""

    def __call__(self, items: list[tuple[str, str, str]]) -> None:
        line = format_status(items)
        if line and line != self._last:
            self._out.write(f"[status] {line}\n")
            self._out.flush()
        self._last = line
