"""``Context`` (``ctx``): a handler's way to call the host, and ``EventData``.

Every ``Context`` method is one host call of :data:`ext_sdk.hostcalls.HOST_CALLS`
(a test keeps the two in step). Calls go through a ``Caller`` — the real
socket in an extension process, or :class:`ext_sdk.testing.FakeHost` in unit
tests. A call the host refuses raises :class:`HostCallError` with the host's
reason (e.g. a permission that was not granted).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Caller", "Context", "EventData", "HostCallError"]

#: ``caller(method, args) -> value``; raises :class:`HostCallError`.
Caller = Callable[[str, dict[str, Any]], Any]


class HostCallError(RuntimeError):
    """The host refused or failed a ``ctx`` call; the message is the host's reason."""


class EventData(dict[str, Any]):
    """An event payload: a plain dict that also allows ``event.field`` access."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"event has no field {name!r} (fields: {', '.join(self)})") from None


class Context:
    """Host API for handlers. Valid only while a handler runs."""

    __slots__ = ("_call", "event")

    def __init__(self, call: Caller, event: str = "") -> None:
        self._call = call
        #: Name of the event being handled.
        self.event = event

    # ui
    def print(self, text: str) -> None:
        """Show plain text to the user."""
        self._call("print", {"text": str(text), "level": "plain"})

    def info(self, text: str) -> None:
        """Show an informational message."""
        self._call("print", {"text": str(text), "level": "info"})

    def error(self, text: str) -> None:
        """Show an error message."""
        self._call("print", {"text": str(text), "level": "error"})

    def get_info(self) -> dict[str, str]:
        """``{session_id, session_path, cwd, model}``."""
        return self._call("get_info", {})  # type: ignore[no-any-return]

    # state
    def get_state(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        value = self._call("get_state", {"key": key})
        return default if value is None else value

    def set_state(self, key: str, value: Any) -> None:
        """Store a safe value; it is on disk when this returns and survives crashes."""
        self._call("set_state", {"key": key, "value": value})

    def delete_state(self, key: str) -> None:
        """Remove ``key`` (no error if absent)."""
        self._call("delete_state", {"key": key})

    def list_state(self) -> list[str]:
        """All keys of this extension."""
        return self._call("list_state", {})  # type: ignore[no-any-return]

    # session
    def append_entry(self, type: str, data: Any) -> str:  # noqa: A002 - kit's name
        """Append an entry to the session tree; returns its id."""
        return self._call("append_entry", {"type": type, "data": data})  # type: ignore[no-any-return]

    def get_entries(self, type: str) -> list[dict[str, Any]]:  # noqa: A002 - kit's name
        """This extension's entries of ``type``, oldest first."""
        return self._call("get_entries", {"type": type})  # type: ignore[no-any-return]

    # events
    def emit(self, name: str, data: Any = None) -> int:
        """Emit custom event ``name``; returns how many extensions it was queued for."""
        return self._call("emit", {"name": name, "data": data})  # type: ignore[no-any-return]

    # conversation / agent
    def get_messages(self) -> list[dict[str, Any]]:
        """The current context window as ``{index, role, content}`` maps."""
        return self._call("get_messages", {})  # type: ignore[no-any-return]

    def send_message(self, text: str) -> None:
        """Queue a user message (steers a running turn, or starts the next one)."""
        self._call("send_message", {"text": text})

    def set_model(self, model: str) -> None:
        """Switch the model."""
        self._call("set_model", {"model": model})
