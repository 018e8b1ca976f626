"""Script files: the JSON format of the ``scripted`` provider as pydantic models, read and validated.

:func:`load_script` reads a file, :func:`parse_script` validates decoded JSON
(a list of turns, or an object with ``turns`` and options) into a
:class:`~host.agent.scripted.script.Script`. The models below *are* the
format (user documentation: ``docs/scripted-provider.md``, whose key tables a
test compares with them).

Contract: unknown keys and wrong types are errors, never ignored, and values
are taken as written (no ``"3"`` → ``3`` coercion). Every
:class:`~host.agent.errors.ScriptError` names the file, the place
(``turn 2, step 1, usage``) and the key, e.g. ``script s.json: turn 1,
step 1: unknown key 'txt' (known: chunk_delay_ms, chunk_size, ...)``. When a
file has several problems, the first is reported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from ..errors import ScriptError
from .script import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_END_TEXT,
    DEFAULT_PRICING,
    ERROR_TYPES,
    FINISH_REASONS,
    ROLES,
    ErrorStep,
    Expect,
    MessageStep,
    Pricing,
    Script,
    ScriptedToolCall,
    Step,
    StepUsage,
)

__all__ = [
    "ErrorStepFile",
    "ExpectFile",
    "MessageStepFile",
    "PricingFile",
    "ScriptFile",
    "SourceFile",
    "ToolCallFile",
    "UsageFile",
    "load_script",
    "parse_script",
]

# --------------------------------------------------------------------------- problems, in words

#: A value's problem; the message follows the key's name (``'text' must be a string``).
_VALUE: Final = "script_value"
#: A value's problem said in a whole sentence (``unknown error type 'Boom' (known: ...)``).
_SENTENCE: Final = "script_sentence"
#: An object's or a list's own problem (``unknown key 'txt' (...)``, ``a turn must be ...``).
_OBJECT: Final = "script_object"


def _problem(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, "{problem}", {"problem": message})


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _problem(_VALUE, "must be a string")
    return value


def _name(value: object) -> str:
    if not isinstance(value, str):
        raise _problem(_VALUE, "must be a string")
    if not value:
        raise _problem(_VALUE, "is required")
    return value


def _optional_string(value: object) -> str | None:
    return None if value is None else _string(value)


def _integer(minimum: int, *, optional: bool = False) -> Callable[[object], int | None]:
    def check(value: object) -> int | None:
        if value is None and optional:
            return None
        if type(value) is not int or value < minimum:
            raise _problem(_VALUE, f"must be an integer >= {minimum}")
        return value

    return check


def _price(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _problem(_VALUE, "must be a number >= 0")
    return float(value)


def _boolean(value: object) -> bool:
    if type(value) is not bool:
        raise _problem(_VALUE, "must be true or false")
    return value


def _choice(values: Sequence[str]) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or value not in values:
            raise _problem(_VALUE, f"must be one of {', '.join(values)}")
        return value

    return check


def _strings(value: object) -> tuple[str, ...]:
    """A string or a list of strings."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise _problem(_VALUE, "must be a string or a list of strings")


def _fragments(value: object) -> tuple[str, ...]:
    """A string (cut when streamed) or an explicit list of non-empty fragments."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise _problem(_VALUE, "must be a string or a non-empty list of non-empty strings")


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise _problem(_VALUE, "must be a list")
    return value


def _arguments(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    raise _problem(_VALUE, "must be an object (sent as JSON) or a string (sent as is)")


def _error_type(value: object) -> str:
    if not isinstance(value, str):
        raise _problem(_VALUE, "must be a string")
    if value not in ERROR_TYPES:
        raise _problem(_SENTENCE, f"unknown error type {value!r} (known: {', '.join(ERROR_TYPES)})")
    return value


def _turns(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise _problem(_VALUE, "must be a list of turns (each a list of steps)")
    return value


def _turn(value: object) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise _problem(_OBJECT, "a turn must be a non-empty list of steps")
    return value


String = Annotated[str, BeforeValidator(_string)]
Name = Annotated[str, BeforeValidator(_name)]
OptionalString = Annotated[str | None, BeforeValidator(_optional_string)]
Strings = Annotated[tuple[str, ...], BeforeValidator(_strings)]
Fragments = Annotated[tuple[str, ...], BeforeValidator(_fragments)]
Count = Annotated[int, BeforeValidator(_integer(0))]
OptionalCount = Annotated[int | None, BeforeValidator(_integer(0, optional=True))]
Price = Annotated[float, BeforeValidator(_price)]
Flag = Annotated[bool, BeforeValidator(_boolean)]

# --------------------------------------------------------------------------- the format


class _Object(BaseModel):
    """A JSON object of the format: only its own keys; ``null`` or a non-object is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: object) -> object:
        if not isinstance(data, dict):
            raise _problem(_OBJECT, f"expected an object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise _problem(_OBJECT, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(cls.model_fields))})")
        return data


class ExpectFile(_Object):
    """``expect``: conditions on the request a step answers (:class:`~.script.Expect`)."""

    last_role: Annotated[str | None, BeforeValidator(_choice(ROLES))] = None
    last_contains: Strings = ()
    any_contains: Strings = ()
    none_contains: Strings = ()
    system_contains: Strings = ()
    message_count: OptionalCount = None
    tools_include: Strings = ()
    tools_exclude: Strings = ()

    def build(self) -> Expect:
        """The condition set."""
        return Expect(**dict(self))


class UsageFile(_Object):
    """``usage``: a step's token counts; the ones left out are estimated (:class:`~.script.StepUsage`)."""

    input_tokens: OptionalCount = None
    output_tokens: OptionalCount = None
    cache_read_tokens: OptionalCount = 0
    cache_write_tokens: OptionalCount = 0

    @model_validator(mode="after")
    def _cache_within_input(self) -> UsageFile:
        cached = (self.cache_read_tokens or 0) + (self.cache_write_tokens or 0)
        if self.input_tokens is not None and cached > self.input_tokens:
            raise _problem(_OBJECT, "cache_read_tokens + cache_write_tokens cannot exceed input_tokens "
                                    "(input counts every prompt token)")
        return self

    def build(self) -> StepUsage:
        """The counts."""
        return StepUsage(self.input_tokens, self.output_tokens, self.cache_read_tokens or 0,
                         self.cache_write_tokens or 0)


class ToolCallFile(_Object):
    """One of ``tool_calls``: ``{name, arguments?, id?}``."""

    name: Name
    #: An object (sent as its JSON text) or a string (sent as is, e.g. broken JSON).
    arguments: Annotated[str, BeforeValidator(_arguments)] = "{}"
    id: OptionalString = None

    def build(self) -> ScriptedToolCall:
        """The tool call."""
        return ScriptedToolCall(self.name, self.arguments, self.id)


class SourceFile(_Object):
    """One of ``sources``: a citation ``{url, title?}``."""

    url: Name
    title: String = ""


class MessageStepFile(_Object):
    """A step where the model answers (:class:`~.script.MessageStep`)."""

    text: Fragments = ()
    reasoning: Fragments = ()
    tool_calls: Annotated[tuple[ToolCallFile, ...], BeforeValidator(_list)] = ()
    usage: UsageFile = Field(default_factory=UsageFile)
    finish_reason: Annotated[str | None, BeforeValidator(_choice(FINISH_REASONS))] = None
    warnings: Strings = ()
    sources: Annotated[tuple[SourceFile, ...], BeforeValidator(_list)] = ()
    chunk_size: Annotated[int | None, BeforeValidator(_integer(1, optional=True))] = None
    chunk_delay_ms: OptionalCount = 0
    expect: ExpectFile = Field(default_factory=ExpectFile)
    #: Free text, ignored.
    note: Any = None

    @model_validator(mode="after")
    def _unique_ids(self) -> MessageStepFile:
        ids = [c.id for c in self.tool_calls if c.id]
        if len(ids) != len(set(ids)):
            raise _problem(_OBJECT, "tool call ids must be unique within a step")
        return self

    def build(self) -> MessageStep:
        """The step."""
        return MessageStep(
            text=self.text, reasoning=self.reasoning, tool_calls=tuple(c.build() for c in self.tool_calls),
            usage=self.usage.build(), finish_reason=self.finish_reason, warnings=self.warnings,
            sources=tuple((s.url, s.title) for s in self.sources), chunk_size=self.chunk_size,
            chunk_delay_ms=self.chunk_delay_ms or 0, expect=self.expect.build())


class ErrorStepFile(_Object):
    """A step where the call fails with a litellm exception (:class:`~.script.ErrorStep`)."""

    error: Annotated[str, BeforeValidator(_error_type)]
    #: ``None``: ``scripted <error>``.
    message: Annotated[str | None, BeforeValidator(_string)] = None
    times: Annotated[int, BeforeValidator(_integer(1))] = 1
    after_text: String = ""
    expect: ExpectFile = Field(default_factory=ExpectFile)
    #: Free text, ignored.
    note: Any = None

    def build(self) -> ErrorStep:
        """The step."""
        message = f"scripted {self.error}" if self.message is None else self.message
        return ErrorStep(self.error, message, self.times, self.after_text, self.expect.build())


def _step_kind(value: object) -> str:
    return "error" if isinstance(value, dict) and "error" in value else "message"


_STEP_TAGS: Final = ("message", "error")
StepFile = Annotated[Annotated[MessageStepFile, Tag("message")] | Annotated[ErrorStepFile, Tag("error")],
                     Discriminator(_step_kind)]
TurnFile = Annotated[tuple[StepFile, ...], BeforeValidator(_turn)]


class PricingFile(_Object):
    """``pricing``: USD per token (:class:`~.script.Pricing`); keys left out keep their default."""

    input_cost_per_token: Price = DEFAULT_PRICING.input_cost_per_token
    output_cost_per_token: Price = DEFAULT_PRICING.output_cost_per_token
    cache_read_input_token_cost: Price = DEFAULT_PRICING.cache_read_input_token_cost
    cache_creation_input_token_cost: Price = DEFAULT_PRICING.cache_creation_input_token_cost

    def build(self) -> Pricing:
        """The prices."""
        return Pricing(**dict(self))


class ScriptFile(_Object):
    """A whole script file (the object form; a bare list is its ``turns``)."""

    turns: Annotated[tuple[TurnFile, ...], BeforeValidator(_turns)]
    chunk_size: Annotated[int, BeforeValidator(_integer(1))] = DEFAULT_CHUNK_SIZE
    end_text: String = DEFAULT_END_TEXT
    strict_turns: Flag = True
    #: ``null``: the model's price is unknown (left out of litellm's cost map).
    pricing: PricingFile | None = Field(default_factory=PricingFile)
    #: Free text, ignored.
    note: Any = None

    def build(self, source: str) -> Script:
        """The script, ``source`` naming where it came from."""
        turns: tuple[tuple[Step, ...], ...] = tuple(tuple(step.build() for step in turn) for turn in self.turns)
        pricing = None if self.pricing is None else self.pricing.build()
        return Script(source, turns, self.chunk_size, self.end_text, self.strict_turns, pricing)


# --------------------------------------------------------------------------- reading


def _place(loc: Sequence[int | str]) -> str:
    """A pydantic location in the script's words.

    ``('turns', 1, 0, 'message', 'usage')`` → ``turn 2, step 1, usage``.
    """
    parts: list[str] = []
    i = 0
    if len(loc) >= 2 and loc[0] == "turns" and isinstance(loc[1], int):
        parts.append(f"turn {loc[1] + 1}")
        i = 2
        if i < len(loc) and isinstance(loc[i], int):
            parts.append(f"step {int(loc[i]) + 1}")
            i += 1
            if i < len(loc) and loc[i] in _STEP_TAGS:  # the union member pydantic tried
                i += 1
    for item in loc[i:]:
        if isinstance(item, int) and parts:
            parts[-1] += f"[{item}]"
        else:
            parts.append(str(item))
    return ", ".join(parts)


def _script_error(source: str, error: ErrorDetails) -> ScriptError:
    loc, kind = tuple(error["loc"]), error["type"]
    problem = str((error.get("ctx") or {}).get("problem", error["msg"]))
    if loc and isinstance(loc[-1], str) and kind in (_VALUE, _SENTENCE, "missing"):
        key = loc[-1]
        if kind == _VALUE:
            problem = f"{key!r} {problem}"
        elif kind == "missing":
            problem = f"{key!r} is required"
        return ScriptError(source, _place(loc[:-1]), problem)
    return ScriptError(source, _place(loc), problem)


def parse_script(data: object, source: str = "<script>") -> Script:
    """Validate decoded JSON ``data`` and build a :class:`Script`; raises :class:`ScriptError`."""
    if isinstance(data, list):
        data = {"turns": data}
    try:
        parsed = ScriptFile.model_validate(data)
    except ValidationError as exc:
        raise _script_error(source, exc.errors(include_url=False)[0]) from None
    return parsed.build(source)


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
