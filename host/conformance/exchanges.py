"""The request scenarios: every subscription as an ``event`` and in a ``batch``, a notify batch, every tool and command.

Contract (each function runs on one :class:`~.session.Session` and returns
its results; rules of a right reply in :mod:`.judge`):

* :func:`check_event` — subscription *i*'s event with a sample payload
  (optional fields with values, :func:`~.samples.sample_payload`) as
  ``event {handler: i}``, within the subscription's effective deadline.
  Records on the plan whether the handler made host calls, and whether it
  answered correctly (the probe of the bad-frame scenarios).
* :func:`check_batch` — the same event as the only item of a ``batch``
  naming the handler, optional fields null (as the host sends them).
* :func:`check_notify_batch` — two items per notify event it subscribes to,
  handler null (the first item says ``handler: null``, the others leave the
  key out, as the host does), ``dropped: 1``; one result per item, in order,
  within the host's wait for a batch (:meth:`~.plan.Plan.batch_wait_s`).
  Skipped without a notify subscription.
* :func:`check_absent_optional` (advisory) — each subscription whose payload
  has optional fields and whose event check passed, as an ``event`` with
  those fields left out: absent and null mean the same (PROTOCOL §4.2),
  though this host sends every key.
* :func:`check_invoke` — a tool with arguments sampled from its
  ``parameters`` schema, or a command with ``""``, within ``deadlines.tool_ms``;
  ``{ok: false, error}`` is a valid answer (the model gets ``Error: ...``).
"""

from __future__ import annotations

from typing import Any

from .catalog import CheckResult, fail, invoke_id, passed, skipped
from .judge import Expect, judge_reply
from .plan import Plan
from .samples import has_optional_fields, sample_arguments, sample_payload
from .session import RequestOutcome, Session

__all__ = ["check_absent_optional", "check_batch", "check_event", "check_invoke", "check_notify_batch"]


def _verdict(check_id: str, outcome: RequestOutcome, expects: list[Expect], session: Session) -> CheckResult:
    problems, summary = judge_reply(outcome, expects, session.launched)
    if problems:
        return fail(check_id, "; ".join(problems))
    calls = f"; {len(outcome.calls)} host call(s)" if outcome.calls else ""
    return passed(check_id, summary + calls)


def check_event(session: Session, plan: Plan, index: int) -> CheckResult:
    """Subscription ``index`` as an ``event`` request."""
    event = plan.event_of(index)
    fields = {"event": event, "handler": index, "data": sample_payload(event, "value")}
    outcome = session.request("event", fields, plan.deadline_s(index), plan.grace_s(plan.deadline_s(index)),
                              f"event {event}, handler {index}")
    if outcome.calls:
        plan.calling.add(index)
    result = _verdict(plan.event_check(index), outcome, [Expect(event)], session)
    if result.status == "pass":
        plan.answering.append(index)
    return result


def check_batch(session: Session, plan: Plan, index: int) -> CheckResult:
    """Subscription ``index`` as the only item of a ``batch``."""
    event = plan.event_of(index)
    item = {"event": event, "handler": index, "data": sample_payload(event, "null")}
    outcome = session.request("batch", {"events": [item], "dropped": 0}, plan.deadline_s(index),
                              plan.grace_s(plan.deadline_s(index)), f"batch of 1: {event}, handler {index}")
    if outcome.calls:
        plan.calling.add(index)
    return _verdict(plan.batch_check(index), outcome, [Expect(event)], session)


def check_notify_batch(session: Session, plan: Plan) -> CheckResult:
    """Several notify events, handler null, in one ``batch``."""
    events = plan.notify_events()
    if not events:
        return skipped("notify.batch", "it subscribes to no notify event")
    items: list[dict[str, Any]] = []
    for event in events:
        items.append({"event": event, "data": sample_payload(event, "value")})
        items.append({"event": event, "data": sample_payload(event, "null")})
    items[0]["handler"] = None
    wait = plan.batch_wait_s([str(i["event"]) for i in items])
    names = ", ".join(str(i["event"]) for i in items)
    outcome = session.request("batch", {"events": items, "dropped": 1}, wait, plan.grace_s(wait),
                              f"batch of {len(items)}: {names}")
    return _verdict("notify.batch", outcome, [Expect(str(i["event"])) for i in items], session)


def check_invoke(session: Session, plan: Plan, target: str, name: str, parameters: object) -> CheckResult:
    """Tool or command ``name`` invoked once."""
    args: Any = sample_arguments(parameters) if target == "tool" else ""
    if target == "tool" and not isinstance(args, dict):
        args = {}
    outcome = session.request("invoke", {"target": target, "name": name, "args": args}, plan.tool_s,
                              plan.grace_s(plan.tool_s), f"invoke {target} {name}")
    return _verdict(invoke_id(target, name), outcome, [Expect(f"{target}:{name}", invoke=True)], session)


def check_absent_optional(session: Session, plan: Plan) -> CheckResult:
    """``payload.absent-optional``: every subscription with optional payload fields, those left out."""
    optional = [i for i in range(len(plan.subscriptions)) if has_optional_fields(plan.event_of(i))]
    if not optional:
        return skipped("payload.absent-optional", "no event it subscribes to has optional payload fields")
    indexes = [i for i in optional if i in plan.answering]  # compared with the same event, every key present
    if not indexes:
        return skipped("payload.absent-optional", "no subscription with optional payload fields answered correctly "
                                                  "with every key present (see the event: checks)")
    problems: list[str] = []
    for index in indexes:
        event = plan.event_of(index)
        fields = {"event": event, "handler": index, "data": sample_payload(event, "absent")}
        deadline = plan.deadline_s(index)
        outcome = session.request("event", fields, deadline, plan.grace_s(deadline),
                                  f"event {event}, handler {index}, optional fields absent")
        problems += judge_reply(outcome, [Expect(event)], session.launched)[0]
        if session.tainted:
            break
    if problems:
        return fail("payload.absent-optional", "; ".join(problems) + " — treat an absent optional field like null "
                                                                     "(PROTOCOL §4.2)")
    names = ", ".join(dict.fromkeys(plan.event_of(i) for i in indexes))
    return passed("payload.absent-optional", f"answered {names} with the optional fields left out")
