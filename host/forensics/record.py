"""The recording file written by ``run``/``chat --record FILE`` and read by ``replay`` and ``ext bisect``.

Layout (JSON lines, UTF-8, one object per line)::

    {"kithost_record": 1, "started": <unix s>, "extensions": [{"name", "version", "path", "content"}, ...]}
    {"seq": 0, "event": "tool_call", "payload": {...}, "outcome": {...}, "steps": [...]}
    ...

``outcome`` is ``{"stopped": bool, "by": str|null, "reason": str, "failed_closed": bool, "payload": {...}}``
(``payload``: the payload after every chained result, only for chain events). Each step is one handler that
was asked, in order: ``{"handler", "ms", "result", "failure"}`` — ``result`` the map it answered (or null),
``failure`` ``{"kind", "detail", "policy"}`` or null. Notify events are recorded with no steps (they are
delivered later, in batches): replaying them keeps stateful extensions (a usage budget) in step.

Writing is append-only and flushed per line, so a recording cut short by a crash keeps every complete
event; a torn last line is ignored on reading (and said so). Values that JSON cannot hold are written as
their ``repr`` (the recording is evidence, never executed).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ext_sdk.combine import Outcome
from ext_sdk.events import Mode, spec_for

from ..errors import HostError

if TYPE_CHECKING:
    from ext_sdk.combine import Step

__all__ = ["FORMAT_VERSION", "Collector", "EventRecord", "ExtensionRecord", "HostCall", "Recorder", "Recording",
           "RecordingError", "event_record", "read_recording"]

#: Version of the file layout above (the header's ``kithost_record``).
FORMAT_VERSION = 1


class RecordingError(HostError):
    """A recording file that cannot be read (missing, not a recording, a newer layout)."""


@dataclass(frozen=True, slots=True)
class ExtensionRecord:
    """One extension that was loaded when the recording was made."""

    name: str
    version: str
    #: Its directory then (replay and bisect start it from there unless told otherwise).
    path: str
    #: Content hash (``kithost ext trust`` pins the same one): tells whether it changed since.
    content: str = ""


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One dispatched event, as recorded or as replayed."""

    seq: int
    event: str
    payload: dict[str, Any]
    outcome: dict[str, Any]
    steps: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The line written for this event."""
        return {"seq": self.seq, "event": self.event, "payload": self.payload, "outcome": self.outcome,
                "steps": list(self.steps)}


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording read back: who was loaded, what was dispatched."""

    path: Path
    extensions: tuple[ExtensionRecord, ...]
    events: tuple[EventRecord, ...]
    started: float = 0.0
    #: Lines that could not be read (a torn tail after a crash): said, not fatal.
    skipped: tuple[str, ...] = field(default=())


def _plain(value: Any) -> Any:
    """``value`` as JSON-safe data (unknown types as their ``repr``)."""
    return json.loads(json.dumps(value, default=repr))


def _step_json(step: Step) -> dict[str, Any]:
    failure = None
    if step.failure is not None:
        failure = {"kind": str(step.failure.kind), "detail": step.failure.detail,
                   "policy": str(step.failure.policy)}
    return {"handler": step.handler, "ms": round(step.elapsed_s * 1000, 3), "result": step.result,
            "failure": failure}


def event_record(seq: int, payload: dict[str, Any], outcome: Outcome, steps: Sequence[Step]) -> EventRecord:
    """The record of one dispatch: what went in, each handler's answer, what came out."""
    spec = spec_for(outcome.event)
    stop = outcome.stop
    summary: dict[str, Any] = {"stopped": stop is not None, "by": stop.by if stop else None,
                               "reason": stop.reason if stop else "",
                               "failed_closed": bool(stop and stop.failed),
                               "failures": [{"handler": f.handler, "kind": str(f.kind), "detail": f.detail,
                                             "policy": str(f.policy)} for f in outcome.failures]}
    if spec is not None and spec.chain is not None:
        summary["payload"] = outcome.payload
    notify = spec is not None and spec.mode is Mode.NOTIFY
    return EventRecord(seq, outcome.event, _plain(payload), _plain(summary),
                       () if notify else tuple(_plain([_step_json(s) for s in steps])))


@dataclass(frozen=True, slots=True)
class HostCall:
    """One host call an extension made (``ext call`` lists them)."""

    extension: str
    method: str
    args: dict[str, Any]
    ok: bool
    ms: float


class Collector:
    """Observer that keeps every dispatch as an :class:`EventRecord` and every host call, in memory."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[EventRecord] = []
        self.calls: list[HostCall] = []

    def dispatched(self, payload: dict[str, Any], outcome: Outcome, steps: Sequence[Step]) -> None:
        """Keep one dispatch."""
        with self.lock:
            self.records.append(event_record(len(self.records), payload, outcome, steps))

    def host_call(self, extension: str, method: str, args: dict[str, Any], ok: bool, elapsed_s: float) -> None:
        """Keep one host call."""
        with self.lock:
            self.calls.append(HostCall(extension, method, _plain(args), ok, elapsed_s * 1000))


class Recorder:
    """Appends one line per dispatched event to ``path`` (thread-safe; a line is flushed as it is written).

    Attach it with :meth:`host.exthost.host.ExtensionHost.observe`; the host calls :meth:`dispatched` after
    every dispatch (from whichever thread dispatched).
    """

    def __init__(self, path: Path, extensions: Iterable[ExtensionRecord]) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seq = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] | None = path.open("w", encoding="utf-8")
        except OSError as exc:
            raise RecordingError(f"cannot write the recording {path}: {exc.strerror or exc}") from exc
        header = {"kithost_record": FORMAT_VERSION, "started": time.time(),
                  "extensions": [{"name": e.name, "version": e.version, "path": e.path, "content": e.content}
                                 for e in extensions]}
        self._line(header)

    def _line(self, obj: dict[str, Any]) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(obj, default=repr, ensure_ascii=False) + "\n")
        self._file.flush()

    @property
    def events(self) -> int:
        """How many events were written so far."""
        return self._seq

    def dispatched(self, payload: dict[str, Any], outcome: Outcome, steps: Sequence[Step]) -> None:
        """Record one dispatch (never raises: a full disk stops the recording, not the agent)."""
        with self._lock:
            if self._file is None:
                return
            try:
                self._line(event_record(self._seq, payload, outcome, steps).to_json())
            except (OSError, ValueError):
                self._file = None
                return
            self._seq += 1

    def host_call(self, extension: str, method: str, args: dict[str, Any], ok: bool, elapsed_s: float) -> None:
        """Host calls are not part of a recording (replay makes them anew)."""

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _loads(line: str) -> Any:
    return json.loads(line)


def read_recording(path: Path) -> Recording:
    """Read a recording; raises :class:`RecordingError` in words for a file that is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RecordingError(f"{path}: no such recording (make one with `kithost run --record {path} ...`)") \
            from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{path}: cannot read it: {exc}") from exc
    lines = text.splitlines()
    try:
        header = _loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or "kithost_record" not in header:
        raise RecordingError(f"{path}: not a kithost recording (its first line is not a recording header)")
    if header["kithost_record"] != FORMAT_VERSION:
        raise RecordingError(f"{path}: recording layout {header['kithost_record']!r}; this kithost reads "
                             f"layout {FORMAT_VERSION}")
    exts = tuple(ExtensionRecord(str(e.get("name", "")), str(e.get("version", "")), str(e.get("path", "")),
                                 str(e.get("content", ""))) for e in header.get("extensions", ()))
    events: list[EventRecord] = []
    skipped: list[str] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            obj = _loads(line)
            events.append(EventRecord(int(obj["seq"]), str(obj["event"]), dict(obj["payload"]),
                                      dict(obj["outcome"]), tuple(obj.get("steps") or ())))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            skipped.append(f"line {number}: not a complete event (a torn write?)")
    return Recording(path, exts, tuple(events), float(header.get("started", 0.0)), tuple(skipped))
