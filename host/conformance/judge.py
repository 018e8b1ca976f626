"""Judging one request's outcome: the rules a reply must follow, and messages that say what to fix.

Contract of :func:`judge_reply`: given a :class:`~.session.RequestOutcome` and
what each item of the request expects (:class:`Expect`), it returns the
problems, in the order an author should fix them (empty: the reply is
right), plus a one-line summary for a pass. A reply is right when:

1. the request could be sent and the process did not exit meanwhile;
2. a frame came back before the deadline plus the grace period;
3. the frame passed :class:`~ext_sdk.wire.Opener` (MAC, ``seq``, kind, schema);
4. its ``id`` is the request's;
5. it has one result per item;
6. each result is ``ok`` and matches its item's rule: for an event, the
   event's result schema, or null (:func:`ext_sdk.combine.check_result`;
   a notify event takes null only); for an invocation, ``{content,
   is_error?}`` (an invocation may also answer ``ok: false``: the model or
   user then gets ``Error: <error>``);
7. it came within the deadline (a late reply is reported after the others:
   the host has dropped it).

:func:`sync_problems` applies rules 1–5 only: whether the extension is
still in step with the host, whatever its results say.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ext_sdk.combine import check_result
from ext_sdk.events import spec_for
from ext_sdk.schema import Bool, Field, SchemaError, Str, Struct

from ..exthost.process import describe_exit
from .launcher import Launched
from .session import RequestOutcome

__all__ = ["FRAME_HINTS", "Expect", "judge_reply", "short", "sync_problems"]

#: What to change, for each reason a frame from the extension is rejected.
FRAME_HINTS: dict[str, str] = {
    "bad_mac": "sign every frame: its first 32 bytes are HMAC-SHA256(key, body), the key being the bytes of the "
               "file KITHOST_SECRET_FILE names",
    "replay": "seq must grow with every frame sent on a socket (start at 1)",
    "schema": "the envelope must match its kind's schema ($defs/message.<kind>) exactly, no other fields",
    "decode": "the body after the 32-byte MAC must be one msgpack map",
    "not_a_map": "the body after the 32-byte MAC must be one msgpack map",
    "short": "a frame is the 32-byte MAC followed by the msgpack body",
    "too_deep": "nest values at most 32 levels deep",
    "unknown_kind": "answer an events request with kind 'reply'",
    "too_large": "keep every frame under the frame limit (8 MiB by default)",
}

_INVOKE_RESULT = Struct(content=Str, is_error=Field(Bool, required=False))


@dataclass(frozen=True, slots=True)
class Expect:
    """What one item of a request expects of its result."""

    #: Event name, or ``tool:<name>`` / ``command:<name>`` for an invocation.
    what: str
    invoke: bool = False


def short(value: object, limit: int = 70) -> str:
    """``value`` as compact JSON, cut to ``limit`` characters."""
    try:
        text = json.dumps(value, separators=(",", ":"), default=repr)
    except ValueError:
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def sync_problems(outcome: RequestOutcome, items: int, launched: Launched) -> list[str]:
    """Rules 1–5 of the module doc."""
    what = f"request {outcome.req_id} ({outcome.what})"
    if outcome.req_id is None:
        return [f"could not send {outcome.what}: the extension is not connected to the events channel "
                "(connect all three sockets before sending hello)"]
    if outcome.exit_status is not None:
        tail = launched.stderr_tail()
        return [f"the process {describe_exit(outcome.exit_status)} while handling {what}"
                + (f"; stderr: {tail}" if tail else "")]
    if outcome.timed_out:
        return [f"no reply to {what} within its {_ms(outcome.deadline_s)} deadline, nor in the grace period "
                "after it: answer every events request with exactly one reply"]
    if outcome.error is not None:
        hint = FRAME_HINTS.get(outcome.error.reason, "")
        return [f"the reply to {what} was rejected ({outcome.error.reason}: {outcome.error.detail})"
                + (f" — {hint}" if hint else "")]
    reply = outcome.reply
    assert reply is not None
    if reply["id"] != outcome.req_id:
        return [f"the reply to {what} carries id {reply['id']}: a reply echoes the id of its request"]
    results = reply["results"]
    if len(results) != items:
        return [f"the reply to {what} had {len(results)} result(s) for {items} event(s): send one result per "
                "item, in order"]
    return []


def _item_problem(index: int, total: int, expect: Expect, item: dict[str, object]) -> str | None:
    where = f"item {index + 1} ({expect.what})" if total > 1 else expect.what
    if not item.get("ok"):
        error = item.get("error")
        if expect.invoke:
            return None  # {ok: false, error} reaches the model or user as "Error: <error>" (PROTOCOL §6.3)
        return (f"{where}: the handler failed on a valid sample payload: {error or 'ok=false without an error'}")
    result = item.get("result")
    if expect.invoke:
        try:
            _INVOKE_RESULT.check(result, "result")
        except SchemaError as exc:
            return f"{where}: {exc}; an invocation's result is {{content: string, is_error?: bool}}"
        return None
    if result is None:
        return None
    spec = spec_for(expect.what)
    if spec is None:
        return f"{where}: unknown event"
    if spec.result is None:
        return f"{where}: {expect.what} is a notify event, so its result must be null (got {short(result)})"
    try:
        check_result(spec, result)  # type: ignore[arg-type]
    except SchemaError as exc:
        return (f"{where}: {exc} — the result must match $defs/event.{expect.what}.result "
                f"({spec.result.describe()}) or be null")
    return None


def judge_reply(outcome: RequestOutcome, expects: Sequence[Expect], launched: Launched) -> tuple[list[str], str]:
    """``(problems, summary)`` of ``outcome`` (rules in the module doc)."""
    problems = sync_problems(outcome, len(expects), launched)
    if problems:
        return problems, ""
    assert outcome.reply is not None and outcome.elapsed_s is not None
    results = outcome.reply["results"]
    for i, (expect, item) in enumerate(zip(expects, results, strict=True)):
        problem = _item_problem(i, len(expects), expect, item)
        if problem is not None:
            problems.append(problem)
    if outcome.late:
        problems.append(f"the reply to request {outcome.req_id} ({outcome.what}) came after "
                        f"{_ms(outcome.elapsed_s)}, over its {_ms(outcome.deadline_s)} deadline (the host has "
                        "given up by then)")
    shown = ", ".join(short(item.get("result") if item.get("ok") else {"error": item.get("error")})
                      for item in results[:3]) + (", …" if len(results) > 3 else "")
    summary = (f"reply in {_ms(outcome.elapsed_s)} (deadline {_ms(outcome.deadline_s)}); "
               f"result{'s' if len(results) != 1 else ''} {shown}")
    return problems, summary
