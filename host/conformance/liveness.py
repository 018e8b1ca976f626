"""The control and robustness scenarios: heartbeats, bad frames the extension receives, shutdown.

Contract (each function runs on one :class:`~.session.Session`):

* :func:`check_heartbeats` → ``heartbeat.idle`` (a ping with nothing in
  flight: pong, same id, ``busy=false``, within ``supervision.heartbeat_ms``),
  ``heartbeat.in-flight`` (a ping sent right after an events request: answered
  within the interval whether or not the handler has finished) and
  ``heartbeat.busy`` (a pong that arrives while a handler observably runs
  says ``busy=true``, names the event in ``current`` and gives a
  ``busy_ms`` no longer than the request has existed, plus 1 s). A handler
  is observably running when the in-flight pong says busy, or — for a
  subscription that makes host calls — while the kit holds back the answer
  to its first call. Without either, ``heartbeat.busy`` is skipped.
* :func:`check_bad_frame` → ``bad-frames.bad-mac`` / ``.replay`` /
  ``.garbage``: a probe request that was answered correctly before (a
  subscription whose event check passed, or an empty batch for an extension
  without subscriptions) is sent once as a baseline; then the bad frame,
  then — at once, as the host's relaxed REQ socket does — the probe again.
  The process must still run, and the probe's reply must be in step (right
  id, one result per item). What the extension answers to the bad frame
  itself is not judged: the protocol does not say, and the host drops it.
  A host call carrying the bad frame's id shows that the frame was handled
  instead of dropped. Skipped without a probe.
* :func:`check_bad_control` → ``bad-frames.control``: garbage on control,
  then a ping must still get a pong within the heartbeat interval.
* :func:`check_shutdown` → ``shutdown.bye`` / ``shutdown.exit``: ``bye``
  with the request's id, then exit status 0, both within half of
  ``deadlines.shutdown_ms`` (after that the host sends SIGTERM). The session
  is over afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..exthost.process import describe_exit
from .answers import CallRecord
from .catalog import CheckResult, fail, passed, skipped
from .judge import FRAME_HINTS, Expect, sync_problems
from .peer import Incoming
from .plan import Plan
from .samples import sample_payload
from .session import RequestOutcome, Session

__all__ = ["BadFrame", "check_bad_control", "check_bad_frame", "check_heartbeats", "check_shutdown"]

#: Bytes that are no frame at all (longer than a MAC, so they fail its check).
GARBAGE = b"\x00kithost conformance: these bytes are no frame\xff" * 2
#: A bad frame kind.
BadFrame = Literal["bad-mac", "replay", "garbage"]
_SLACK_MS = 1000


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _answer_problem(incoming: Incoming | None, req_id: int | None, expected: str, timeout_s: float,
                    what: str) -> str | None:
    """Why ``incoming`` is not the right answer (``expected`` kind) to control request ``req_id``."""
    if req_id is None:
        return (f"could not send {what}: the extension is not connected to the control channel (connect all "
                "three sockets before sending hello)")
    if incoming is None:
        return f"no {expected} within {_ms(timeout_s)} of {what}"
    if incoming.error is not None:
        hint = FRAME_HINTS.get(incoming.error.reason, "")
        return (f"the answer to {what} was rejected ({incoming.error.reason}: {incoming.error.detail})"
                + (f" — {hint}" if hint else ""))
    assert incoming.msg is not None
    if incoming.kind != expected:
        return f"{what} was answered with {incoming.kind!r}: answer it with {expected}"
    if incoming.msg["id"] != req_id:
        return f"the {expected} carries id {incoming.msg['id']} for request {req_id}: echo the request's id"
    return None


# --------------------------------------------------------------------------- heartbeats


@dataclass
class _Busy:
    """A pong taken while a handler ran (or should have)."""

    pong: Incoming | None = None
    sent_at: float = 0.0
    request_at: float = 0.0
    event: str = ""
    #: The host call held back meanwhile, if any.
    held: str = ""
    ping_id: int | None = None
    #: A host call was held back and the ping sent meanwhile.
    done: bool = False


def _probe_request(plan: Plan, prefer_calling: bool) -> tuple[str, dict[str, Any], float, str, str]:
    """``(kind, fields, deadline, what, event)`` of a request to keep in flight."""
    subs = sorted(plan.calling) if prefer_calling and plan.calling else list(range(len(plan.subscriptions)))
    if not subs:
        return "batch", {"events": [], "dropped": 0}, 1.0, "empty batch", ""
    index = subs[0]
    event = plan.event_of(index)
    return ("event", {"event": event, "handler": index, "data": sample_payload(event, "value")},
            plan.deadline_s(index), f"event {event}, handler {index}", event)


def _judge_busy(busy: _Busy) -> CheckResult | None:
    pong = busy.pong
    if pong is None or pong.msg is None or pong.kind != "pong" or pong.msg["id"] != busy.ping_id:
        return None
    msg = pong.msg
    where = f"while the {busy.event} handler ran" + (f" (waiting for the answer to its {busy.held} call)"
                                                     if busy.held else "")
    if not msg["busy"]:
        if busy.held:
            return fail("heartbeat.busy", f"the pong said busy=false {where}: busy is true while a handler runs")
        return None  # the handler may not have started yet: not observed
    if busy.event and msg.get("current") != busy.event:
        return fail("heartbeat.busy", f"the pong said current={msg.get('current')!r} {where}: current names the "
                                      "event being handled")
    limit = (pong.at - busy.request_at) * 1000 + _SLACK_MS
    if not 0 <= msg["busy_ms"] <= limit:
        return fail("heartbeat.busy", f"the pong said busy_ms={msg['busy_ms']} {where}, but the request was sent "
                                      f"{(pong.at - busy.request_at) * 1000:.0f} ms before: busy_ms is how long "
                                      "the current handler has run")
    return passed("heartbeat.busy", f"busy=true, current={msg.get('current')!r}, busy_ms={msg['busy_ms']} {where}; "
                                    f"pong in {_ms(pong.at - busy.sent_at)}")


def _in_flight_ping(session: Session, plan: Plan, hb_s: float) -> tuple[_Busy, RequestOutcome]:
    kind, fields, deadline, what, event = _probe_request(plan, prefer_calling=False)
    outcome = session.begin(kind, fields, deadline, what)
    busy = _Busy(sent_at=time.monotonic(), request_at=outcome.sent_at, event=event)
    if outcome.req_id is not None:
        busy.ping_id, busy.pong = session.control("ping", {}, hb_s)
    session.finish(outcome, plan.grace_s(deadline))
    return busy, outcome


def _held_ping(session: Session, plan: Plan, hb_s: float) -> _Busy:
    kind, fields, deadline, what, event = _probe_request(plan, prefer_calling=True)
    busy = _Busy(event=event)

    def hold(call: Incoming) -> None:
        busy.held = str(call.msg.get("method")) if call.msg is not None else "?"
        busy.sent_at = time.monotonic()
        busy.ping_id, busy.pong = session.control("ping", {}, hb_s)
        busy.done = True

    outcome = session.begin(kind, fields, deadline, what)
    busy.request_at = outcome.sent_at
    session.finish(outcome, plan.grace_s(deadline) + hb_s, before_answer=hold)
    return busy


def check_heartbeats(session: Session, plan: Plan) -> list[CheckResult]:
    """``heartbeat.idle``, ``heartbeat.in-flight``, ``heartbeat.busy`` (see the module doc)."""
    hb_s = plan.heartbeat_s
    out: list[CheckResult] = []
    sent = time.monotonic()
    ping_id, pong = session.control("ping", {}, hb_s)
    problem = _answer_problem(pong, ping_id, "pong", hb_s, "a ping")
    any_pong = pong is not None
    if problem is None and pong is not None and pong.msg is not None and pong.msg["busy"]:
        problem = "the pong said busy=true while no request was in flight: busy is true only while a handler runs"
    if problem is not None and pong is None and ping_id is not None:
        problem += ": answer ping with pong on the control channel, from a thread of its own so handlers never delay it"
    out.append(fail("heartbeat.idle", problem) if problem else
               passed("heartbeat.idle", f"pong in {_ms((pong.at if pong else sent) - sent)}"))

    busy, outcome = _in_flight_ping(session, plan, hb_s)
    problem = _answer_problem(busy.pong, busy.ping_id, "pong", hb_s, f"a ping sent while request {outcome.req_id} "
                                                                      f"({outcome.what}) was in flight")
    if outcome.req_id is None:
        problem = f"could not send {outcome.what} to keep a request in flight"
    if problem is not None and busy.pong is None and busy.ping_id is not None:
        problem += ": answer control from a thread of its own, so a running handler never delays a pong"
    any_pong = any_pong or busy.pong is not None
    out.append(fail("heartbeat.in-flight", problem) if problem else
               passed("heartbeat.in-flight", f"pong in {_ms(busy.pong.at - busy.sent_at) if busy.pong else '?'} "
                                             f"while request {outcome.req_id} ({outcome.what}) was in flight"))

    verdict = _judge_busy(busy)
    if verdict is None and any_pong and plan.calling and not session.tainted:
        held = _held_ping(session, plan, hb_s)
        if held.done:
            verdict = _judge_busy(held)
            if verdict is None and held.pong is None:
                verdict = fail("heartbeat.busy", f"no pong within {_ms(hb_s)} while the {held.event} handler ran "
                                                 f"(waiting for the answer to its {held.held} call): answer control "
                                                 "from a thread of its own")
    if verdict is None:
        if not any_pong:
            verdict = skipped("heartbeat.busy", "no pong arrived at all (see heartbeat.idle)")
        else:
            taken = f"{outcome.elapsed_s * 1000:.0f} ms" if outcome.elapsed_s is not None else "?"
            verdict = skipped("heartbeat.busy", f"no handler takes long enough to observe (the reply came in {taken}"
                                                + (" and no handler made a host call the kit could hold back)"
                                                   if not plan.calling else ")"))
    out.append(verdict)
    return out


# --------------------------------------------------------------------------- bad frames

_DESCRIBE: dict[BadFrame, str] = {
    "bad-mac": "a frame with a wrong MAC",
    "replay": "a replayed frame (a seq it had accepted already)",
    "garbage": "garbage bytes",
}


def _probe(plan: Plan) -> tuple[str, dict[str, Any], list[Expect], float, str] | None:
    if not plan.subscriptions:
        return "batch", {"events": [], "dropped": 0}, [], 1.0, "empty batch"
    if not plan.answering:
        return None
    index = plan.answering[0]
    event = plan.event_of(index)
    return ("event", {"event": event, "handler": index, "data": sample_payload(event, "value")}, [Expect(event)],
            plan.deadline_s(index), f"event {event}, handler {index}")


def check_bad_frame(session: Session, plan: Plan, bad: BadFrame,
                    attribute: Callable[[list[CallRecord]], None]) -> CheckResult:
    """One ``bad-frames.*`` check on the events channel (see the module doc).

    ``attribute(records)`` takes host calls that this check explains (made while handling the bad frame), so
    that ``calls.event-id`` does not report them again.
    """
    check_id = f"bad-frames.{bad}"
    probe = _probe(plan)
    if probe is None:
        return skipped(check_id, "no request got a correct reply (see the event: checks), so recovery after a bad "
                                 "frame cannot be judged")
    kind, fields, expects, deadline, what = probe
    grace = plan.grace_s(deadline)
    baseline = session.request(kind, fields, deadline, grace, what)
    problems = sync_problems(baseline, len(expects), session.launched)
    if problems:
        return skipped(check_id, f"even before a bad frame: {problems[0]}")
    described = _DESCRIBE[bad]
    bad_id: int | None = baseline.req_id
    if bad == "bad-mac":
        bad_id, frame = session.peer.seal_events(kind, fields)
        frame = bytes(b ^ 0xFF for b in frame[:32]) + frame[32:]
    elif bad == "replay":
        frame = session.peer.last_events_frame or GARBAGE
    else:
        bad_id, frame = None, GARBAGE
    session.peer.send_events_raw(frame, deadline)
    outcome = session.request(kind, fields, deadline, grace, what)
    handled = [r for r in outcome.calls if bad_id is not None and r.event_id == bad_id]
    if handled:
        attribute(handled)
        return fail(check_id, f"it handled {described} instead of dropping it (its {handled[0].method!r} call "
                              f"carried event_id {bad_id}, the bad frame's): check the MAC and that seq grows "
                              "before handling a frame")
    problems = sync_problems(outcome, len(expects), session.launched)
    if outcome.exit_status is not None:
        return fail(check_id, f"after {described} on the events channel, {problems[0]}: drop a frame that fails the "
                              "checks and keep serving")
    if outcome.timed_out:
        return fail(check_id, f"after {described} on the events channel, no reply to the next valid request "
                              f"{outcome.req_id} ({what}) within {_ms(deadline)}: a REP socket must answer every "
                              "frame it reads, even one it drops (any reply will do: the host discards it), or it "
                              "cannot receive the next request")
    if problems:
        return fail(check_id, f"after {described}: {problems[0]}")
    assert outcome.elapsed_s is not None
    return passed(check_id, f"kept running; the next request ({what}) got its reply in {_ms(outcome.elapsed_s)}")


def check_bad_control(session: Session, plan: Plan) -> CheckResult:
    """``bad-frames.control``: garbage on control, then a ping."""
    hb_s = plan.heartbeat_s
    if not session.peer.send_control_raw(GARBAGE, hb_s):
        return fail("bad-frames.control", "could not send on the control channel: the extension is not connected "
                                          "to it (connect all three sockets before sending hello)")
    sent = time.monotonic()
    ping_id, pong = session.control("ping", {}, hb_s)
    if not session.launched.alive():
        return fail("bad-frames.control", f"the process {describe_exit(session.launched.returncode)} after garbage "
                                          "on the control channel: drop a frame that fails the checks and keep "
                                          "serving")
    problem = _answer_problem(pong, ping_id, "pong", hb_s, "the ping after garbage on the control channel")
    if problem is not None:
        if pong is None:
            problem += (": the control REP socket must answer every frame it reads, even one it drops (any reply "
                        "will do: the host discards it), or it cannot receive the next ping")
        return fail("bad-frames.control", problem)
    assert pong is not None
    return passed("bad-frames.control", f"still answers ping after garbage (pong in {_ms(pong.at - sent)})")


# --------------------------------------------------------------------------- shutdown


def check_shutdown(session: Session, plan: Plan) -> list[CheckResult]:
    """``shutdown.bye`` and ``shutdown.exit`` (see the module doc)."""
    half = plan.shutdown_half_s
    sent = time.monotonic()
    req_id, bye = session.control("shutdown", {"reason": "kithost conformance: shutdown scenario"}, half)
    problem = _answer_problem(bye, req_id, "bye", half, "shutdown")
    if problem is not None and bye is None and req_id is not None:
        problem += (" (half of deadlines.shutdown_ms): answer shutdown with bye, then finish the current handler "
                    "and exit")
    out = [fail("shutdown.bye", problem) if problem else passed("shutdown.bye", f"bye in {_ms(bye.at - sent)}"
                                                                      if bye else "bye")]
    status = session.launched.wait_exit(max(0.0, sent + half - time.monotonic()))
    session.tainted = True
    if status is None:
        out.append(fail("shutdown.exit", f"still running {_ms(half)} after shutdown (the host sends SIGTERM then, "
                                         f"SIGKILL {_ms(half)} later): exit after answering bye"))
    elif status != 0:
        out.append(fail("shutdown.exit", f"the process {describe_exit(status)} after shutdown: exit with status 0"))
    else:
        out.append(passed("shutdown.exit", f"exited with status 0 {_ms(time.monotonic() - sent)} after shutdown"))
    return out
