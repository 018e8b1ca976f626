"""A script of the offline ``scripted`` provider, in memory: turns of steps, each a model answer or a failure.

Plain Python (no litellm). :mod:`host.agent.scripted.script_file` reads and
validates the JSON files these come from, :mod:`host.agent.scripted.player`
decides, call by call, which step the model "says" next, and
:mod:`host.agent.scripted.provider` turns steps into real litellm streaming
chunks. The format is documented for users in ``docs/scripted-provider.md``;
the short version::

    {"turns": [                                   # or just the list of turns
       [ {"text": "Let me look.", "tool_calls": [{"name": "read", "arguments": {"path": "a.txt"}}]},
         {"expect": {"last_role": "tool"}, "text": "It says hello."} ],
       [ {"error": "RateLimitError", "times": 2},
         {"text": "Second turn, after two rate limits."} ]
     ],
     "chunk_size": 4, "end_text": "(script ended)", "strict_turns": true,
     "pricing": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}

Token counts a step leaves out are estimated deterministically from text
lengths (:func:`resolve_usage`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_END_TEXT",
    "DEFAULT_PRICING",
    "ERROR_TYPES",
    "FINISH_REASONS",
    "ROLES",
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

#: Values of a message step's ``finish_reason``.
FINISH_REASONS: Final = ("stop", "tool_calls", "length", "content_filter")
#: Message roles an ``expect`` may name.
ROLES: Final = ("system", "user", "assistant", "tool")


@dataclass(frozen=True, slots=True)
class Pricing:
    """USD per token, registered with litellm for ``scripted/<model>`` so cost tracking works."""

    input_cost_per_token: float = 1e-6
    output_cost_per_token: float = 2e-6
    cache_read_input_token_cost: float = 1e-7
    cache_creation_input_token_cost: float = 1.25e-6

    def as_model_info(self, provider: str, context_window: int) -> dict[str, Any]:
        """The entry for ``litellm.register_model``."""
        return {
            "input_cost_per_token": self.input_cost_per_token,
            "output_cost_per_token": self.output_cost_per_token,
            "cache_read_input_token_cost": self.cache_read_input_token_cost,
            "cache_creation_input_token_cost": self.cache_creation_input_token_cost,
            "litellm_provider": provider,
            "mode": "chat",
            "max_input_tokens": context_window,
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
