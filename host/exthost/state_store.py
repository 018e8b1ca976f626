"""Per-session extension state: kit's sidecar ``<session>.ext-state.json``, namespaced.

File format (UTF-8 JSON)::

    {"kithost_state": 1,
     "extensions": {"usage-budget": {"spent": 0.42, "warned": true}, ...}}

Contract:

* State lives in the host, so it survives extension crashes and restarts; a
  write is on disk before :meth:`StateStore.set` returns (write to a temp file
  in the same directory, ``fsync``, ``rename`` over the old file — a reader
  sees the old or the new file, never half of one).
* Writers are serialised by one lock; the last write wins.
* Keys are namespaced per extension: an extension sees only its own keys.
* Missing or empty file → empty store. A malformed file → :class:`StateStoreError`
  naming the file and what is wrong, and the file is left untouched (no
  write happens until the operator fixes or removes it).
* ``path=None`` keeps state in memory only (an ephemeral session).
* Temp files a killed writer left behind (``.<name>.*.tmp`` beside the file,
  untouched for :data:`STALE_TEMP_S`) are removed when the store is opened.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import StateStoreError

__all__ = ["StateStore", "sidecar_path"]

_FORMAT_KEY = "kithost_state"
#: A temp file untouched this long is a killed writer's leftover, not a write in progress.
STALE_TEMP_S = 5.0


def sidecar_path(session_path: Path) -> Path:
    """``foo.jsonl`` → ``foo.ext-state.json``; any other name gets ``.ext-state.json`` appended."""
    if session_path.suffix == ".jsonl":
        return session_path.with_suffix(".ext-state.json")
    return session_path.with_name(session_path.name + ".ext-state.json")


class StateStore:
    """Thread-safe namespaced key/value store persisted atomically."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Any]] = self._read() if path is not None else {}
        if path is not None:
            self._remove_stale_temps(path)

    @staticmethod
    def _remove_stale_temps(path: Path) -> None:
        """Delete temp files of writes that never finished (the writer was killed before its rename)."""
        now = time.time()
        try:
            leftovers = list(path.parent.glob(f".{path.name}.*.tmp"))
        except OSError:
            return
        for tmp in leftovers:
            try:
                if now - tmp.stat().st_mtime > STALE_TEMP_S:
                    tmp.unlink()
            except OSError:
                continue

    def _read(self) -> dict[str, dict[str, Any]]:
        assert self.path is not None
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StateStoreError(f"{self.path}: cannot read extension state: {exc.strerror}") from exc
        if not text.strip():
            return {}
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateStoreError(
                f"{self.path}: extension state is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                f"{exc.msg}); fix or move the file — it was left untouched"
            ) from exc
        extensions = raw.get("extensions") if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or raw.get(_FORMAT_KEY) != 1 or not isinstance(extensions, dict) or not all(
            isinstance(v, dict) for v in extensions.values()
        ):
            raise StateStoreError(
                f"{self.path}: not a kithost state file (expected {{\"{_FORMAT_KEY}\": 1, \"extensions\": "
                "{name: {key: value}}}); it was left untouched"
            )
        return {name: dict(values) for name, values in extensions.items()}

    def reload(self) -> None:
        """Re-read the file; on error the in-memory store is left as it was."""
        if self.path is None:
            return
        data = self._read()
        with self._lock:
            self._data = data

    def retarget(self, path: Path | None) -> None:
        """Switch to another sidecar (a session switch): load it, then serve it — atomically
        with respect to writers. On a malformed file the store keeps its old file and contents."""
        data = StateStore(path)._data if path is not None else {}
        with self._lock:
            self.path = path
            self._data = data

    def get(self, extension: str, key: str) -> Any:
        """The value or ``None``."""
        with self._lock:
            return copy.deepcopy(self._data.get(extension, {}).get(key))

    def keys(self, extension: str) -> list[str]:
        """Sorted keys of ``extension``."""
        with self._lock:
            return sorted(self._data.get(extension, {}))

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """A deep copy of everything."""
        with self._lock:
            return copy.deepcopy(self._data)

    def set(self, extension: str, key: str, value: Any) -> None:
        """Store ``value``; persisted before returning."""
        with self._lock:
            self._data.setdefault(extension, {})[key] = copy.deepcopy(value)
            self._write_locked()

    def delete(self, extension: str, key: str) -> None:
        """Remove ``key``; a missing key writes nothing."""
        with self._lock:
            values = self._data.get(extension)
            if values is None or key not in values:
                return
            del values[key]
            if not values:
                del self._data[extension]
            self._write_locked()

    def _write_locked(self) -> None:
        if self.path is None:
            return
        body = json.dumps({_FORMAT_KEY: 1, "extensions": self._data}, indent=1, sort_keys=True)
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(body)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StateStoreError(f"{self.path}: cannot write extension state: {exc.strerror}") from exc
