"""``heartbeat.in-flight`` and ``heartbeat.busy`` judged from what a probe saw (no processes).

The rule (host/conformance/liveness.py): a pong passes ``heartbeat.in-flight`` only when it came before the
probe's reply — certain when the kit held back the handler's host call, otherwise observed only if the ping
won; a reply first is "not observed" (skipped), no pong a failure, a process that died says so.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from host.conformance.catalog import Status
from host.conformance.liveness import _Busy, _judge_in_flight, _what_became
from host.conformance.peer import Incoming
from host.conformance.session import RequestOutcome, Session

HB = 0.4


def _session(returncode: int | None = None) -> Session:
    launched = SimpleNamespace(alive=lambda: returncode is None, returncode=returncode)
    return cast(Session, SimpleNamespace(launched=launched))


def _pong(at: float, ping_id: int = 7) -> Incoming:
    return Incoming("control", at, {"k": "pong", "seq": 3, "id": ping_id, "busy": True, "current": "tool_call",
                                    "busy_ms": 1}, None)


def _outcome(reply_after: float | None, **fields: Any) -> RequestOutcome:
    outcome = RequestOutcome("event", "event tool_call, handler 0", 5, 100.0, 1.0, **fields)
    outcome.elapsed_s = reply_after
    return outcome


def _busy(pong_at: float | None, held: bool = False) -> _Busy:
    return _Busy(pong=None if pong_at is None else _pong(pong_at), sent_at=100.001, request_at=100.0,
                 event="tool_call", held="get_state" if held else "", ping_id=7, done=held)


def test_a_pong_before_the_reply_passes() -> None:
    verdict = _judge_in_flight(_busy(100.002), _outcome(0.050), _session(), HB)
    assert verdict.status is Status.PASS and "before its reply" in verdict.why


def test_a_pong_after_the_reply_is_not_observed() -> None:
    # The extension answered control only once its handler had replied: it may serve control on its event thread.
    verdict = _judge_in_flight(_busy(100.003), _outcome(0.002), _session(), HB)
    assert verdict.status is Status.SKIP
    assert verdict.why.startswith("not observed: the handler answered before the ping was read")


def test_a_pong_while_a_host_call_is_held_passes_whatever_came_after() -> None:
    verdict = _judge_in_flight(_busy(100.002, held=True), _outcome(0.5), _session(), HB)
    assert verdict.status is Status.PASS and "waiting for the answer to its get_state call" in verdict.why


def test_no_pong_while_a_host_call_is_held_fails_with_what_to_fix() -> None:
    verdict = _judge_in_flight(_busy(None, held=True), _outcome(0.5), _session(), HB)
    assert verdict.status is Status.FAIL
    assert "no pong within 400 ms" in verdict.why and "thread of its own" in verdict.why


def test_a_probe_whose_process_died_says_what_happened() -> None:
    outcome = _outcome(None, exit_status=1)
    verdict = _judge_in_flight(_busy(None), outcome, _session(returncode=1), HB)
    assert verdict.status is Status.SKIP
    assert "the process exited with status 1 while handling event tool_call" in verdict.why
    assert "?" not in verdict.why
    assert _what_became(_outcome(None, timed_out=True), _session(returncode=-9)) == (
        "event tool_call, handler 0 got no reply within 1000 ms and the process killed by SIGKILL")
    assert _what_became(_outcome(0.25), _session()) == "the reply to event tool_call, handler 0 came in 250 ms"
