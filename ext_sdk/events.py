"""Every agent event an extension can subscribe to, defined once.

This module *is* the event vocabulary: kit's 34 agent events (its 37
``EventType`` constants minus the three TUI-only ones, ``thinking_level_change``,
``terminal_resize`` and ``turn_state_change``; ``tool_output`` included, which
kit forgot in ``AllEventTypes()``), one kit lacks (``before_model``: each model
call's request, or a synthetic answer instead of the call), plus custom events
between extensions (``custom:<name>``).

Nothing here is hand-listed twice. :data:`EVENTS` is derived by collecting
every :class:`EventSpec` defined at module level, and each event's **mode** is
derived from its result definition:

* no result → ``notify``: observers; the agent never waits for them;
* a :class:`Stop` rule → ``gate``: handlers run in order; the first result that
  matches the rule stops the chain (``tool_call`` block, ``input`` handled,
  ``before_fork``/``before_session_switch``/``before_compact`` cancel);
* only :class:`Chain` fields → ``chain``: each handler sees the payload as the
  previous handler left it.

A gate event may also chain (``input`` transforms its ``text``;
``before_compact`` passes a ``summary`` along) — the two rules compose: chained
fields are applied first, then the stop rule is checked.

The default failure policy is derived too: ``closed`` for gate events (a failed
gate blocks/cancels with a reason naming the extension), ``open`` for the rest.

:class:`Stop`, :class:`Chain` and :class:`EventSpec` are plain classes with
``__slots__`` and ``Final`` attributes (read-only for mypy), not dataclasses:
every extension process imports this module, and ``import dataclasses`` (it
imports ``inspect``, ``dis``, ``ast``, ``tokenize``) costs ~12 ms, each
``@dataclass`` some hundreds of µs more (issue 10; ``-X importtime``: this
module's own import went from 4.5 to 1.6 ms).
"""

from __future__ import annotations

import sys
from enum import StrEnum

from .schema import Any, Bool, Enum, Field, Float, Int, List, Str, Struct, Type

TYPE_CHECKING = False  # not typing's: ``import typing`` is ~3 ms of an extension's start-up
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "CONTEXT_MESSAGE",
    "CUSTOM_PREFIX",
    "EVENTS",
    "MODEL_PARAMS",
    "Chain",
    "EventSpec",
    "Mode",
    "Policy",
    "Stop",
    "StopReason",
    "custom_event_name",
    "is_custom",
    "spec_for",
]



class Mode(StrEnum):
    """How the results of an event's handlers combine (derived from its definition)."""

    #: Observers: no result; the agent never waits for them.
    NOTIFY = "notify"
    #: Handlers run in order; the first result matching the stop rule ends the chain.
    GATE = "gate"
    #: Each handler sees the payload as the previous one left it.
    CHAIN = "chain"


class Policy(StrEnum):
    """What a failed handler (timeout, crash, error, bad reply) does to its event."""

    #: Skip the handler; the event goes on.
    OPEN = "open"
    #: Stop the event (block/cancel) with a reason naming the extension.
    CLOSED = "closed"


class StopReason(StrEnum):
    """Why a turn ended (``agent_end.stop_reason``)."""

    #: The model answered without asking for more tools.
    COMPLETED = "completed"
    #: The user (or an extension's abort/steer) cancelled the turn.
    CANCELLED = "cancelled"
    #: An error ended the turn (provider, step limit, a handler failing closed outside ``input``).
    ERROR = "error"
    #: An ``input`` handler handled the prompt; the model was never called.
    HANDLED = "handled"


#: Prefix of custom inter-extension event names (``custom:<name>``).
CUSTOM_PREFIX: Final = "custom:"


class Stop:
    """A result with ``field == equals`` stops the handler chain."""

    __slots__ = ("equals", "field", "reason_field")

    #: Result field to look at.
    field: Final[str]
    #: Value that means "stop".
    equals: Final[object]
    #: Result field carrying the human reason, if any.
    reason_field: Final[str | None]

    def __init__(self, field: str, equals: object, reason_field: str | None = "reason") -> None:
        self.field = field
        self.equals = equals
        self.reason_field = reason_field

    def matches(self, result: dict[str, object]) -> bool:
        """Whether ``result`` asks to stop."""
        return result.get(self.field) == self.equals


class Chain:
    """Result fields that replace the same-named payload fields for the next handler.

    With ``when`` set to ``(field, value)``, the fields apply only when the
    result's ``field`` equals ``value`` (``input`` applies ``text`` only for
    ``action == "transform"``).
    """

    __slots__ = ("fields", "when")

    #: Payload fields a result may replace.
    fields: Final[tuple[str, ...]]
    #: Optional ``(result_field, value)`` condition.
    when: Final[tuple[str, object] | None]

    def __init__(self, fields: tuple[str, ...], when: tuple[str, object] | None = None) -> None:
        self.fields = fields
        self.when = when

    def apply(self, payload: dict[str, object], result: dict[str, object]) -> None:
        """Patch ``payload`` in place with the chained fields of ``result``."""
        if self.when is not None and result.get(self.when[0]) != self.when[1]:
            return
        for name in self.fields:
            value = result.get(name)
            if value is not None:
                payload[name] = value


class EventSpec:
    """The definition of one event: payload, optional result, and how results combine.

    ``ValueError`` at construction when the rules do not fit the result (module doc).
    """

    __slots__ = ("chain", "doc", "exposes_content", "hot", "mode", "name", "payload", "result", "stop")

    #: Wire name (kit's event name).
    name: Final[str]
    #: When it fires and what a result does.
    doc: Final[str]
    #: Shape of the payload the host sends.
    payload: Final[Struct]
    #: Shape of a handler's result, or ``None`` for observers.
    result: Final[Struct | None]
    #: Stop rule (gate events).
    stop: Final[Stop | None]
    #: Chained fields (chain events, and gates that also chain).
    chain: Final[Chain | None]
    #: Whether the payload carries conversation content (prompts, messages,
    #: tool input/output); such events need the ``conversation`` permission.
    exposes_content: Final[bool]
    #: Hot-path events get the small default deadline.
    hot: Final[bool]
    #: Derived: notify / gate / chain.
    mode: Final[Mode]

    def __init__(self, name: str, doc: str, payload: Struct, result: Struct | None = None, stop: Stop | None = None,
                 chain: Chain | None = None, exposes_content: bool = False, hot: bool = False) -> None:
        if result is None and (stop or chain):
            raise ValueError(f"{name}: stop/chain rules need a result")
        if result is not None and not (stop or chain):
            raise ValueError(f"{name}: a result needs a stop or chain rule")
        for field in chain.fields if chain else ():
            if field not in payload.fields or field not in result.fields:  # type: ignore[union-attr]
                raise ValueError(f"{name}: chained field {field!r} must be in payload and result")
        self.name = name
        self.doc = doc
        self.payload = payload
        self.result = result
        self.stop = stop
        self.chain = chain
        self.exposes_content = exposes_content
        self.hot = hot
        self.mode = Mode.NOTIFY if result is None else Mode.GATE if stop else Mode.CHAIN

    @property
    def default_policy(self) -> Policy:
        """``closed`` for gate events, ``open`` otherwise."""
        return Policy.CLOSED if self.mode is Mode.GATE else Policy.OPEN


# --------------------------------------------------------------------------- shared shapes

_TOOL_CALL_INFO = Struct(
    "A tool call inside an assistant message (read-only).",
    id=Field(Str, "Tool call id."),
    name=Field(Str, "Tool name."),
    arguments=Field(Str, "Arguments as a JSON string."),
)

#: kit's ``ContextMessage`` extended: ``index >= 0`` reuses original message
#: ``index`` (tool calls, reasoning and attachments kept) and, if ``content``
#: differs from its text, replaces only the text; ``index == -1`` makes a new
#: text-only message from ``role`` and ``content``.
CONTEXT_MESSAGE: Final = Struct(
    "One message of the context window.",
    index=Field(Int, "Position in the original window, or -1 for a new message."),
    role=Field(Enum("system", "user", "assistant", "tool"), "Message role."),
    content=Field(Str, "Text content."),
    tool_calls=Field(List(_TOOL_CALL_INFO), "Tool calls of an assistant message (read-only).", required=False),
    tool_call_id=Field(Str, "For role 'tool': the call it answers (read-only).", required=False),
)
_MESSAGES = List(CONTEXT_MESSAGE)

_TOOL_IDENT: dict[str, Field | Type] = {
    "tool_call_id": Field(Str, "Id of the tool call."),
    "tool_name": Field(Str, "Tool name."),
    "tool_kind": Field(Enum("execute", "edit", "read", "search", "agent", "other"), "What kind of tool."),
}

_TOKENS: dict[str, Field | Type] = {
    "input_tokens": Int,
    "output_tokens": Int,
    "cache_read_tokens": Int,
    "cache_write_tokens": Int,
}

#: Which subagent made a tool call (``tool_call``/``tool_result`` of a subagent reach the parent's handlers).
_SUBAGENT_FIELD = Field(
    Struct("The subagent that made the call.", id=Field(Str, "Its id (the subagent_* events' tool_call_id)."),
           task=Field(Str, "Its task.")),
    "Set when a subagent made the call (absent for the agent's own calls).",
    required=False,
)

#: One tool call of a synthetic answer (``before_model``).
_SYNTHETIC_CALL = Struct(
    "A tool call of a synthetic answer.",
    id=Field(Str, "Tool call id ('' = one is made up).", required=False),
    name=Field(Str, "Tool name."),
    arguments=Field(Str, "Arguments as a JSON string."),
)
_SYNTHETIC = Struct(
    "An answer that replaces the model call.",
    content=Field(Str, "Assistant text.", required=False),
    tool_calls=Field(List(_SYNTHETIC_CALL), "Tool calls to run.", required=False),
)
#: The provider parameters an extension sees and may set (``before_model``); others (keys, endpoints) never
#: leave the host.
MODEL_PARAMS: Final = Struct(
    "Provider parameters of one model call (absent = the provider's default).",
    temperature=Field(Float, required=False),
    top_p=Field(Float, required=False),
    max_tokens=Field(Int, required=False),
    seed=Field(Int, required=False),
    stop=Field(List(Str), required=False),
    reasoning_effort=Field(Str, required=False),
)
_TOOL_CHOICE = Field(
    Str, "'auto', 'none', 'required', or a tool name the model must call.", required=False
)

_CANCEL_RESULT = Struct(
    cancel=Field(Bool, "True cancels the operation.", required=False),
    reason=Field(Str, "Why (shown to the user).", required=False),
)

# --------------------------------------------------------------------------- tool events

TOOL_CALL = EventSpec(
    "tool_call",
    "Before any tool runs (built-in or extension). A handler can block it; the model then "
    "gets 'Error: <reason>' instead of the tool's output.",
    Struct(
        **_TOOL_IDENT,
        input=Field(Str, "Arguments as a JSON string."),
        parsed_args=Field(Any, "Arguments parsed, or null if they are not valid JSON.", required=False),
        source=Field(Str, "Who asked for the call ('llm')."),
        subagent=_SUBAGENT_FIELD,
    ),
    result=Struct(
        block=Field(Bool, "True blocks the call.", required=False),
        reason=Field(Str, "Why it was blocked.", required=False),
    ),
    stop=Stop("block", True),
    exposes_content=True,
    hot=True,
)
TOOL_CALL_INPUT_START = EventSpec(
    "tool_call_input_start", "The model starts streaming a tool call's arguments.", Struct(**_TOOL_IDENT), hot=True
)
TOOL_CALL_INPUT_DELTA = EventSpec(
    "tool_call_input_delta",
    "One streamed fragment of a tool call's arguments.",
    Struct(tool_call_id=Str, delta=Field(Str, "Argument fragment.")),
    exposes_content=True,
    hot=True,
)
TOOL_CALL_INPUT_END = EventSpec(
    "tool_call_input_end", "Argument streaming of a tool call finished.", Struct(tool_call_id=Str), hot=True
)
TOOL_EXECUTION_START = EventSpec(
    "tool_execution_start", "Just before a tool runs (after tool_call allowed it).", Struct(**_TOOL_IDENT), hot=True
)
TOOL_EXECUTION_END = EventSpec(
    "tool_execution_end",
    "Just after a tool ran.",
    Struct(**_TOOL_IDENT, is_error=Bool, duration_ms=Int),
    hot=True,
)
TOOL_OUTPUT = EventSpec(
    "tool_output",
    "A chunk of streamed tool output (e.g. bash stdout/stderr).",
    Struct(**_TOOL_IDENT, chunk=Str, is_stderr=Bool),
    exposes_content=True,
    hot=True,
)
TOOL_RESULT = EventSpec(
    "tool_result",
    "After a tool ran, before its result reaches the model. Each handler sees the result as the "
    "previous one left it and may replace content and/or is_error.",
    Struct(
        **_TOOL_IDENT,
        input=Field(Str, "Arguments as a JSON string."),
        content=Field(Str, "The tool's output text."),
        is_error=Bool,
        metadata=Field(Str, "Tool metadata as a JSON string."),
        subagent=_SUBAGENT_FIELD,
    ),
    result=Struct(content=Field(Str, required=False), is_error=Field(Bool, required=False)),
    chain=Chain(("content", "is_error")),
    exposes_content=True,
    hot=True,
)

# --------------------------------------------------------------------------- input and turn

INPUT = EventSpec(
    "input",
    "A user prompt, before the turn starts. 'transform' replaces the text for the next handler "
    "and the model; 'handled' stops the turn (the prompt never reaches the model).",
    Struct(text=Str, source=Field(Enum("interactive", "cli", "script", "queue", "extension"), "Where it came from.")),
    result=Struct(
        action=Field(Enum("continue", "transform", "handled"), "What to do with the prompt."),
        text=Field(Str, "New text (with action 'transform').", required=False),
        reason=Field(Str, "Why it was handled (with action 'handled').", required=False),
    ),
    stop=Stop("action", "handled"),
    chain=Chain(("text",), when=("action", "transform")),
    exposes_content=True,
)
BEFORE_AGENT_START = EventSpec(
    "before_agent_start",
    "Before the model is called for a turn. A handler may replace the system prompt and the text "
    "injected before the prompt; each handler sees the values the previous one left.",
    Struct(
        prompt=Str,
        system_prompt=Field(Str, "System prompt for this turn."),
        inject_text=Field(Str, "Text injected as a user message before the prompt ('' = none)."),
    ),
    result=Struct(inject_text=Field(Str, required=False), system_prompt=Field(Str, required=False)),
    chain=Chain(("inject_text", "system_prompt")),
    exposes_content=True,
)
AGENT_START = EventSpec("agent_start", "A turn started.", Struct(prompt=Str), exposes_content=True)
AGENT_END = EventSpec(
    "agent_end",
    "A turn ended, with kit's per-turn aggregates.",
    Struct(
        response=Str,
        stop_reason=Enum(*StopReason),
        tool_call_count=Int,
        tool_names=List(Str),
        llm_call_count=Int,
        input_tokens_delta=Int,
        output_tokens_delta=Int,
        cache_read_tokens_delta=Int,
        cache_write_tokens_delta=Int,
        cost_delta=Field(Float, "USD; null when the cost of some call is unknown.", required=False),
        duration_ms=Int,
    ),
    exposes_content=True,
)

# --------------------------------------------------------------------------- messages

MESSAGE_START = EventSpec("message_start", "The assistant message starts streaming.", Struct(), hot=True)
MESSAGE_UPDATE = EventSpec(
    "message_update", "One streamed text chunk.", Struct(chunk=Str), exposes_content=True, hot=True
)
MESSAGE_END = EventSpec(
    "message_end", "The assistant message is complete.", Struct(content=Str), exposes_content=True, hot=True
)

# --------------------------------------------------------------------------- session

SESSION_START = EventSpec("session_start", "A session started or was resumed.", Struct(session_id=Str))
SESSION_SHUTDOWN = EventSpec("session_shutdown", "The session is closing.", Struct(reason=Str))
MODEL_CHANGE = EventSpec(
    "model_change",
    "The model was switched.",
    Struct(new_model=Str, previous_model=Str, source=Enum("user", "extension", "config")),
)
CONTEXT_PREPARE = EventSpec(
    "context_prepare",
    "Once per turn, before the model is called: the whole context window. A result replaces it.",
    Struct(messages=_MESSAGES),
    result=Struct(messages=Field(_MESSAGES, required=False)),
    chain=Chain(("messages",)),
    exposes_content=True,
    hot=True,
)
BEFORE_FORK = EventSpec(
    "before_fork",
    "Before the session tree is branched at an entry. A handler can cancel the fork.",
    Struct(target_id=Str, is_user_message=Bool, user_text=Str),
    result=_CANCEL_RESULT,
    stop=Stop("cancel", True),
    exposes_content=True,
)
BEFORE_SESSION_SWITCH = EventSpec(
    "before_session_switch",
    "Before a new session is started or another one switched to. A handler can cancel it.",
    Struct(reason=Enum("new", "clear", "switch"), initial_prompt=Str),
    result=_CANCEL_RESULT,
    stop=Stop("cancel", True),
)
BEFORE_COMPACT = EventSpec(
    "before_compact",
    "Before compaction, manual or automatic. A handler can cancel it, or supply the summary "
    "(passed on to later handlers; a non-empty summary replaces the model's).",
    Struct(
        estimated_tokens=Int,
        context_limit=Int,
        usage_percent=Float,
        message_count=Int,
        is_automatic=Bool,
        summary=Field(Str, "Summary supplied by an earlier handler ('' = none)."),
    ),
    result=Struct(
        cancel=Field(Bool, required=False),
        reason=Field(Str, required=False),
        summary=Field(Str, required=False),
    ),
    stop=Stop("cancel", True),
    chain=Chain(("summary",)),
)

# --------------------------------------------------------------------------- subagents

SUBAGENT_START = EventSpec(
    "subagent_start", "A subagent started.", Struct(tool_call_id=Str, task=Str), exposes_content=True
)
SUBAGENT_CHUNK = EventSpec(
    "subagent_chunk",
    "One event from a running subagent.",
    Struct(
        tool_call_id=Str,
        task=Str,
        chunk_type=Enum(
            "text", "reasoning", "tool_call", "tool_result", "tool_execution_start", "tool_execution_end",
            "turn_start", "turn_end",
        ),
        content=Str,
        tool_name=Str,
        tool_args=Str,
        tool_result=Str,
        is_error=Bool,
    ),
    exposes_content=True,
    hot=True,
)
SUBAGENT_END = EventSpec(
    "subagent_end",
    "A subagent finished.",
    Struct(tool_call_id=Str, task=Str, response=Str, error_msg=Field(Str, "'' when it succeeded (kit's name).")),
    exposes_content=True,
)

# --------------------------------------------------------------------------- steps and stream

STEP_START = EventSpec("step_start", "One model call inside a turn starts.", Struct(step_number=Int), hot=True)
STEP_FINISH = EventSpec(
    "step_finish",
    "One model call finished.",
    Struct(step_number=Int, has_tool_calls=Bool, finish_reason=Str, **_TOKENS),
    hot=True,
)
REASONING_START = EventSpec("reasoning_start", "The model starts reasoning.", Struct(id=Str), hot=True)
WARNINGS = EventSpec("warnings", "The provider returned warnings.", Struct(warnings=List(Str)))
SOURCE = EventSpec(
    "source", "The model cited a source.", Struct(source_type=Str, id=Str, url=Str, title=Str)
)
ERROR = EventSpec("error", "An agent-level error (as a string).", Struct(error=Str))
RETRY = EventSpec("retry", "A provider call is retried.", Struct(attempt=Int, error=Str))
PREPARE_STEP = EventSpec(
    "prepare_step",
    "Between model calls of one turn: the window for the next call, the tool choice and the active "
    "tools. A result replaces them for that call (tool choice and active tools: kit hides the SDK's).",
    Struct(
        step_number=Int,
        messages=_MESSAGES,
        tool_choice=_TOOL_CHOICE,
        active_tools=Field(List(Str), "Tools offered to the model for this call."),
    ),
    result=Struct(
        messages=Field(_MESSAGES, required=False),
        tool_choice=_TOOL_CHOICE,
        active_tools=Field(List(Str), "Offer only these (names of the agent's tools).", required=False),
    ),
    chain=Chain(("messages", "tool_choice", "active_tools")),
    exposes_content=True,
    hot=True,
)
BEFORE_MODEL = EventSpec(
    "before_model",
    "Before each model call of a turn (after prepare_step): the whole request. A result changes it "
    "(messages, tools, tool_choice, params such as temperature and max_tokens), or answers it with "
    "'response': the provider is not called (no llm_usage), and the answer is used as the model's.",
    Struct(
        step_number=Int,
        model=Str,
        messages=_MESSAGES,
        tools=Field(List(Str), "Tools offered (names; only the agent's tools may be named)."),
        tool_choice=_TOOL_CHOICE,
        params=Field(MODEL_PARAMS, "Provider parameters of this call."),
        response=Field(_SYNTHETIC, "A synthetic answer set by an earlier handler.", required=False),
    ),
    result=Struct(
        messages=Field(_MESSAGES, required=False),
        tools=Field(List(Str), required=False),
        tool_choice=_TOOL_CHOICE,
        params=Field(MODEL_PARAMS, "Replaces the parameters.", required=False),
        response=Field(_SYNTHETIC, "Answer instead of calling the model.", required=False),
    ),
    chain=Chain(("messages", "tools", "tool_choice", "params", "response")),
    exposes_content=True,
    hot=True,
)
LLM_USAGE = EventSpec(
    "llm_usage",
    "After each provider call: tokens and cost (USD; null when the model's price is unknown).",
    Struct(
        **_TOKENS,
        cost=Field(Float, required=False),
        model=Str,
        provider=Str,
        request_id=Str,
        step_number=Int,
        finish_reason=Str,
    ),
)

# --------------------------------------------------------------------------- custom events

#: Payload of every ``custom:<name>`` event.
CUSTOM_PAYLOAD: Final = Struct(
    "A custom event emitted by an extension (ctx.emit) or the host.",
    name=Field(Str, "Custom event name, without the 'custom:' prefix."),
    data=Field(Any, "Any safe value.", required=False),
    source=Field(Str, "Name of the emitting extension, or 'host'."),
)
_CUSTOM_SPEC: Final = EventSpec("custom", "Custom event between extensions.", CUSTOM_PAYLOAD)


def is_custom(name: str) -> bool:
    """Whether ``name`` is a custom event name (``custom:<name>``)."""
    return name.startswith(CUSTOM_PREFIX) and len(name) > len(CUSTOM_PREFIX)


def custom_event_name(name: str) -> str:
    """The wire event name for custom event ``name``."""
    return name if name.startswith(CUSTOM_PREFIX) else CUSTOM_PREFIX + name


def _collect() -> dict[str, EventSpec]:
    module = sys.modules[__name__]
    found = {v.name: v for k, v in vars(module).items() if isinstance(v, EventSpec) and not k.startswith("_")}
    return dict(sorted(found.items()))


#: Every agent event by name, derived from the definitions above.
EVENTS: Final[dict[str, EventSpec]] = _collect()


def spec_for(name: str) -> EventSpec | None:
    """The spec for an agent event or a ``custom:<name>`` event; ``None`` if unknown."""
    spec = EVENTS.get(name)
    if spec is None and is_custom(name):
        return _CUSTOM_SPEC
    return spec
