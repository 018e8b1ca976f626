"""What the embedding application provides to extensions' ``ctx`` calls.

The extension host answers state calls itself (:mod:`.state_store`) and
custom events through dispatch; everything that belongs to the application —
printing, session entries, the conversation, steering — goes through a
:class:`HostServices` object. The agent implements it over its session tree;
:class:`LocalServices` is the default for an application without an agent:
prints go to stderr, entries stay in memory, and agent calls fail with a
clear "not available" (kit's no-op context defaults, but loud).

Every method may be called from the dispatching thread or the notify
delivery thread; implementations must be thread-safe.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

__all__ = ["HostServices", "LocalServices", "NotAvailable"]


class NotAvailable(RuntimeError):
    """The application does not offer this host call."""


class HostServices(Protocol):
    """The application side of ``ctx``."""

    def print(self, extension: str, level: str, text: str) -> None:
        """Show ``text`` from ``extension`` (level ``plain``/``info``/``error``)."""

    def append_entry(self, extension: str, entry_type: str, data: Any) -> str:
        """Append a session entry; return its id."""

    def get_entries(self, extension: str, entry_type: str) -> list[dict[str, Any]]:
        """``extension``'s entries of ``entry_type``: ``{id, type, data, timestamp}``, oldest first."""

    def get_messages(self) -> list[dict[str, Any]]:
        """The current context window as context messages."""

    def send_message(self, extension: str, text: str) -> None:
        """Queue a user message."""

    def set_model(self, extension: str, model: str) -> None:
        """Switch the model."""

    def info(self) -> dict[str, str]:
        """``{session_id, session_path, cwd, model}``."""


class LocalServices:
    """Default services: stderr prints, in-memory entries, no agent."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        #: Every print, as ``(extension, level, text)`` (for tests and the demo).
        self.printed: list[tuple[str, str, str]] = []

    def print(self, extension: str, level: str, text: str) -> None:
        with self._lock:
            self.printed.append((extension, level, text))
            out = self._out or sys.stderr
            tag = {"info": "info", "error": "error"}.get(level, "")
            prefix = f"[{extension}{' ' + tag if tag else ''}] "
            out.write("".join(prefix + line + "\n" for line in (text.splitlines() or [""])))
            out.flush()

    def append_entry(self, extension: str, entry_type: str, data: Any) -> str:
        with self._lock:
            entry_id = f"x{next(self._ids)}"
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
            self._entries.append({"id": entry_id, "ext": extension, "type": entry_type, "data": data,
                                  "timestamp": stamp})
            return entry_id

    def get_entries(self, extension: str, entry_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [{k: e[k] for k in ("id", "type", "data", "timestamp")} for e in self._entries
                    if e["ext"] == extension and e["type"] == entry_type]

    def get_messages(self) -> list[dict[str, Any]]:
        return []

    def send_message(self, extension: str, text: str) -> None:
        raise NotAvailable("send_message is not available: this host runs no agent")

    def set_model(self, extension: str, model: str) -> None:
        raise NotAvailable("set_model is not available: this host runs no agent")

    def info(self) -> dict[str, str]:
        return {"session_id": "", "session_path": "", "cwd": os.getcwd(), "model": ""}
