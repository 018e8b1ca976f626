"""The control and robustness scenarios: heartbeats, bad frames the extension receives, shutdown.

Contract (each function runs on one :class:`~.session.Session`):

* :func:`check_heartbeats` → ``heartbeat.idle`` (a ping with nothing in
  flight: pong, same id, ``busy=false``, within ``supervision.heartbeat_ms``),
  ``heartbeat.in-flight`` (a ping sent while an events request is in flight
  is answered, within the interval, *before* that request's reply) and
  ``heartbeat.busy`` (a pong that arrives while a handler observably runs
  says ``busy=true``, names the event in ``current`` and gives a
  ``busy_ms`` no longer than the request has existed, plus 1 s).
  A handler is observably running while the kit holds back the answer to its
  first host call: for a subscription that makes host calls the ping is sent
  then, so its pong necessarily precedes the reply (an extension that serves
  control on its event thread fails ``heartbeat.in-flight`` there). Without
  such a subscription the ping follows the request at once: the pong passes
  ``heartbeat.in-flight`` only if it arrives before the reply, and the check
  is skipped (not observed) when the handler answered first; ``heartbeat.busy``
  is judged only on a pong that says busy, and skipped otherwise. A probe
  whose process exits or never answers makes both skipped, saying so (the
  event checks report the cause).
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
    """A ping sent right after a request (nothing held back)."""
    kind, fields, deadline, what, event = _probe_request(plan, prefer_calling=False)
    outcome = session.begin(kind, fields, deadline, what)
    busy = _Busy(sent_at=time.monotonic(), request_at=outcome.sent_at, event=event)
    if outcome.req_id is not None:
        busy.ping_id, busy.pong = session.control("ping", {}, hb_s)
    session.finish(outcome, plan.grace_s(deadline))
    return busy, outcome


def _held_ping(session: Session, plan: Plan, hb_s: float) -> tuple[_Busy, RequestOutcome]:
    """A ping sent while the kit holds back the answer to the probe handler's first host call."""
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
    return busy, outcome


def _reply_at(outcome: RequestOutcome) -> float | None:
    """When the probe's reply (or rejected reply frame) was read, if it came."""
    return None if outcome.elapsed_s is None else outcome.sent_at + outcome.elapsed_s


def _what_became(outcome: RequestOutcome, session: Session) -> str:
    """What became of a probe request, in words (for a skip reason)."""
    if outcome.req_id is None:
        return f"{outcome.what} could not be sent"
    if outcome.exit_status is not None:
        return f"the process {describe_exit(outcome.exit_status)} while handling {outcome.what}"
    if outcome.timed_out:
        return (f"{outcome.what} got no reply within {_ms(outcome.deadline_s)}"
                + ("" if session.launched.alive() else
                   f" and the process {describe_exit(session.launched.returncode)}"))
    assert outcome.elapsed_s is not None
    return f"the reply to {outcome.what} came in {_ms(outcome.elapsed_s)}"


def _judge_in_flight(busy: _Busy, outcome: RequestOutcome, session: Session, hb_s: float) -> CheckResult:
    """``heartbeat.in-flight`` from one probe: a held one (``busy.done``) or one sent right after the request."""
    check = "heartbeat.in-flight"
    if outcome.req_id is None:
        return fail(check, f"could not send {outcome.what} to keep a request in flight")
    where = (f"request {outcome.req_id} ({outcome.what}) was in flight"
             + (f", its handler waiting for the answer to its {busy.held} call" if busy.done else ""))
    if busy.pong is None and busy.ping_id is not None and (outcome.exit_status is not None
                                                           or not session.launched.alive()):
        return skipped(check, f"not observed: {_what_became(outcome, session)} (see its event check)")
    problem = _answer_problem(busy.pong, busy.ping_id, "pong", hb_s, f"a ping sent while {where}")
    if problem is not None:
        if busy.pong is None and busy.ping_id is not None:
            problem += ": answer control from a thread of its own, so a running handler never delays a pong"
        return fail(check, problem)
    assert busy.pong is not None
    reply_at = _reply_at(outcome)
    if not busy.done and reply_at is not None and reply_at <= busy.pong.at:
        return skipped(check, f"not observed: the handler answered before the ping was read (the reply came in "
                              f"{_ms(reply_at - outcome.sent_at)}, the pong {_ms(busy.pong.at - busy.sent_at)} "
                              "after the ping; no handler made a host call the kit could hold back)")
    return passed(check, f"pong in {_ms(busy.pong.at - busy.sent_at)} while {where}"
                         + ("" if busy.done else ", before its reply"))


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

    # A handler held running is the deterministic probe; without one, a ping right after a request.
    busy: _Busy | None = None
    outcome: RequestOutcome | None = None
    reason = "not observed: an earlier scenario left no running process to probe"
    if plan.calling and not session.tainted:
        busy, outcome = _held_ping(session, plan, hb_s)
        if not busy.done:  # this time its handler made no host call
            reason = f"not observed: {_what_became(outcome, session)} without making a host call"
            busy, outcome = None, None
    if busy is None and not session.tainted:
        busy, outcome = _in_flight_ping(session, plan, hb_s)
    if busy is None or outcome is None:
        out += [skipped("heartbeat.in-flight", reason), skipped("heartbeat.busy", reason)]
        return out
    in_flight = _judge_in_flight(busy, outcome, session, hb_s)
    out.append(in_flight)
    any_pong = any_pong or busy.pong is not None

    verdict = _judge_busy(busy)
    if verdict is None:
        if not any_pong:
            verdict = skipped("heartbeat.busy", "no pong arrived at all (see heartbeat.idle)")
        elif busy.done and busy.pong is None:
            verdict = skipped("heartbeat.busy", f"no pong arrived while the {busy.event} handler ran (see "
                                                "heartbeat.in-flight)")
        elif outcome.elapsed_s is None:
            verdict = skipped("heartbeat.busy", f"not observed: {_what_became(outcome, session)}")
        else:
            verdict = skipped("heartbeat.busy", f"no handler takes long enough to observe "
                                                f"({_what_became(outcome, session)}"
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
