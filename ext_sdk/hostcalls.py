"""Host calls: everything a handler can ask of the host through ``ctx``, defined once.

Each :class:`HostCall` names its arguments, its result and the permission
group it needs. The host's handler table and the SDK's ``Context`` methods
are both checked against :data:`HOST_CALLS` by tests, so neither can drift.

Permission groups:

* ``ui``, ``state``, ``events`` — harmless; always granted.
* ``session`` — read and append session entries.
* ``conversation`` — read messages; also needed to subscribe to events whose
  payload carries conversation content (``EventSpec.exposes_content``).
* ``agent`` — steer the agent: queue messages, switch models.

A call is only valid while its extension handles an event: the envelope
carries the ``event_id`` being handled and the host answers calls for any
other id with an error (the event already timed out), never late side effects.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Final

from .events import CONTEXT_MESSAGE
from .schema import Any, Enum, Field, Int, List, Str, Struct, Type

__all__ = ["ALWAYS_GRANTED", "HOST_CALLS", "PERMISSIONS", "HostCall"]

#: Every permission an extension can ask for.
PERMISSIONS: Final = ("ui", "state", "events", "session", "conversation", "agent")
#: Permissions granted without asking.
ALWAYS_GRANTED: Final = frozenset({"ui", "state", "events"})


@dataclass(frozen=True, slots=True)
class HostCall:
    """One method of the host API."""

    #: Wire method name (also the ``ctx`` method name).
    name: str
    #: What it does.
    doc: str
    #: Permission group needed.
    permission: str
    #: Argument map.
    args: Struct
    #: Shape of the returned value.
    result: Type


_ENTRY = Struct(id=Str, type=Str, data=Any, timestamp=Field(Str, "RFC 3339 UTC."))
_NONE = Any

PRINT = HostCall(
    "print",
    "Show text to the user (level 'info', 'error' or 'plain').",
    "ui",
    Struct(text=Str, level=Enum("plain", "info", "error")),
    _NONE,
)
GET_STATE = HostCall(
    "get_state", "Value stored under key in this extension's namespace, or null.", "state", Struct(key=Str), Any
)
SET_STATE = HostCall(
    "set_state",
    "Store a safe value under key (written to the session's state sidecar before the call returns).",
    "state",
    Struct(key=Str, value=Any),
    _NONE,
)
DELETE_STATE = HostCall("delete_state", "Remove key.", "state", Struct(key=Str), _NONE)
LIST_STATE = HostCall("list_state", "All keys of this extension, sorted.", "state", Struct(), List(Str))
APPEND_ENTRY = HostCall(
    "append_entry",
    "Append an extension entry to the session; returns its id.",
    "session",
    Struct(type=Str, data=Any),
    Str,
)
GET_ENTRIES = HostCall(
    "get_entries", "This extension's session entries of a type, oldest first.", "session", Struct(type=Str),
    List(_ENTRY),
)
EMIT = HostCall(
    "emit",
    "Emit custom event 'custom:<name>' to subscribed extensions (delivered as notify events).",
    "events",
    Struct(name=Str, data=Any),
    Int,
)
GET_MESSAGES = HostCall(
    "get_messages", "The current context window.", "conversation", Struct(), List(CONTEXT_MESSAGE)
)
SEND_MESSAGE = HostCall(
    "send_message",
    "Queue a user message: injected between steps while a turn runs, else starts the next turn.",
    "agent",
    Struct(text=Str),
    _NONE,
)
SET_MODEL = HostCall("set_model", "Switch the model (fires model_change).", "agent", Struct(model=Str), _NONE)
GET_INFO = HostCall(
    "get_info",
    "Session id, session path, working directory and model.",
    "ui",
    Struct(),
    Struct(session_id=Str, session_path=Str, cwd=Str, model=Str),
)


def _collect() -> dict[str, HostCall]:
    module = sys.modules[__name__]
    return {v.name: v for v in vars(module).values() if isinstance(v, HostCall)}


#: Every host call by name, derived from the definitions above.
HOST_CALLS: Final[dict[str, HostCall]] = _collect()
