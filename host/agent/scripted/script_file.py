"""Script files: the JSON format of the ``scripted`` provider, read and validated.

Contract: unknown keys and wrong types are errors, never ignored; every
:class:`~host.agent.errors.ScriptError` names the file and the place
(``turn 2, step 1, usage``) and the field. User documentation:
``docs/scripted-provider.md``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

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

__all__ = ["load_script", "parse_script"]

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
    if role is not None and role not in ROLES:
        e.fail(f"'last_role' must be one of {', '.join(ROLES)}")
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
    if finish is not None and finish not in FINISH_REASONS:
        r.fail(f"'finish_reason' must be one of {', '.join(FINISH_REASONS)}")
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
