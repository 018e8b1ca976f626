"""Script files for the offline ``scripted`` provider: the format, parsed and validated.

Plain Python (no litellm). :mod:`host.agent.script_player` decides, call by
call, which step the model "says" next, and :mod:`host.agent.scripted_provider`
turns steps into real litellm streaming chunks. The format is documented for
users in ``docs/scripted-provider.md``; the short version::

    {"turns": [                                   # or just the list of turns
       [ {"text": "Let me look.", "tool_calls": [{"name": "read", "arguments": {"path": "a.txt"}}]},
         {"expect": {"last_role": "tool"}, "text": "It says hello."} ],
       [ {"error": "RateLimitError", "times": 2},
         {"text": "Second turn, after two rate limits."} ]
     ],
     "chunk_size": 4, "end_text": "(script ended)", "strict_turns": true,
     "pricing": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}

Parsing contract: unknown keys and wrong types are errors, never ignored;
every :class:`ScriptError` names the file and the place (``turn 2, step 1,
usage``). Token counts a step leaves out are estimated deterministically from
text lengths (:func:`resolve_usage`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

from .errors import ScriptError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_END_TEXT",
    "DEFAULT_PRICING",
    "ERROR_TYPES",
    "ErrorStep",
    "Expect",
    "MessageStep",
    "Pricing",
    "Script",
    "ScriptedToolCall",
    "Step",
    "StepUsage",
    "estimate_tokens",
    "fragments",
    "load_script",
    "parse_script",
    "resolve_usage",
    "searchable_text",
]

#: Characters per streamed fragment of text, reasoning and tool arguments.
DEFAULT_CHUNK_SIZE: Final = 4
#: What the model says once the script has no more steps.
DEFAULT_END_TEXT: Final = "(script ended)"

#: litellm exception class name → the HTTP status it carries. An error step's
#: ``error`` must be one of these names.
ERROR_TYPES: Final[Mapping[str, int]] = {
    "APIConnectionError": 500,
    "AuthenticationError": 401,
    "BadGatewayError": 502,
    "BadRequestError": 400,
    "ContentPolicyViolationError": 400,
    "ContextWindowExceededError": 400,
    "InternalServerError": 500,
    "NotFoundError": 404,
    "PermissionDeniedError": 403,
    "RateLimitError": 429,
    "ServiceUnavailableError": 503,
    "Timeout": 408,
}

_FINISH_REASONS: Final = ("stop", "tool_calls", "length", "content_filter")
_ROLES: Final = ("system", "user", "assistant", "tool")


@dataclass(frozen=True, slots=True)
class Pricing:
    """USD per token, registered with litellm for ``scripted/<model>`` so cost tracking works."""

    input_cost_per_token: float = 1e-6
    output_cost_per_token: float = 2e-6
    cache_read_input_token_cost: float = 1e-7
    cache_creation_input_token_cost: float = 1.25e-6

    def as_model_info(self, provider: str) -> dict[str, Any]:
        """The entry for ``litellm.register_model``."""
        return {
            "input_cost_per_token": self.input_cost_per_token,
            "output_cost_per_token": self.output_cost_per_token,
            "cache_read_input_token_cost": self.cache_read_input_token_cost,
            "cache_creation_input_token_cost": self.cache_creation_input_token_cost,
            "litellm_provider": provider,
            "mode": "chat",
            "max_input_tokens": 1_000_000,
            "max_output_tokens": 100_000,
            "supports_function_calling": True,
            "supports_reasoning": True,
        }


#: Price used when a script does not say (1 $/M input, 2 $/M output).
DEFAULT_PRICING: Final = Pricing()


@dataclass(frozen=True, slots=True)
class ScriptedToolCall:
    """One tool call of a message step."""

    #: Tool name.
    name: str
    #: Arguments as the JSON text the model streams (may be deliberately invalid JSON).
    arguments: str
    #: Explicit id, or ``None`` for the deterministic ``call_<turn>_<step>_<i>``.
    id: str | None = None


@dataclass(frozen=True, slots=True)
class StepUsage:
    """Token counts a step reports; ``None`` fields are estimated from text lengths.

    ``input_tokens`` counts every prompt token, cache reads and writes included
    (OpenAI's convention, which litellm's cost calculation expects).
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Expect:
    """Conditions on the request a step receives (all must hold). ``None``/empty = not checked.

    "Text" of a message is its text content plus, for an assistant message, the
    name and arguments of each tool call (see :func:`searchable_text`).
    """

    #: Role of the last message.
    last_role: str | None = None
    #: Substrings that must all occur in the last message's text.
    last_contains: tuple[str, ...] = ()
    #: Substrings that must each occur in some message's text.
    any_contains: tuple[str, ...] = ()
    #: Substrings that must occur in no message's text.
    none_contains: tuple[str, ...] = ()
    #: Substrings that must all occur in the system message(s).
    system_contains: tuple[str, ...] = ()
    #: Exact number of messages.
    message_count: int | None = None
    #: Tool names that must be offered.
    tools_include: tuple[str, ...] = ()
    #: Tool names that must not be offered.
    tools_exclude: tuple[str, ...] = ()

    def problems(self, messages: Sequence[Mapping[str, Any]], tool_names: Sequence[str]) -> list[str]:
        """Every condition that does not hold, in words (empty when all hold)."""
        out: list[str] = []
        last = messages[-1] if messages else None
        last_role = str(last.get("role")) if last is not None else "(no messages)"
        last_text = searchable_text(last) if last is not None else ""
        if self.last_role is not None and last_role != self.last_role:
            out.append(f"expected the last message to have role {self.last_role!r}, got {last_role!r} "
                       f"({_preview(last_text)})")
        for needle in self.last_contains:
            if needle not in last_text:
                out.append(f"expected the last message (role {last_role!r}) to contain {needle!r}; "
                           f"it is {_preview(last_text)}")
        texts = [searchable_text(m) for m in messages]
        for needle in self.any_contains:
            if not any(needle in t for t in texts):
                out.append(f"expected some message to contain {needle!r}; none of {len(texts)} does")
        for needle in self.none_contains:
            hits = [i for i, t in enumerate(texts) if needle in t]
            if hits:
                out.append(f"expected no message to contain {needle!r}; message(s) {hits} do")
        system = "\n".join(searchable_text(m) for m in messages if m.get("role") == "system")
        for needle in self.system_contains:
            if needle not in system:
                out.append(f"expected the system prompt to contain {needle!r}; it is {_preview(system)}")
        if self.message_count is not None and len(messages) != self.message_count:
            out.append(f"expected {self.message_count} messages, got {len(messages)}")
        offered = set(tool_names)
        missing = [t for t in self.tools_include if t not in offered]
        if missing:
            out.append(f"expected tools {missing} to be offered; offered: {sorted(offered)}")
        present = [t for t in self.tools_exclude if t in offered]
        if present:
            out.append(f"expected tools {present} not to be offered")
        return out


@dataclass(frozen=True, slots=True)
class MessageStep:
    """The model answers: reasoning, then text, then tool calls, streamed in fragments."""

    text: tuple[str, ...] = ()
    reasoning: tuple[str, ...] = ()
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    usage: StepUsage = field(default_factory=StepUsage)
    #: ``None`` → ``tool_calls`` when there are tool calls, else ``stop``.
    finish_reason: str | None = None
    warnings: tuple[str, ...] = ()
    #: ``(url, title)`` citations, sent as OpenAI ``url_citation`` annotations.
    sources: tuple[tuple[str, str], ...] = ()
    chunk_size: int | None = None
    chunk_delay_ms: int = 0
    expect: Expect = field(default_factory=Expect)

    @property
    def full_text(self) -> str:
        """All text fragments joined."""
        return "".join(self.text)

    @property
    def full_reasoning(self) -> str:
        """All reasoning fragments joined."""
        return "".join(self.reasoning)

    @property
    def resolved_finish_reason(self) -> str:
        """The finish reason this step reports."""
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"


@dataclass(frozen=True, slots=True)
class ErrorStep:
    """The call fails with litellm exception ``error`` (a name of :data:`ERROR_TYPES`)."""

    error: str
    message: str = ""
    #: How many consecutive calls fail before the step is consumed.
    times: int = 1
    #: Streaming calls first stream this text, then fail mid-stream ('' = fail at call time).
    after_text: str = ""
    expect: Expect = field(default_factory=Expect)

    @property
    def status_code(self) -> int:
        """The HTTP status the error carries."""
        return ERROR_TYPES[self.error]


Step = MessageStep | ErrorStep


@dataclass(frozen=True, slots=True)
class Script:
    """A parsed, validated script."""

    #: Where it was loaded from (used in every error message).
    source: str
    turns: tuple[tuple[Step, ...], ...]
    chunk_size: int = DEFAULT_CHUNK_SIZE
    end_text: str = DEFAULT_END_TEXT
    strict_turns: bool = True
    #: ``None`` = leave ``scripted/<model>`` out of the cost map (its cost is unknown).
    pricing: Pricing | None = DEFAULT_PRICING

    @property
    def step_count(self) -> int:
        """Total number of steps."""
        return sum(len(t) for t in self.turns)


# --------------------------------------------------------------------------- text helpers


def searchable_text(message: Mapping[str, Any]) -> str:
    """The text of an OpenAI-format message: its text content, plus tool calls' names and arguments."""
    content = message.get("content")
    parts: list[str] = []
    if isinstance(content, str):
        parts.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
    for call in message.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(fn, Mapping):
            parts.append(f"{fn.get('name', '')} {fn.get('arguments', '')}")
    return "\n".join(parts)


def _preview(text: str, limit: int = 200) -> str:
    flat = text.replace("\n", "\\n")
    return repr(flat if len(flat) <= limit else flat[:limit] + "…")


def estimate_tokens(text: str) -> int:
    """A deterministic token estimate: one token per 4 characters, at least 1."""
    return max(1, (len(text) + 3) // 4)


def fragments(text: str, size: int) -> list[str]:
    """``text`` cut into pieces of ``size`` characters (none for empty text)."""
    return [text[i:i + size] for i in range(0, len(text), max(1, size))]


def resolve_usage(step: MessageStep, messages: Sequence[Mapping[str, Any]]) -> StepUsage:
    """The step's usage with missing counts estimated from the request and the answer."""
    usage = step.usage
    inp = usage.input_tokens
    if inp is None:
        inp = estimate_tokens("".join(searchable_text(m) for m in messages))
        inp = max(inp, usage.cache_read_tokens + usage.cache_write_tokens)
    out = usage.output_tokens
    if out is None:
        answer = step.full_text + step.full_reasoning + "".join(c.name + c.arguments for c in step.tool_calls)
        out = estimate_tokens(answer)
    return StepUsage(inp, out, usage.cache_read_tokens, usage.cache_write_tokens)


# --------------------------------------------------------------------------- parsing


class _Reader:
    """Type-checked access to one JSON object, with error messages that say where."""

    def __init__(self, source: str, where: str, obj: object, known: Sequence[str]) -> None:
        self.source = source
        self.where = where
        if not isinstance(obj, dict):
            self.fail(f"expected an object, got {type(obj).__name__}")
        self.obj: dict[str, Any] = obj
        unknown = sorted(set(self.obj) - set(known))
        if unknown:
            self.fail(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")

    def fail(self, problem: str) -> NoReturn:
        raise ScriptError(self.source, self.where, problem)

    def has(self, key: str) -> bool:
        return key in self.obj

    def string(self, key: str, default: str = "") -> str:
        value = self.obj.get(key, default)
        if not isinstance(value, str):
            self.fail(f"{key!r} must be a string")
        return value

    def optional_string(self, key: str) -> str | None:
        return self.string(key) if key in self.obj and self.obj[key] is not None else None

    def integer(self, key: str, default: int | None, minimum: int = 0) -> int | None:
        value = self.obj.get(key, default)
        if value is None:
            return None
        if type(value) is not int or value < minimum:
            self.fail(f"{key!r} must be an integer >= {minimum}")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.obj.get(key, default)
        if type(value) not in (int, float) or value < 0:
            self.fail(f"{key!r} must be a number >= 0")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.obj.get(key, default)
        if type(value) is not bool:
            self.fail(f"{key!r} must be true or false")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        """A string or a list of strings."""
        value = self.obj.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        self.fail(f"{key!r} must be a string or a list of strings")

    def chunks(self, key: str) -> tuple[str, ...]:
        """A string (cut later) or an explicit list of non-empty fragments."""
        value = self.obj.get(key)
        if value is None or value == "":
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
            return tuple(value)
        self.fail(f"{key!r} must be a string or a non-empty list of non-empty strings")

    def sub(self, key: str, known: Sequence[str]) -> _Reader:
        return _Reader(self.source, f"{self.where}, {key}" if self.where else key, self.obj.get(key, {}), known)


_STEP_KEYS: Final = ("text", "reasoning", "tool_calls", "usage", "finish_reason", "warnings", "sources",
                     "chunk_size", "chunk_delay_ms", "expect", "note")
_ERROR_KEYS: Final = ("error", "message", "times", "after_text", "expect", "note")
_EXPECT_KEYS: Final = ("last_role", "last_contains", "any_contains", "none_contains", "system_contains",
                       "message_count", "tools_include", "tools_exclude")
_USAGE_KEYS: Final = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
_TOOL_KEYS: Final = ("name", "arguments", "id")
_PRICING_KEYS: Final = ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
                        "cache_creation_input_token_cost")
_TOP_KEYS: Final = ("turns", "chunk_size", "end_text", "strict_turns", "pricing", "note")


def _parse_expect(r: _Reader) -> Expect:
    if not r.has("expect"):
        return Expect()
    e = r.sub("expect", _EXPECT_KEYS)
    role = e.optional_string("last_role")
    if role is not None and role not in _ROLES:
        e.fail(f"'last_role' must be one of {', '.join(_ROLES)}")
    return Expect(
        last_role=role,
        last_contains=e.strings("last_contains"),
        any_contains=e.strings("any_contains"),
        none_contains=e.strings("none_contains"),
        system_contains=e.strings("system_contains"),
        message_count=e.integer("message_count", None),
        tools_include=e.strings("tools_include"),
        tools_exclude=e.strings("tools_exclude"),
    )


def _parse_tool_call(source: str, where: str, obj: object) -> ScriptedToolCall:
    r = _Reader(source, where, obj, _TOOL_KEYS)
    name = r.string("name")
    if not name:
        r.fail("'name' is required")
    if "arguments" not in r.obj:
        arguments = "{}"
    elif isinstance(r.obj["arguments"], str):
        arguments = r.obj["arguments"]
    elif isinstance(r.obj["arguments"], dict):
        arguments = json.dumps(r.obj["arguments"], ensure_ascii=False)
    else:
        r.fail("'arguments' must be an object (sent as JSON) or a string (sent as is)")
    return ScriptedToolCall(name, arguments, r.optional_string("id"))


def _parse_step(source: str, where: str, obj: object) -> Step:
    is_error = isinstance(obj, dict) and "error" in obj
    r = _Reader(source, where, obj, _ERROR_KEYS if is_error else _STEP_KEYS)
    expect = _parse_expect(r)
    if is_error:
        kind = r.string("error")
        if kind not in ERROR_TYPES:
            r.fail(f"unknown error type {kind!r} (known: {', '.join(ERROR_TYPES)})")
        times = r.integer("times", 1, minimum=1)
        assert times is not None
        return ErrorStep(kind, r.string("message", f"scripted {kind}"), times, r.string("after_text"), expect)
    calls_raw = r.obj.get("tool_calls", [])
    if not isinstance(calls_raw, list):
        r.fail("'tool_calls' must be a list")
    calls = tuple(_parse_tool_call(source, f"{where}, tool_calls[{i}]", c) for i, c in enumerate(calls_raw))
    ids = [c.id for c in calls if c.id]
    if len(ids) != len(set(ids)):
        r.fail("tool call ids must be unique within a step")
    u = r.sub("usage", _USAGE_KEYS)
    usage = StepUsage(u.integer("input_tokens", None), u.integer("output_tokens", None),
                      u.integer("cache_read_tokens", 0) or 0, u.integer("cache_write_tokens", 0) or 0)
    if usage.input_tokens is not None and usage.cache_read_tokens + usage.cache_write_tokens > usage.input_tokens:
        u.fail("cache_read_tokens + cache_write_tokens cannot exceed input_tokens (input counts every prompt token)")
    finish = r.optional_string("finish_reason")
    if finish is not None and finish not in _FINISH_REASONS:
        r.fail(f"'finish_reason' must be one of {', '.join(_FINISH_REASONS)}")
    sources_raw = r.obj.get("sources", [])
    if not isinstance(sources_raw, list):
        r.fail("'sources' must be a list")
    sources: list[tuple[str, str]] = []
    for i, s in enumerate(sources_raw):
        sr = _Reader(source, f"{where}, sources[{i}]", s, ("url", "title"))
        if not sr.string("url"):
            sr.fail("'url' is required")
        sources.append((sr.string("url"), sr.string("title")))
    return MessageStep(
        text=r.chunks("text"),
        reasoning=r.chunks("reasoning"),
        tool_calls=calls,
        usage=usage,
        finish_reason=finish,
        warnings=r.strings("warnings"),
        sources=tuple(sources),
        chunk_size=r.integer("chunk_size", None, minimum=1),
        chunk_delay_ms=r.integer("chunk_delay_ms", 0) or 0,
        expect=expect,
    )


def parse_script(data: object, source: str = "<script>") -> Script:
    """Validate decoded JSON ``data`` and build a :class:`Script`; raises :class:`ScriptError`."""
    if isinstance(data, list):
        data = {"turns": data}
    top = _Reader(source, "", data, _TOP_KEYS)
    turns_raw = top.obj.get("turns")
    if not isinstance(turns_raw, list):
        top.fail("'turns' must be a list of turns (each a list of steps)")
    turns: list[tuple[Step, ...]] = []
    for t, turn in enumerate(turns_raw, 1):
        if not isinstance(turn, list) or not turn:
            raise ScriptError(source, f"turn {t}", "a turn must be a non-empty list of steps")
        turns.append(tuple(_parse_step(source, f"turn {t}, step {s}", step) for s, step in enumerate(turn, 1)))
    pricing: Pricing | None = DEFAULT_PRICING
    if "pricing" in top.obj:
        if top.obj["pricing"] is None:
            pricing = None
        else:
            p = top.sub("pricing", _PRICING_KEYS)
            pricing = Pricing(*(p.number(k, getattr(DEFAULT_PRICING, k)) for k in _PRICING_KEYS))
    chunk_size = top.integer("chunk_size", DEFAULT_CHUNK_SIZE, minimum=1)
    assert chunk_size is not None
    return Script(source, tuple(turns), chunk_size, top.string("end_text", DEFAULT_END_TEXT),
                  top.boolean("strict_turns", True), pricing)


def load_script(path: str | os.PathLike[str]) -> Script:
    """Read and validate a script file; raises :class:`ScriptError` naming the file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScriptError(source, "", f"cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScriptError(source, f"line {exc.lineno}, column {exc.colno}", f"invalid JSON: {exc.msg}") from None
    return parse_script(data, source)
