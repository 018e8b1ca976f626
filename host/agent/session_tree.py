"""``SessionTree``: the conversation as a tree of entries in a JSONL file (format: :mod:`.session_file`).

Model:

* Entries are append-only; each has a parent, so the file holds a tree. The
  **leaf** is where the next entry attaches: after :meth:`SessionTree.open`
  it is the last entry in the file; every append moves it to the new entry;
  :meth:`SessionTree.fork` moves it to any entry (or to ``None``, before the
  first one) without writing anything — the fork becomes durable with the
  next append, whose ``parent_id`` is the fork point.
* The **branch** is the path root → leaf. :meth:`SessionTree.messages` turns
  it into the model's context: the ``message`` entries in order, except that
  after a ``compaction`` entry the messages before its ``first_kept_id`` are
  replaced by one summary message (:func:`summary_message`).
* Entry types written here: ``message``, ``extension`` (an extension's
  ``ctx.append_entry``), ``model_change``, ``compaction``; :meth:`append`
  writes any other type.
* Each append is on disk (flushed, fsync'd) before it returns; a crash loses
  nothing already appended. Thread-safe: extension entries may be appended
  from the extension host's threads while the agent appends messages.
* The extensions' state sidecar lives beside the file (:attr:`SessionTree.state_path`).
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from ..exthost.state_store import sidecar_path
from .errors import AgentError
from .session_file import (
    FORMAT_VERSION,
    HEADER_TYPE,
    RESERVED_KEYS,
    Entry,
    SessionWriter,
    read_session_file,
    utc_now,
)

__all__ = ["SUMMARY_PREFIX", "SessionTree", "default_session_path", "summary_message"]

#: First line of the message that stands for compacted history.
SUMMARY_PREFIX: Final = "[Summary of the earlier conversation]"


def summary_message(summary: str) -> dict[str, Any]:
    """The user message that replaces compacted history in the context."""
    return {"role": "user", "content": f"{SUMMARY_PREFIX}\n{summary}"}


def default_session_path(directory: Path) -> Path:
    """A new, unused session file name in ``directory``: ``<UTC time>_<random>.jsonl``."""
    stamp = utc_now()[:19].replace(":", "-")
    return directory / f"{stamp}_{secrets.token_hex(4)}.jsonl"


class SessionTree:
    """One session file, loaded, with its current leaf. Build with :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, header: dict[str, Any], entries: list[Entry], *, fsync: bool = True) -> None:
        self.path = path
        #: The header line (``id``, ``version``, ``timestamp``, ``cwd``, ``parent_session``).
        self.header = header
        self._lock = threading.RLock()
        self._entries: dict[str, Entry] = {e.id: e for e in entries}
        self._children: dict[str | None, list[str]] = {}
        for entry in entries:
            self._children.setdefault(entry.parent_id, []).append(entry.id)
        self._leaf: str | None = entries[-1].id if entries else None
        self._writer = SessionWriter(path, fsync=fsync)

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(cls, path: str | Path, *, cwd: str | Path | None = None, parent_session: str | Path | None = None,
               fsync: bool = True) -> SessionTree:
        """Start a new session file at ``path`` (which must not exist); parent dirs are created."""
        target = Path(path)
        header = {"type": HEADER_TYPE, "version": FORMAT_VERSION, "id": str(uuid.uuid4()), "timestamp": utc_now(),
                  "cwd": str(cwd) if cwd is not None else "",
                  "parent_session": str(parent_session) if parent_session is not None else None}
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with target.open("x", encoding="utf-8") as f:
                f.write(json.dumps(header, ensure_ascii=False, separators=(",", ":")) + "\n")
        except FileExistsError:
            raise AgentError(f"session file {target} already exists; open it to resume") from None
        return cls(target, header, [], fsync=fsync)

    @classmethod
    def open(cls, path: str | Path, *, repair_torn_tail: bool = False, fsync: bool = True) -> SessionTree:
        """Resume the session in ``path``; raises :class:`SessionFileError` on a malformed file."""
        target = Path(path)
        header, entries = read_session_file(target, repair_torn_tail=repair_torn_tail)
        return cls(target, header, entries, fsync=fsync)

    def close(self) -> None:
        """Close the file; the tree stays readable."""
        self._writer.close()

    def __enter__(self) -> SessionTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def session_id(self) -> str:
        """The session's id (from the header)."""
        return str(self.header["id"])

    @property
    def state_path(self) -> Path:
        """The extension state sidecar beside the file (``<name>.ext-state.json``)."""
        return sidecar_path(self.path)

    # ------------------------------------------------------------------ reading

    @property
    def leaf_id(self) -> str | None:
        """Where the next entry attaches (``None``: at the root)."""
        return self._leaf

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[Entry]:
        """Every entry, in file order."""
        with self._lock:
            return list(self._entries.values())

    def get(self, entry_id: str) -> Entry:
        """The entry ``entry_id``; :class:`AgentError` if there is none."""
        entry = self._entries.get(entry_id)
        if entry is None:
            raise AgentError(f"session {self.path} has no entry {entry_id!r}")
        return entry

    def children(self, entry_id: str | None) -> list[str]:
        """Ids of the entries whose parent is ``entry_id`` (``None``: the roots), in file order."""
        with self._lock:
            return list(self._children.get(entry_id, ()))

    def branch(self, entry_id: str | None = None) -> list[Entry]:
        """The path root → ``entry_id`` (default: the leaf), both ends included."""
        with self._lock:
            current = self._leaf if entry_id is None else self.get(entry_id).id
            path: list[Entry] = []
            while current is not None:
                entry = self._entries[current]
                path.append(entry)
                current = entry.parent_id
            path.reverse()
            return path

    def messages(self, entry_id: str | None = None) -> list[dict[str, Any]]:
        """The model context for the branch ending at ``entry_id`` (default: the leaf); copies."""
        path = self.branch(entry_id)
        last = max((i for i, e in enumerate(path) if e.type == "compaction"), default=None)
        if last is None:
            return [copy.deepcopy(e.data["message"]) for e in path if e.type == "message"]
        compaction = path[last]
        kept_id = compaction.data.get("first_kept_id")
        start = next((i for i, e in enumerate(path[:last]) if e.id == kept_id), last)
        kept = [e for e in path[start:last] + path[last + 1:] if e.type == "message"]
        return [summary_message(str(compaction.data["summary"])), *(copy.deepcopy(e.data["message"]) for e in kept)]

    def current_model(self) -> str | None:
        """The model of the last ``model_change`` on the branch, or ``None``."""
        for entry in reversed(self.branch()):
            if entry.type == "model_change":
                return str(entry.data["model"])
        return None

    def get_entries(self, ext: str, entry_type: str, *, branch_only: bool = False) -> list[dict[str, Any]]:
        """``ext``'s extension entries of ``entry_type``, oldest first: ``{id, type, data, timestamp}``.

        All entries of the session, or with ``branch_only`` those on the current branch.
        """
        source = self.branch() if branch_only else self.entries()
        return [{"id": e.id, "type": entry_type, "data": copy.deepcopy(e.data.get("data")), "timestamp": e.timestamp}
                for e in source
                if e.type == "extension" and e.data.get("ext") == ext and e.data.get("entry_type") == entry_type]

    # ------------------------------------------------------------------ writing

    def append(self, entry_type: str, data: Mapping[str, Any]) -> Entry:
        """Append an entry of ``entry_type`` under the leaf; it becomes the leaf. Durable on return."""
        if not entry_type or entry_type == HEADER_TYPE:
            raise AgentError(f"bad entry type {entry_type!r}")
        clash = RESERVED_KEYS.intersection(data)
        if clash:
            raise AgentError(f"entry data may not use the reserved key(s) {sorted(clash)}")
        with self._lock:
            entry_id = secrets.token_hex(4)
            while entry_id in self._entries:
                entry_id = secrets.token_hex(4)
            entry = Entry(entry_id, self._leaf, entry_type, utc_now(), copy.deepcopy(dict(data)))
            try:
                self._writer.write(entry.to_json())
            except (TypeError, ValueError) as exc:
                raise AgentError(f"entry data is not JSON-serialisable: {exc}") from None
            self._entries[entry_id] = entry
            self._children.setdefault(entry.parent_id, []).append(entry_id)
            self._leaf = entry_id
            return entry

    def append_message(self, message: Mapping[str, Any]) -> str:
        """Append an OpenAI-format message; returns the entry id."""
        if not isinstance(message.get("role"), str):
            raise AgentError("a message needs a 'role'")
        return self.append("message", {"message": dict(message)}).id

    def append_entry(self, ext: str, entry_type: str, data: Any) -> str:
        """Append extension ``ext``'s entry (``ctx.append_entry``); returns its id."""
        return self.append("extension", {"ext": ext, "entry_type": entry_type, "data": data}).id

    def append_model_change(self, model: str, previous_model: str = "", source: str = "user") -> str:
        """Record a model switch; returns the entry id."""
        return self.append("model_change", {"model": model, "previous_model": previous_model, "source": source}).id

    def append_compaction(self, summary: str, first_kept_id: str | None, tokens_before: int = 0) -> str:
        """Record a compaction: history before ``first_kept_id`` is replaced by ``summary`` in :meth:`messages`."""
        if first_kept_id is not None:
            self.get(first_kept_id)
        return self.append("compaction", {"summary": summary, "first_kept_id": first_kept_id,
                                          "tokens_before": tokens_before}).id

    def fork(self, entry_id: str | None) -> None:
        """Move the leaf to ``entry_id`` (``None``: before the first entry); the next append branches there."""
        with self._lock:
            self._leaf = None if entry_id is None else self.get(entry_id).id

    # ------------------------------------------------------------------ other files

    def new_session(self, path: str | Path | None = None) -> SessionTree:
        """A new, empty session file (default: a fresh name in this file's directory)."""
        return SessionTree.create(path or default_session_path(self.path.parent), cwd=self.header.get("cwd") or None,
                                  fsync=self._writer.fsync)

    def fork_to_new_session(self, entry_id: str | None, path: str | Path | None = None) -> SessionTree:
        """A new session file holding a copy of the branch root → ``entry_id`` (ids kept)."""
        branch = self.branch(entry_id) if entry_id is not None else []
        tree = SessionTree.create(path or default_session_path(self.path.parent),
                                  cwd=self.header.get("cwd") or None, parent_session=self.path,
                                  fsync=self._writer.fsync)
        with tree._lock:
            for entry in branch:
                tree._writer.write(entry.to_json())
                tree._entries[entry.id] = entry
                tree._children.setdefault(entry.parent_id, []).append(entry.id)
                tree._leaf = entry.id
        return tree
