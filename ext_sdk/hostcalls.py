"""Host calls: everything a handler can ask of the host through ``ctx``, defined once.

Each :class:`HostCall` names its arguments, its result and the permission
group it needs. The host's handler table and the SDK's ``Context`` methods
are both checked against :data:`HOST_CALLS` by tests, so neither can drift.

Permission groups:

* ``ui``, ``state``, ``events`` — harmless; always granted: printing, the
  status line, prompts to the user, what is running (info, idle, tools,
  models), the extension's own state and options, custom events.
* ``session`` — read and append session entries; session usage and context
  statistics.
* ``conversation`` — read messages and the session tree (and summaries of
  it); also needed to subscribe to events whose payload carries conversation
  content (``EventSpec.exposes_content``).
* ``agent`` — act on the agent: queue messages, abort or steer a turn,
  switch models, compact, start a new session, navigate the tree, choose the
  active tools, spawn subagents (which run tools, each through the parent's
  ``tool_call``/``tool_result`` handlers).
* ``llm`` — model calls made for the extension at the session's expense
  (``complete``).

A call is only valid while its extension handles an event: the envelope
carries the ``event_id`` being handled and the host answers calls for any
other id with an error (the event already timed out), never late side effects.

:class:`HostCall` is a plain class with ``__slots__`` and ``Final`` attributes
(read-only for mypy), not a dataclass: every extension process imports this
module, and ``import dataclasses`` (it imports ``inspect``) costs ~12 ms of
its start-up (issue 10; ``-X importtime``: this module went from 2.1 to 0.8 ms).
"""

from __future__ import annotations

import sys

from .events import CONTEXT_MESSAGE
from .schema import Any, Bool, Enum, Field, Float, Int, List, Nil, Nullable, Str, Struct, Type

TYPE_CHECKING = False  # not typing's: ``import typing`` is ~3 ms of an extension's start-up
if TYPE_CHECKING:
    from typing import Final

__all__ = ["ALWAYS_GRANTED", "HOST_CALLS", "PERMISSIONS", "HostCall"]

#: Every permission an extension can ask for.
PERMISSIONS: Final = ("ui", "state", "events", "session", "conversation", "agent", "llm")
#: Permissions granted without asking.
ALWAYS_GRANTED: Final = frozenset({"ui", "state", "events"})


class HostCall:
    """One method of the host API. Read-only (``Final``: mypy refuses an assignment)."""

    __slots__ = ("args", "doc", "name", "permission", "result")

    #: Wire method name (also the ``ctx`` method name).
    name: Final[str]
    #: What it does.
    doc: Final[str]
    #: Permission group needed.
    permission: Final[str]
    #: Argument map.
    args: Final[Struct]
    #: Shape of the returned value.
    result: Final[Type]

    def __init__(self, name: str, doc: str, permission: str, args: Struct, result: Type) -> None:
        self.name = name
        self.doc = doc
        self.permission = permission
        self.args = args
        self.result = result


_ENTRY = Struct(id=Str, type=Str, data=Any, timestamp=Field(Str, "RFC 3339 UTC."))
_NONE = Nil()

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


# --------------------------------------------------------------------------- kit's ctx API

_OPT_STR = Field(Str, required=False)
_USAGE = Struct(
    total_input_tokens=Int,
    total_output_tokens=Int,
    total_cache_read_tokens=Int,
    total_cache_write_tokens=Int,
    total_cost=Field(Float, "USD; null when the cost of some call is unknown.", required=False),
    request_count=Field(Int, "Finished provider calls."),
)
GET_SESSION_USAGE = HostCall(
    "get_session_usage",
    "Tokens, cost and provider calls of this agent since it started (subagents, compactions and "
    "complete included).",
    "session",
    Struct(),
    _USAGE,
)
GET_CONTEXT_STATS = HostCall(
    "get_context_stats",
    "Estimated size of the context window the model receives next, against the model's limit.",
    "session",
    Struct(),
    Struct(estimated_tokens=Int, context_limit=Int, usage_percent=Float, message_count=Int),
)
IS_IDLE = HostCall("is_idle", "Whether no turn (compaction, fork) is running.", "ui", Struct(), Bool)
ABORT = HostCall(
    "abort", "Cancel the running turn (agent_end stop reason 'cancelled'); no-op when idle.", "agent",
    Struct(), _NONE,
)
RELOAD = HostCall(
    "reload",
    "Reload extension name ('' = this one) from its files, with no downtime, in the background (as "
    "`kithost ext reload`): the old version serves until the new one is ready; the result comes as the host's "
    "'reload' notice. Returns at once.",
    "agent",
    Struct(name=Str),
    _NONE,
)
CANCEL_AND_SEND = HostCall(
    "cancel_and_send",
    "Steer: cancel the running turn and queue text as the next prompt (a turn of its own).",
    "agent",
    Struct(text=Str),
    _NONE,
)
COMPACT = HostCall(
    "compact",
    "Compact the session now (before_compact fires); refused while a turn runs.",
    "agent",
    Struct(),
    Struct(compacted=Bool, reason=Field(Str, "Why not ('' when compacted)."), summary=Str),
)
NEW_SESSION = HostCall(
    "new_session",
    "Start a new session (before_session_switch may cancel it), optionally running a first prompt; "
    "refused while a turn runs.",
    "agent",
    Struct(prompt=Field(Str, "First prompt of the new session ('' = none).", required=False)),
    Struct(switched=Bool, reason=Str, session_path=Str),
)
_COMPLETE_MESSAGE = Struct(role=Enum("system", "user", "assistant"), content=Str)
COMPLETE = HostCall(
    "complete",
    "One model call made through the host (kit's Complete): reported as llm_usage (step_number 0) "
    "and counted in the running turn's agent_end.",
    "llm",
    Struct(
        prompt=Field(Str, "The user message (appended after messages)."),
        system=_OPT_STR,
        messages=Field(List(_COMPLETE_MESSAGE), "Earlier messages.", required=False),
        model=Field(Str, "Model ('' or absent = the session's).", required=False),
        max_tokens=Field(Int, required=False),
    ),
    Struct(text=Str, model=Str, input_tokens=Int, output_tokens=Int,
           cost=Field(Float, "USD; null when unknown.", required=False)),
)
_SUBAGENT_RESULT = Struct(
    id=Field(Str, "The subagent's id (subagent_* events carry it as tool_call_id)."),
    status=Enum("running", "completed", "cancelled", "error"),
    response=Str,
    error_msg=Field(Str, "'' when it succeeded (kit's name)."),
)
SPAWN_SUBAGENT = HostCall(
    "spawn_subagent",
    "Run a subagent for a task (parent's model, built-in tools; its tool calls go through the parent's "
    "tool_call/tool_result handlers; subagent_* events report it). blocking waits for its answer, "
    "else it runs in the background (subagent_status, kill_subagent).",
    "agent",
    Struct(task=Str, blocking=Field(Bool, "Wait for the answer (default true).", required=False),
           system_prompt=_OPT_STR),
    _SUBAGENT_RESULT,
)
SUBAGENT_STATUS = HostCall(
    "subagent_status", "A subagent spawned by this extension: running, or its result.", "agent",
    Struct(id=Str), _SUBAGENT_RESULT,
)
KILL_SUBAGENT = HostCall(
    "kill_subagent", "Cancel a running subagent spawned by this extension; false if it already ended.", "agent",
    Struct(id=Str), Bool,
)
_TOOL_INFO = Struct(name=Str, description=Str, source=Enum("builtin", "extension"), enabled=Bool)
GET_TOOLS = HostCall("get_tools", "Every tool of the agent and whether it is offered to the model.", "ui",
                     Struct(), List(_TOOL_INFO))
SET_ACTIVE_TOOLS = HostCall(
    "set_active_tools",
    "Offer only these tools to the model (empty = all); a call of another tool is answered "
    "'Error: tool <name> is currently disabled'.",
    "agent",
    Struct(names=List(Str)),
    _NONE,
)
_CAPABILITIES = Struct(
    model=Str,
    provider=Str,
    context_window=Int,
    max_output_tokens=Field(Int, "0 when unknown."),
    supports_tools=Bool,
    supports_reasoning=Bool,
    supports_vision=Bool,
    input_cost_per_token=Field(Float, "USD; null when unknown.", required=False),
    output_cost_per_token=Field(Float, "USD; null when unknown.", required=False),
    known=Field(Bool, "Whether the model is in the model map (else the values are defaults)."),
)
GET_MODELS = HostCall(
    "get_models",
    "Models that can be called now: the current one, then the model map's models whose provider's key is set.",
    "ui",
    Struct(),
    List(Struct(model=Str, provider=Str, context_window=Int, current=Bool)),
)
GET_MODEL_CAPABILITIES = HostCall(
    "get_model_capabilities", "What a model can do and costs ('' = the current model).", "ui",
    Struct(model=Field(Str, required=False)), _CAPABILITIES,
)
_TREE_NODE = Struct(
    id=Str,
    parent_id=Field(Str, "null for a root.", required=False),
    type=Field(Str, "message, extension, model_change, compaction, ..."),
    role=Field(Str, "For a message; '' otherwise."),
    content=Field(Str, "Text (tool calls as a summary; a compaction's summary)."),
    timestamp=Str,
    children=List(Str),
)
GET_TREE_NODE = HostCall("get_tree_node", "One entry of the session tree, or null.", "conversation",
                         Struct(id=Str), Nullable(_TREE_NODE))
GET_CURRENT_BRANCH = HostCall("get_current_branch", "The path root → leaf of the session tree.", "conversation",
                              Struct(), List(_TREE_NODE))
GET_CHILDREN = HostCall("get_children", "Ids of an entry's children ('' = the roots), in file order.",
                        "conversation", Struct(id=Str), List(Str))
NAVIGATE_TO = HostCall(
    "navigate_to",
    "Move the leaf to an entry (before_fork may cancel it); at a user message, before it. Refused while a "
    "turn runs.",
    "agent",
    Struct(id=Str),
    Struct(success=Bool, error=Str),
)
SUMMARIZE_BRANCH = HostCall(
    "summarize_branch",
    "A model-written summary of the branch entries from from_id to to_id (both included; '' = first/leaf).",
    "conversation",
    Struct(from_id=Str, to_id=Str),
    Str,
)
REGISTER_OPTION = HostCall(
    "register_option",
    "Declare an option with a default; returns its value (resolved like get_option).",
    "state",
    Struct(name=Str, default=Str, description=_OPT_STR),
    Str,
)
GET_OPTION = HostCall(
    "get_option",
    "An option's value: set_option at runtime, else KITHOST_OPT_<NAME> in the host's environment, else "
    "the config's [options], else the registered default; null if none.",
    "state",
    Struct(name=Str),
    Nullable(Str),
)
SET_OPTION = HostCall("set_option", "Set an option for the life of the host (runtime layer).", "state",
                      Struct(name=Str, value=Str), _NONE)
PROMPT_SELECT = HostCall(
    "prompt_select",
    "Ask the user to pick one option; cancelled when nobody can answer (headless).",
    "ui",
    Struct(message=Str, options=List(Str)),
    Struct(value=Str, index=Int, cancelled=Bool),
)
PROMPT_CONFIRM = HostCall(
    "prompt_confirm",
    "Ask the user yes or no; cancelled when nobody can answer (headless).",
    "ui",
    Struct(message=Str, default=Field(Bool, required=False)),
    Struct(value=Bool, cancelled=Bool),
)
PROMPT_INPUT = HostCall(
    "prompt_input",
    "Ask the user for a line of text; cancelled when nobody can answer (headless).",
    "ui",
    Struct(message=Str, placeholder=_OPT_STR, default=_OPT_STR),
    Struct(value=Str, cancelled=Bool),
)
SET_STATUS = HostCall(
    "set_status",
    "Show text in the status line under key (higher priority first); '' removes it.",
    "ui",
    Struct(key=Str, text=Str, priority=Field(Int, required=False)),
    _NONE,
)


def _collect() -> dict[str, HostCall]:
    module = sys.modules[__name__]
    return {v.name: v for v in vars(module).values() if isinstance(v, HostCall)}


#: Every host call by name, derived from the definitions above.
HOST_CALLS: Final[dict[str, HostCall]] = _collect()
