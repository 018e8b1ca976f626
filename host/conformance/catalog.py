"""The checks of the conformance kit: their ids, what each verifies, and the record of one outcome.

Contract:

* A check id is stable across runs and versions of the kit, so that a
  known-failures file can name it. Fixed ids are listed in :data:`CHECKS`;
  the ids made per declaration are ``event:<event>`` and ``batch:<event>``
  (one pair per subscription; a second subscription to the same event adds
  ``#<index>``) and ``invoke.tool:<name>`` / ``invoke.command:<name>``.
* :func:`describe` says what any id verifies, in one sentence.
* Every outcome is a :class:`CheckResult`: ``pass``, ``fail`` or ``skip``,
  with a ``why`` written for the extension's author (what was seen, and for
  a failure what to change).
* A check is *required* unless :data:`CHECKS` says otherwise; the run fails
  only on a required check that fails (and is not a known failure).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "CHECKS",
    "Check",
    "CheckResult",
    "Status",
    "batch_id",
    "describe",
    "event_id",
    "fail",
    "invoke_id",
    "is_required",
    "passed",
    "skipped",
]


class Status(StrEnum):
    """The outcome of one check."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Check:
    """One fixed check of the kit."""

    id: str
    #: What it verifies, in one sentence.
    verifies: str
    #: Whether a failure fails the run.
    required: bool = True


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check on one extension."""

    id: str
    status: Status
    #: What was seen; for a failure, what the author must change.
    why: str

    @property
    def required(self) -> bool:
        return is_required(self.id)


def passed(check_id: str, why: str) -> CheckResult:
    return CheckResult(check_id, Status.PASS, why)


def fail(check_id: str, why: str) -> CheckResult:
    return CheckResult(check_id, Status.FAIL, why)


def skipped(check_id: str, why: str) -> CheckResult:
    return CheckResult(check_id, Status.SKIP, why)


_FIXED = (
    Check("handshake.hello", "the first message on the calls channel is a correctly signed, well-formed hello, "
                             "sent within deadlines.start_ms of the start"),
    Check("handshake.name", "hello names the extension as its manifest does"),
    Check("handshake.version", "hello offers protocol version 1"),
    Check("handshake.subscriptions", "every subscription names a known event that the manifest lists in events"),
    Check("handshake.permissions", "hello asks only for permissions the manifest declares, and for "
                                   "'conversation' when it subscribes to an event carrying conversation content"),
    Check("notify.batch", "a batch of several notify events (handler null) gets one reply with one result per "
                          "item, in order, within the batch's wait"),
    Check("payload.absent-optional", "every subscription whose payload has optional fields answers correctly "
                                     "when they are left out (absent and null mean the same, PROTOCOL §4.2; "
                                     "this host sends every key)", required=False),
    Check("calls.event-id", "every host call made while handling carries the event_id of the request being "
                            "handled"),
    Check("calls.valid", "every host call is a valid frame naming a known method, with valid arguments, "
                         "within the permissions granted"),
    Check("heartbeat.idle", "a ping on the control channel is answered by a pong with its id, busy=false, "
                            "within supervision.heartbeat_ms"),
    Check("heartbeat.in-flight", "a ping sent while an events request is in flight is answered within "
                                 "supervision.heartbeat_ms and before that request's reply (observed while the "
                                 "kit holds back a handler's host call; skipped when no handler calls the host "
                                 "and the reply came first)"),
    Check("heartbeat.busy", "a pong sent while a handler runs says busy=true, names the event in current, "
                            "and gives a plausible busy_ms"),
    Check("bad-frames.bad-mac", "after an events frame with a wrong MAC the extension keeps running and answers "
                                "the next valid request correctly"),
    Check("bad-frames.replay", "after a replayed events frame (a seq already used) the extension keeps running "
                               "and answers the next valid request correctly"),
    Check("bad-frames.garbage", "after garbage bytes on the events channel the extension keeps running and "
                                "answers the next valid request correctly"),
    Check("bad-frames.control", "after garbage bytes on the control channel the extension still answers ping"),
    Check("shutdown.bye", "shutdown on the control channel is answered by bye with its id within half of "
                          "deadlines.shutdown_ms"),
    Check("shutdown.exit", "after shutdown the process exits with status 0 within half of deadlines.shutdown_ms "
                           "(before the host would send SIGTERM)"),
    Check("version-mismatch.exit", "when the host rejects the handshake (no common version) the process exits "
                                   "with status 4 promptly"),
    Check("version-mismatch.stderr", "when the host rejects the handshake the extension says why on stderr",
          required=False),
)

#: Every fixed check, by id, in report order.
CHECKS: Final[dict[str, Check]] = {c.id: c for c in _FIXED}

_PER_DECLARATION: Final = {
    "event:": "the subscription's event, sent as an event request naming the handler, gets exactly one reply "
              "with the request's id and one result matching the event's result schema (or null), within the "
              "subscription's deadline",
    "batch:": "the same inside a batch of one item naming the handler (optional payload fields null)",
    "invoke.tool:": "the tool, invoked with sample arguments from its parameters schema, gets one reply whose "
                    "result is {content, is_error?} (or ok=false with an error), within deadlines.tool_ms",
    "invoke.command:": "the slash command, invoked with an empty argument string, gets one reply whose result is "
                       "{content, is_error?} (or ok=false with an error), within deadlines.tool_ms",
}


def _suffix(name: str, index: int, first: bool) -> str:
    return name if first else f"{name}#{index}"


def event_id(event: str, index: int, first: bool = True) -> str:
    """Id of the ``event`` check of subscription ``index`` (``first``: the first one for this event)."""
    return "event:" + _suffix(event, index, first)


def batch_id(event: str, index: int, first: bool = True) -> str:
    """Id of the ``batch`` check of subscription ``index``."""
    return "batch:" + _suffix(event, index, first)


def invoke_id(target: str, name: str) -> str:
    """Id of the check invoking tool or command ``name`` (``target``: ``tool`` | ``command``)."""
    return f"invoke.{target}:{name}"


def describe(check_id: str) -> str:
    """What the check ``check_id`` verifies (empty for an id the kit does not know)."""
    fixed = CHECKS.get(check_id)
    if fixed is not None:
        return fixed.verifies
    for prefix, text in _PER_DECLARATION.items():
        if check_id.startswith(prefix):
            return text
    return ""


def is_required(check_id: str) -> bool:
    """Whether a failure of ``check_id`` fails the run."""
    fixed = CHECKS.get(check_id)
    return True if fixed is None else fixed.required
