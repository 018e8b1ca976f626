"""The terminal around ``kithost run``/``chat``: Ctrl-C handling and where events, prints and failures go.

* :func:`interrupts` — while inside, Ctrl-C calls a function instead of
  raising (it cancels the running turn); the function returning ``False``
  raises ``KeyboardInterrupt`` after all (a second Ctrl-C). Only on the main
  thread (elsewhere signals cannot be handled): there it does nothing.
* :func:`human_sink` / :func:`json_sink` — event sinks writing
  :func:`~host.agent.cli.render.render_event_for_humans` text, or one JSON
  object per event (``{"type": <kit's event name>, **payload}``).
* :func:`print_sink` — extensions' prints, one ``[name level] line`` per line.
* :func:`report_failures` — one line per extension handler failure of a turn
  and its follow-ups.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from ..emitter import EventSink
from ..services import PrintSink, format_print
from ..turn_result import TurnResult
from .render import render_event_for_humans

__all__ = ["human_sink", "interrupts", "json_sink", "print_sink", "report_failures"]


@contextmanager
def interrupts(on_interrupt: Callable[[], bool]) -> Iterator[None]:
    """While inside, Ctrl-C calls ``on_interrupt``; ``False`` from it raises ``KeyboardInterrupt``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if not on_interrupt():
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def print_sink(err: TextIO) -> PrintSink:
    """Extension prints to ``err`` (:func:`~host.agent.services.format_print`)."""

    def on_print(extension: str, level: str, text: str) -> None:
        err.write(format_print(extension, level, text))
        err.flush()

    return on_print


def human_sink(out: TextIO) -> EventSink:
    """Events as streaming terminal text on ``out``."""

    def on_event(event: str, data: dict[str, Any]) -> None:
        text = render_event_for_humans(event, data)
        if text:
            out.write(text)
            out.flush()

    return on_event


def json_sink(out: TextIO) -> EventSink:
    """Events as JSON lines on ``out``."""

    def on_event(event: str, data: dict[str, Any]) -> None:
        out.write(json.dumps({"type": event, **data}, ensure_ascii=False, default=str) + "\n")
        out.flush()

    return on_event


def report_failures(result: TurnResult, err: TextIO) -> None:
    """The turn's (and its follow-ups') extension failures on ``err``."""
    for turn in (result, *result.followups):
        for failure in turn.failures:
            err.write(f"kithost: {failure.describe()}\n")
    err.flush()
