"""The session file on disk: JSON Lines, one header then append-only entries.

Format (UTF-8, one JSON object per line)::

    {"type": "session", "version": 1, "id": "<uuid>", "timestamp": "...Z", "cwd": "/work", "parent_session": null}
    {"type": "message", "id": "a1b2c3d4", "parent_id": null, "timestamp": "...Z", "message": {"role": "user", ...}}
    {"type": "message", "id": "e5f6a7b8", "parent_id": "a1b2c3d4", "timestamp": "...Z", "message": {...}}
    {"type": "extension", "id": "...", "parent_id": "...", "timestamp": "...", "ext": "guard", "entry_type": "note",
     "data": {...}}

Every entry has ``type``, ``id`` (unique in the file), ``parent_id`` (an
*earlier* entry's id, or ``null`` for a root) and ``timestamp`` (RFC 3339 UTC);
the other keys are the entry's data (:data:`ENTRY_FIELDS` lists the required
ones of the known types; unknown types are kept as they are, for newer
writers). Blank lines are skipped.

Reading checks all of that and raises :class:`SessionFileError` naming the
file and the 1-based line. A last line without its newline that is not valid
JSON is a torn write (the process died mid-write): an error naming
``kithost session repair FILE``, unless the reader is asked to repair it, which
truncates the file before that line. :func:`repair_session_file` is that
command: it keeps a backup of the whole file first and says what it dropped.

Writing (:class:`SessionWriter`) appends one line per entry in a single
``write``, then flushes and (by default) ``fsync``\\ s, so a crash loses nothing
already appended.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from .errors import SessionFileError

__all__ = [
    "ENTRY_FIELDS",
    "FORMAT_VERSION",
    "HEADER_TYPE",
    "RESERVED_KEYS",
    "Entry",
    "Repair",
    "SessionWriter",
    "read_session_file",
    "repair_session_file",
    "utc_now",
]

#: Version written in the header; files with a newer version are refused.
FORMAT_VERSION: Final = 1
#: ``type`` of the header line.
HEADER_TYPE: Final = "session"
#: Keys every entry line has; an entry's data may not use them.
RESERVED_KEYS: Final = frozenset({"type", "id", "parent_id", "timestamp"})
#: Required data keys (and their JSON types) of the known entry types.
ENTRY_FIELDS: Final[Mapping[str, Mapping[str, type | tuple[type, ...]]]] = {
    "message": {"message": dict},
    "extension": {"ext": str, "entry_type": str},
    "model_change": {"model": str},
    "compaction": {"summary": str},
}


def utc_now() -> str:
    """The current time as RFC 3339 UTC with milliseconds (``2026-11-21T08:06:33.123Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Entry:
    """One node of the session tree."""

    id: str
    parent_id: str | None
    type: str
    timestamp: str
    #: Everything else on the line (``message`` for a message entry, ...).
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The line's object."""
        return {"type": self.type, "id": self.id, "parent_id": self.parent_id, "timestamp": self.timestamp,
                **self.data}


def _fail(path: Path, line: int, problem: str) -> SessionFileError:
    return SessionFileError(path, line, problem)


def _check_header(path: Path, obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict) or obj.get("type") != HEADER_TYPE:
        raise _fail(path, 1, f"the first line must be the session header (type {HEADER_TYPE!r})")
    version = obj.get("version")
    if type(version) is not int:
        raise _fail(path, 1, "the header has no integer 'version'")
    if version > FORMAT_VERSION:
        raise _fail(path, 1, f"format version {version} is newer than this kithost reads ({FORMAT_VERSION}); "
                             "upgrade kithost")
    if not isinstance(obj.get("id"), str) or not obj["id"]:
        raise _fail(path, 1, "the header has no session 'id'")
    return obj


def _check_entry(path: Path, line: int, obj: Any, known: Mapping[str, Entry]) -> Entry:
    if not isinstance(obj, dict):
        raise _fail(path, line, f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind or kind == HEADER_TYPE:
        raise _fail(path, line, f"bad entry 'type' {kind!r}")
    entry_id = obj.get("id")
    if not isinstance(entry_id, str) or not entry_id:
        raise _fail(path, line, "the entry has no 'id'")
    if entry_id in known:
        raise _fail(path, line, f"duplicate entry id {entry_id!r}")
    parent = obj.get("parent_id")
    if parent is not None and (not isinstance(parent, str) or parent not in known):
        raise _fail(path, line, f"parent_id {parent!r} is not an earlier entry")
    stamp = obj.get("timestamp")
    if not isinstance(stamp, str):
        raise _fail(path, line, "the entry has no 'timestamp'")
    for key, types in ENTRY_FIELDS.get(kind, {}).items():
        if not isinstance(obj.get(key), types):
            raise _fail(path, line, f"{kind} entry: missing or bad {key!r}")
    data = {k: v for k, v in obj.items() if k not in RESERVED_KEYS}
    return Entry(entry_id, parent, kind, stamp, data)


def read_session_file(path: Path, *, repair_torn_tail: bool = False) -> tuple[dict[str, Any], list[Entry]]:
    """The header and the entries of ``path``, checked (see the module doc).

    With ``repair_torn_tail``, a torn last line is removed from the file (the
    file is truncated before it) instead of raising.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _fail(path, 0, f"cannot read it ({exc.strerror or exc})") from None
    header: dict[str, Any] | None = None
    entries: dict[str, Entry] = {}
    offset = 0
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        start = offset
        offset += len(line) + 1
        if not line.strip():
            continue
        is_last_unterminated = number == len(lines)  # split() leaves the text after the final newline here
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            if is_last_unterminated:
                if repair_torn_tail:
                    with path.open("r+b") as f:
                        f.truncate(start)
                    break
                raise _fail(path, number, f"the last line is incomplete (a torn write?): {exc}; drop it with: "
                                          f"kithost session repair {path}") from None
            raise _fail(path, number, f"invalid JSON: {exc}") from None
        if header is None:
            header = _check_header(path, obj)
            continue
        entry = _check_entry(path, number, obj, entries)
        entries[entry.id] = entry
    if header is None:
        raise _fail(path, 0, "the file is empty (no session header)")
    return header, list(entries.values())


@dataclass(frozen=True, slots=True)
class Repair:
    """What :func:`repair_session_file` did."""

    #: The repaired file.
    path: Path
    #: 1-based number of the line dropped (0: nothing was dropped).
    line: int = 0
    #: The bytes dropped (the torn line, without a newline).
    dropped: bytes = b""
    #: Copy of the file as it was before the repair (``None`` when nothing was dropped).
    backup: Path | None = None

    def describe(self) -> str:
        """One sentence for the user."""
        if not self.line:
            return f"{self.path}: nothing to repair (no torn last line)"
        preview = self.dropped.decode("utf-8", "replace")
        preview = preview if len(preview) <= 80 else preview[:79] + "…"
        return (f"{self.path}: dropped the torn line {self.line} ({len(self.dropped)} bytes: {preview}); "
                f"the file as it was is kept in {self.backup}")


def _backup_path(path: Path) -> Path:
    """``<file>.bak``, or ``<file>.bak.2``, ``.3``... when taken (a backup is never overwritten)."""
    candidate = path.with_name(path.name + ".bak")
    n = 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.bak.{n}")
    return candidate


def repair_session_file(path: Path) -> Repair:
    """Drop a torn last line of ``path`` (``kithost session repair``), after copying the file to a backup.

    Only a torn tail is repaired: any other problem (a malformed line before
    the last, a bad header) raises :class:`SessionFileError` and the file is
    left as it was. The repaired file is read again before returning, so what
    is returned is a file that opens.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _fail(path, 0, f"cannot read it ({exc.strerror or exc})") from None
    try:
        read_session_file(path)
        return Repair(path)
    except SessionFileError as exc:
        lines = raw.split(b"\n")
        if exc.line != len(lines) or "incomplete" not in exc.problem:
            raise SessionFileError(path, exc.line, f"{exc.problem} — only a torn last line can be repaired; "
                                                   "fix or remove that line by hand") from None
    start = len(raw) - len(lines[-1])
    if not raw[:start].strip():
        raise SessionFileError(path, 1, "the header itself is torn: there is no session to keep")
    backup = _backup_path(path)
    backup.write_bytes(raw)
    with path.open("r+b") as f:
        f.truncate(start)
        f.flush()
        os.fsync(f.fileno())
    read_session_file(path)  # what is left must open (the header itself may have been the torn line)
    return Repair(path, len(lines), lines[-1], backup)


class SessionWriter:
    """Appends lines to a session file; each line is on disk when :meth:`write` returns."""

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self._lock = threading.Lock()
        self._file = path.open("ab")
        if self._file.tell() > 0:
            with path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # an unterminated last line must not swallow ours
                    self._file.write(b"\n")

    def write(self, obj: Mapping[str, Any]) -> None:
        """Append ``obj`` as one JSON line; flush and fsync."""
        line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file (further writes fail)."""
        with self._lock:
            self._file.close()
