"""The terminal around ``kithost run``/``chat``: Ctrl-C handling and where events, prints and failures go.

* :func:`interrupts` — while inside, Ctrl-C calls a function instead of
  raising (it cancels the running turn); the function returning ``False``
  raises ``KeyboardInterrupt`` after all (a second Ctrl-C). Only on the main
  thread (elsewhere signals cannot be handled): there it does nothing.
* :class:`Output` — stdout as run/chat write it: whole writes under a lock
  (several threads write), flushed, and a reader that went away
  (``kithost … | head``) is no error — :attr:`Output.gone` is set, the
  writes are dropped and ``on_gone`` is called (run and chat cancel the turn).
* :func:`human_sink` / :func:`json_sink` — event sinks writing
  :func:`~host.agent.cli.render.render_event_for_humans` text, or one JSON
  object per event (``{"type": <kit's event name>, **payload}``).
* :func:`print_sink` — extensions' prints, one ``[name level] line`` per line.
* :func:`json_print_sink` / :func:`json_notice_sink` / :func:`json_log_records`
  — what ``run --json`` writes besides kit's events, as JSON lines whose type
  starts with :data:`JSON_PREFIX` (kit's event names never contain a dot):
  ``kithost.print``, ``kithost.handler_failure``, ``kithost.extension_state``,
  ``kithost.restart``, ``kithost.log``.
* :func:`report_failures` — one line per extension handler failure of a turn
  and its follow-ups.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TextIO

from ...exthost.extension import NOTICE_RECORD
from ...exthost.host import HostNotice
from ..emitter import EventSink
from ..services import PrintSink, format_print
from ..turn_result import TurnResult
from .render import render_event_for_humans

__all__ = ["JSON_PREFIX", "NOTICE_RECORD", "Output", "human_sink", "interrupts", "json_log_records", "json_notice_sink",
           "json_print_sink", "json_sink", "log_records_to", "print_sink", "report_failures"]

#: Prefix of the ``type`` of ``run --json`` lines that are not kit events.
JSON_PREFIX: Final = "kithost."


class Output:
    """A text stream written whole, flushed, from any thread; a closed reader is no error (module doc)."""

    def __init__(self, stream: TextIO, on_gone: Callable[[], None] = lambda: None) -> None:
        self.stream = stream
        #: Called after a write found the reader gone (and after every dropped write since).
        self.on_gone = on_gone
        #: The reader went away: nothing is written any more.
        self.gone = False
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        """Write ``text`` and flush (dropped once the reader is gone)."""
        with self._lock:
            if not self.gone:
                try:
                    self.stream.write(text)
                    self.stream.flush()
                except BrokenPipeError:
                    self.gone = True
        if self.gone:
            self.on_gone()


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


def human_sink(out: Output) -> EventSink:
    """Events as streaming terminal text on ``out``."""

    def on_event(event: str, data: dict[str, Any]) -> None:
        text = render_event_for_humans(event, data)
        if text:
            out.write(text)

    return on_event


def _json_line(out: Output, kind: str, data: dict[str, Any]) -> None:
    out.write(json.dumps({"type": kind, **data}, ensure_ascii=False, default=str) + "\n")


def json_sink(out: Output) -> EventSink:
    """Events as JSON lines on ``out``."""

    def on_event(event: str, data: dict[str, Any]) -> None:
        _json_line(out, event, data)

    return on_event


def json_print_sink(out: Output) -> PrintSink:
    """Extension prints as ``{"type": "kithost.print", "extension", "level", "text"}`` lines on ``out``."""

    def on_print(extension: str, level: str, text: str) -> None:
        _json_line(out, JSON_PREFIX + "print", {"extension": extension, "level": level, "text": text})

    return on_print


def json_notice_sink(out: Output) -> HostNotice:
    """Host notices (:data:`~host.exthost.host.HostNotice`) as ``{"type": "kithost.<kind>", ...}`` lines."""

    def on_notice(kind: str, data: dict[str, Any]) -> None:
        _json_line(out, JSON_PREFIX + kind, data)

    return on_notice


class _JsonLogHandler(logging.Handler):
    """kithost's warnings as ``{"type": "kithost.log", "level", "logger", "message"}`` lines.

    Records the notices already carry are dropped: the dispatcher's handler
    failures (``kithost.handler_failure``), the extensions' state changes
    (``kithost.extension_state``), and any record logged with
    ``extra={NOTICE_RECORD: True}`` (the host's way to say "this warning is
    also a notice").
    """

    def __init__(self, out: Output) -> None:
        super().__init__(logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "kithost.dispatch" or (record.name == "kithost.ext" and record.funcName == "_set_state") \
                or getattr(record, NOTICE_RECORD, False):
            return
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad log call must not break the run
            message = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            message += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        _json_line(self.out, JSON_PREFIX + "log", {"level": record.levelname.lower(), "logger": record.name,
                                                    "message": message})


@contextmanager
def json_log_records(out: Output) -> Iterator[None]:
    """While inside, kithost's log warnings go to ``out`` as JSON lines instead of stderr text."""
    with log_records_to(_JsonLogHandler(out)):
        yield


@contextmanager
def log_records_to(handler: logging.Handler) -> Iterator[None]:
    """While inside, kithost's log records go to ``handler`` only (not to stderr)."""
    logger = logging.getLogger("kithost")
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def report_failures(result: TurnResult, err: TextIO) -> None:
    """The turn's (and its follow-ups') extension failures on ``err``."""
    for turn in (result, *result.followups):
        for failure in turn.failures:
            err.write(f"kithost: {failure.describe()}\n")
    err.flush()
