"""What the embedding application provides to extensions' ``ctx`` calls.

The extension host answers state calls itself (:mod:`.state_store`) and
custom events through dispatch; everything that belongs to the application —
printing, session entries, the conversation, steering — goes through a
:class:`HostServices` object. The agent implements it over its session tree;
:class:`LocalServices` is the default for an application without an agent:
prints go to stderr, entries stay in memory, and agent calls fail with a
clear "not available" (kit's no-op context defaults, but loud).

Every method may be called from the dispatching thread or the notify
delivery thread; implementations must be thread-safe. A method raises
:class:`NotAvailable` (its message goes to the extension) for what the
application cannot do; any other exception is the application's own failure
(logged by the router, never shown to the extension).

Prompts and the status line belong to whoever shows things to the user: the
application passes a :class:`PromptUI` (default :class:`HeadlessPrompts`,
which cancels every prompt, kit's headless behaviour) and a :data:`StatusSink`.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

__all__ = ["AGENT_CALLS", "HeadlessPrompts", "HostServices", "LocalServices", "NotAvailable", "PromptUI",
           "StatusLine", "StatusSink", "ask"]


class NotAvailable(RuntimeError):
    """The application does not offer this host call."""


class PromptUI(Protocol):
    """Asks the user on behalf of an extension; each answer says ``cancelled`` when nobody answered."""

    def select(self, extension: str, message: str, options: list[str]) -> dict[str, Any]:
        """``{value, index, cancelled}``."""

    def confirm(self, extension: str, message: str, default: bool) -> dict[str, Any]:
        """``{value, cancelled}``."""

    def input(self, extension: str, message: str, placeholder: str, default: str) -> dict[str, Any]:
        """``{value, cancelled}``."""


class HeadlessPrompts:
    """Nobody to ask: every prompt is cancelled at once (kit's headless and ACP behaviour)."""

    def select(self, extension: str, message: str, options: list[str]) -> dict[str, Any]:
        return {"value": "", "index": -1, "cancelled": True}

    def confirm(self, extension: str, message: str, default: bool) -> dict[str, Any]:
        return {"value": default, "cancelled": True}

    def input(self, extension: str, message: str, placeholder: str, default: str) -> dict[str, Any]:
        return {"value": default, "cancelled": True}


#: ``on_status(items)``: the status line changed; ``items`` are ``(extension, key, text)``, highest priority
#: first (then oldest first). Called under the services' lock: keep it quick.
StatusSink = Callable[[list[tuple[str, str, str]]], None]


class StatusLine:
    """The status line's entries (kit's ``SetStatus``/``RemoveStatus``), thread-safe."""

    def __init__(self, on_change: StatusSink | None = None) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], tuple[int, int, str]] = {}
        self._order = itertools.count()
        self._on_change = on_change

    def set(self, extension: str, key: str, text: str, priority: int) -> None:
        """Set (or with ``text == ''`` remove) ``extension``'s entry ``key``; tell the sink."""
        with self._lock:
            if text:
                old = self._items.get((extension, key))
                self._items[(extension, key)] = (priority, old[1] if old else next(self._order), text)
            else:
                self._items.pop((extension, key), None)
            items = self._snapshot()
            if self._on_change is not None:
                self._on_change(items)

    def items(self) -> list[tuple[str, str, str]]:
        """``(extension, key, text)``, highest priority first."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> list[tuple[str, str, str]]:
        ordered = sorted(self._items.items(), key=lambda kv: (-kv[1][0], kv[1][1]))
        return [(ext, key, text) for (ext, key), (_, _, text) in ordered]


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

    # kit's ctx API (ext_sdk.hostcalls has each call's contract; argument maps are already checked)
    def prompt(self, extension: str, kind: str, args: dict[str, Any]) -> dict[str, Any]:
        """Ask the user (``kind``: ``select``/``confirm``/``input``, the call's arguments)."""

    def set_status(self, extension: str, key: str, text: str, priority: int) -> None:
        """Set or remove a status line entry."""

    def agent_call(self, extension: str, method: str, args: dict[str, Any]) -> Any:
        """Every agent call of the ctx API (``compact``, ``complete``, ``get_tools``...): its value."""


#: Host calls answered by :meth:`HostServices.agent_call` (the rest have their own method or are the
#: router's own: state, options, custom events).
AGENT_CALLS: frozenset[str] = frozenset({
    "get_session_usage", "get_context_stats", "is_idle", "abort", "cancel_and_send", "compact", "new_session",
    "complete", "spawn_subagent", "subagent_status", "kill_subagent", "get_tools", "set_active_tools",
    "get_models", "get_model_capabilities", "get_tree_node", "get_current_branch", "get_children",
    "navigate_to", "summarize_branch",
})


class LocalServices:
    """Default services: stderr prints, in-memory entries, no agent."""

    def __init__(self, out: TextIO | None = None, prompts: PromptUI | None = None,
                 on_status: StatusSink | None = None) -> None:
        self._out = out
        self.prompts: PromptUI = prompts or HeadlessPrompts()
        #: The status line set by extensions.
        self.status = StatusLine(on_status)
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

    def prompt(self, extension: str, kind: str, args: dict[str, Any]) -> dict[str, Any]:
        return ask(self.prompts, extension, kind, args)

    def set_status(self, extension: str, key: str, text: str, priority: int) -> None:
        self.status.set(extension, key, text, priority)

    def agent_call(self, extension: str, method: str, args: dict[str, Any]) -> Any:
        if method == "is_idle":
            return True
        raise NotAvailable(f"{method} is not available: this host runs no agent")


def ask(prompts: PromptUI, extension: str, kind: str, args: dict[str, Any]) -> dict[str, Any]:
    """Route one prompt call to ``prompts`` (``kind``: ``select``/``confirm``/``input``)."""
    if kind == "select":
        if not args["options"]:
            raise NotAvailable("prompt_select: no options to choose from")
        return prompts.select(extension, args["message"], list(args["options"]))
    if kind == "confirm":
        return prompts.confirm(extension, args["message"], bool(args.get("default") or False))
    return prompts.input(extension, args["message"], str(args.get("placeholder") or ""),
                         str(args.get("default") or ""))
