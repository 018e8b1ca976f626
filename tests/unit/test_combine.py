"""The one combination loop, driven through fake transports (pluggy's ``MC()`` for kithost).

Every rule of ``ext_sdk.combine`` — order, gate stop, chaining, result check,
failure policy, budget, accounting — is checked here without a process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ext_sdk.combine import (
    FailureKind,
    Handler,
    HandlerDecl,
    HandlerFailure,
    Outcome,
    combine,
    in_order,
    order_key,
)
from ext_sdk.events import Policy, spec_for
from ext_sdk.testing import FakeTransport

TOOL_CALL = {"tool_call_id": "c1", "tool_name": "bash", "tool_kind": "execute", "input": "{}",
             "parsed_args": {}, "source": "llm"}
TOOL_RESULT = {"tool_call_id": "c1", "tool_name": "bash", "tool_kind": "execute", "input": "{}",
               "content": "out", "is_error": False, "metadata": "{}"}


class Counters:
    """An :class:`~ext_sdk.combine.Accounting` that remembers what it was told."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def record_ok(self, elapsed_s: float) -> None:
        assert elapsed_s >= 0
        self.seen.append("ok")

    def record_failure(self, kind: FailureKind, policy: Policy) -> None:
        self.seen.append(f"{kind}/{policy}")

    def record_stop(self) -> None:
        self.seen.append("stop")


Fn = Callable[[dict[str, Any]], dict[str, Any] | None]


def handler(fn: Fn, label: str, *, priority: int = 50, load: int = 0, index: int = 0, event: str = "tool_call",
            deadline_s: float | None = None, policy: Policy | None = None, owner: Counters | None = None) -> Handler:
    spec = spec_for(event)
    assert spec is not None
    decl = HandlerDecl(index, event, priority, deadline_s, policy or spec.default_policy)
    return Handler(decl, load, label, FakeTransport(fn), owner)


def mc(event: str, payload: dict[str, Any], *handlers: Handler, budget_s: float = 10.0) -> Outcome:
    spec = spec_for(event)
    assert spec is not None
    return combine(event, spec, in_order(handlers), payload, budget_s)


def test_order_is_priority_then_load_order_then_registration() -> None:
    calls: list[str] = []

    def note(name: str) -> Fn:
        return lambda payload: calls.append(name)  # type: ignore[func-returns-value]

    mc("tool_call", TOOL_CALL,
       handler(note("late-load"), "b", load=2, index=0),
       handler(note("second-registered"), "a", load=1, index=1),
       handler(note("first-registered"), "a", load=1, index=0),
       handler(note("high-priority"), "c", priority=0, load=9))
    assert calls == ["high-priority", "first-registered", "second-registered", "late-load"]
    assert order_key(0, 9, 0) < order_key(50, 1, 0) < order_key(50, 1, 1) < order_key(50, 2, 0)


def test_first_block_wins_and_stops_the_chain() -> None:
    later = FakeTransport(lambda p: None)
    owner = Counters()
    out = mc("tool_call", TOOL_CALL,
             handler(lambda p: {"block": True, "reason": "no"}, "gate", owner=owner),
             Handler(HandlerDecl(0, "tool_call", 60, None, Policy.CLOSED), 1, "later", later))
    assert out.stopped and out.reason == "no" and out.stop is not None and out.stop.by == "gate"
    assert not out.stop.failed and later.calls == [] and owner.seen == ["ok", "stop"]


def test_a_stop_without_a_reason_names_the_handler() -> None:
    out = mc("tool_call", TOOL_CALL, handler(lambda p: {"block": True}, "gate"))
    assert out.reason == "tool_call stopped by gate"


def test_chain_each_handler_sees_the_previous_output_and_the_input_is_not_mutated() -> None:
    second = FakeTransport(lambda p: {"content": p["content"] + "+2"})
    payload = dict(TOOL_RESULT)
    out = mc("tool_result", payload,
             handler(lambda p: {"content": p["content"] + "+1"}, "one", event="tool_result"),
             Handler(HandlerDecl(0, "tool_result", 60, None, Policy.OPEN), 0, "two", second))
    assert out.payload["content"] == "out+1+2" and second.calls[0][0]["content"] == "out+1"
    assert payload["content"] == "out" and not out.stopped


@pytest.mark.parametrize(("policy", "stopped"), [(Policy.OPEN, False), (Policy.CLOSED, True)])
def test_failure_policy(policy: Policy, stopped: bool) -> None:
    def boom(payload: dict[str, Any]) -> None:
        raise HandlerFailure(FailureKind.ERROR, "it broke")

    owner = Counters()
    out = mc("tool_call", TOOL_CALL, handler(boom, "fragile", policy=policy, owner=owner))
    assert out.stopped is stopped and [f.kind for f in out.failures] == [FailureKind.ERROR]
    assert out.failures[0].policy is policy and owner.seen == [f"error/{policy}"]
    if stopped:
        assert out.stop is not None and out.stop.failed and out.stop.result == {"block": True, "reason": out.reason}
        assert out.reason == "fragile failed (error: it broke); failing closed"


def test_a_bad_result_is_a_failure_counted_once_never_ok() -> None:
    owner = Counters()
    out = mc("tool_call", TOOL_CALL, handler(lambda p: {"block": "yes"}, "sloppy", policy=Policy.OPEN, owner=owner))
    assert not out.stopped and out.failures[0].kind is FailureKind.BAD_RESULT
    assert "bad result for tool_call" in out.failures[0].detail and owner.seen == ["bad_result/open"]


def test_notify_events_take_no_result() -> None:
    out = mc("agent_start", {}, handler(lambda p: {"x": 1}, "chatty", event="agent_start"))
    assert [f.kind for f in out.failures] == [FailureKind.BAD_RESULT]
    assert "takes no result" in out.failures[0].detail


def test_bounded_handlers_share_the_event_budget() -> None:
    seen: list[float | None] = []

    def slow(payload: dict[str, Any]) -> None:
        raise HandlerFailure(FailureKind.TIMEOUT, "no reply")

    first = FakeTransport(slow)
    out = mc("tool_result", TOOL_RESULT,
             Handler(HandlerDecl(0, "tool_result", 50, 5.0, Policy.OPEN), 0, "a", first),
             handler(lambda p: seen.append(1.0), "b", event="tool_result", load=1, deadline_s=0.5),  # type: ignore[func-returns-value]
             budget_s=0.2)
    timeout = first.calls[0][1]
    assert timeout is not None and timeout <= 0.2
    # The first handler's timeout was cut short by the budget: reported as budget, not as its own timeout.
    assert out.failures[0].kind is FailureKind.BUDGET


def test_a_handler_is_not_called_once_the_budget_is_spent() -> None:
    never = FakeTransport(lambda p: None)
    out = mc("tool_result", TOOL_RESULT,
             Handler(HandlerDecl(0, "tool_result", 50, 1.0, Policy.OPEN), 0, "late", never), budget_s=0.0)
    assert never.calls == [] and out.failures[0].kind is FailureKind.BUDGET


def test_in_process_handlers_are_unbounded() -> None:
    transport = FakeTransport(lambda p: None)
    mc("tool_call", TOOL_CALL, Handler(HandlerDecl(0, "tool_call", 50, None, Policy.OPEN), 0, "hook", transport))
    assert transport.calls[0][1] is None


def test_nobody_subscribed() -> None:
    out = mc("tool_call", TOOL_CALL)
    assert out.handlers == 0 and not out.stopped and out.payload == TOOL_CALL
