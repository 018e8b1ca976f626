"""Running every scenario on one extension with as few launches as the results allow.

Contract of :func:`run_kit`:

* Two launches start at once: the *main* launch and the version-mismatch
  launch (:mod:`.mismatch`, in a thread of its own).
* On the main launch: the handshake (:mod:`.handshake`); if the host would
  refuse it, the kit answers ``reject`` as the host does and every other
  check is skipped with the reason. Otherwise ``welcome`` (with the
  effective deadlines) and, in this order: per subscription its ``event``
  then its ``batch`` check, ``notify.batch``, ``payload.absent-optional``,
  each tool and command, the
  heartbeats, the bad frames, and ``shutdown`` last. ``calls.*`` are judged
  from every host call seen on the way.
* Scenarios share a launch while it stays in step. After a request that got
  no reply at all, could not be sent, or whose process exited (the session
  is *tainted*), the next scenario gets a fresh launch with a fresh
  handshake, so one broken handler fails its own checks only. If a fresh
  launch is refused or does not start, the remaining checks are skipped.
* Every wait is bounded by the config's deadlines; every process is ended
  and every launch cleaned up before :func:`run_kit` returns (also when it
  raises). A machine whose isolation the config does not allow raises
  :class:`~host.errors.ExtensionStartError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import HostConfig
from ..exthost.handshake import Granted, check_hello, welcome_fields
from .answers import CallRecord, HostAnswers
from .catalog import CheckResult, batch_id, event_id, fail, invoke_id, passed, skipped
from .exchanges import check_absent_optional, check_batch, check_event, check_invoke, check_notify_batch
from .handshake import HANDSHAKE_CHECKS, judge_hello
from .launcher import KitRuntime
from .liveness import BadFrame, check_bad_control, check_bad_frame, check_heartbeats, check_shutdown
from .mismatch import check_version_mismatch
from .plan import Plan
from .report import Report
from .session import Session, wait_hello
from .target import Target

__all__ = ["run_kit"]

_HEARTBEAT = ("heartbeat.idle", "heartbeat.in-flight", "heartbeat.busy")
_CALLS = ("calls.event-id", "calls.valid")
_SHUTDOWN = ("shutdown.bye", "shutdown.exit")


@dataclass(frozen=True, slots=True)
class _Step:
    ids: tuple[str, ...]
    run: Callable[[Session], list[CheckResult]]


def _steps(plan: Plan, answers: HostAnswers) -> list[_Step]:
    def one(check: Callable[[Session], CheckResult]) -> Callable[[Session], list[CheckResult]]:
        return lambda session: [check(session)]

    def event(i: int) -> Callable[[Session], CheckResult]:
        return lambda session: check_event(session, plan, i)

    def batch(i: int) -> Callable[[Session], CheckResult]:
        return lambda session: check_batch(session, plan, i)

    def invoke(target: str, name: str, parameters: object) -> Callable[[Session], CheckResult]:
        return lambda session: check_invoke(session, plan, target, name, parameters)

    def bad_frame(bad: BadFrame) -> Callable[[Session], CheckResult]:
        return lambda session: check_bad_frame(session, plan, bad, answers.attribute)

    steps: list[_Step] = []
    for i in range(len(plan.subscriptions)):
        steps.append(_Step((plan.event_check(i),), one(event(i))))
        steps.append(_Step((plan.batch_check(i),), one(batch(i))))
    steps.append(_Step(("notify.batch",), one(lambda session: check_notify_batch(session, plan))))
    steps.append(_Step(("payload.absent-optional",), one(lambda session: check_absent_optional(session, plan))))
    for tool in plan.hello["tools"]:
        steps.append(_Step((invoke_id("tool", tool["name"]),), one(invoke("tool", tool["name"], tool["parameters"]))))
    for command in plan.hello["commands"]:
        steps.append(_Step((invoke_id("command", command["name"]),), one(invoke("command", command["name"], None))))
    steps.append(_Step(_HEARTBEAT, lambda session: check_heartbeats(session, plan)))
    bad: BadFrame
    for bad in ("bad-mac", "replay", "garbage"):
        steps.append(_Step((f"bad-frames.{bad}",), one(bad_frame(bad))))
    steps.append(_Step(("bad-frames.control",), one(lambda session: check_bad_control(session, plan))))
    steps.append(_Step(_SHUTDOWN, lambda session: check_shutdown(session, plan)))
    return steps


def _declared(hello: dict[str, object]) -> list[str]:
    """The per-declaration check ids of a ``hello`` (to skip them when it is refused)."""
    subs = hello.get("subscriptions")
    events = [str(s.get("event")) for s in subs if isinstance(s, dict)] if isinstance(subs, list) else []
    out: list[str] = []
    for i, event in enumerate(events):
        first = event not in events[:i]
        out += [event_id(event, i, first), batch_id(event, i, first)]
    for target in ("tool", "command"):
        declared = hello.get(f"{target}s")
        out += [invoke_id(target, str(d.get("name"))) for d in declared if isinstance(d, dict)] \
            if isinstance(declared, list) else []
    return out


def _calls_checks(records: list[CallRecord]) -> list[CheckResult]:
    if not records:
        return [skipped(check, "it made no host call while handling the sample events") for check in _CALLS]
    methods = ", ".join(dict.fromkeys(r.method for r in records))
    out = []
    for check in _CALLS:
        broken = [r for r in records if r.breaks == check]
        if broken:
            more = f" ({len(broken)} of {len(records)} calls)" if len(broken) > 1 else ""
            out.append(fail(check, broken[0].problem + more))
        elif check == "calls.event-id":
            out.append(passed(check, f"{len(records)} call(s) ({methods}), each with the id of the request being "
                                     "handled"))
        else:
            out.append(passed(check, f"{len(records)} call(s) ({methods}), all valid and granted"))
    return out


def _open(runtime: KitRuntime, plan: Plan, answers: HostAnswers) -> tuple[Session | None, str]:
    """A fresh welcomed launch that declares what the first one did, or ``(None, why not)``."""
    manifest, config = plan.manifest, plan.config
    launched = runtime.start(manifest)
    wait = wait_hello(launched, config.deadlines.start_ms / 1000)
    incoming = wait.incoming
    if incoming is None or incoming.msg is None or incoming.kind != "hello":
        launched.close()
        return None, "a fresh launch sent no usable hello"
    if any(incoming.msg[key] != plan.hello[key] for key in ("subscriptions", "tools", "commands")):
        launched.peer.answer("reject", {"reason": "declares other subscriptions, tools or commands than before"})
        launched.close()
        return None, ("a fresh launch declared other subscriptions, tools or commands than the first one: declare "
                      "the same things at every start")
    decision = check_hello(incoming.msg, manifest, config, runtime.granted_permissions(manifest))
    if not isinstance(decision, Granted):
        launched.peer.answer("reject", {"reason": decision.reason})
        launched.close()
        return None, f"a fresh launch was refused: {decision.reason}"
    launched.peer.answer("welcome", welcome_fields(decision))
    return Session(launched, incoming.msg, decision, answers, manifest.name), ""


def _main(runtime: KitRuntime, target: Target, config: HostConfig,
          answers: HostAnswers) -> tuple[list[CheckResult], dict[str, str]]:
    launched = runtime.start(target.manifest)
    wait = wait_hello(launched, config.deadlines.start_ms / 1000)
    verdict = judge_hello(wait, target, launched, config)
    results = list(verdict.results)
    hello = verdict.hello or {}
    who = {"name": str(hello.get("name", verdict.manifest.name)), "version": str(hello.get("version", "")),
           "sdk": str(hello.get("sdk", ""))}
    decision = verdict.decision
    if not isinstance(decision, Granted) or verdict.hello is None:
        if wait.incoming is not None:
            launched.peer.answer("reject", {"reason": getattr(decision, "reason", "refused")})
        launched.close()
        failed = ", ".join(r.id for r in results if r.status == "fail")
        reason = f"the host refuses this handshake (see {failed}), so nothing else can be checked"
        late = [*_declared(verdict.hello or {}), "notify.batch", "payload.absent-optional", *_CALLS, *_HEARTBEAT,
                "bad-frames.bad-mac", "bad-frames.replay", "bad-frames.garbage", "bad-frames.control", *_SHUTDOWN]
        return results + [skipped(c, reason) for c in late], who
    launched.peer.answer("welcome", welcome_fields(decision))
    plan = Plan(verdict.manifest, verdict.hello, decision, config)
    session: Session | None = Session(launched, verdict.hello, decision, answers, verdict.manifest.name)
    stopped = ""
    body: list[CheckResult] = []
    try:
        for step in _steps(plan, answers):
            if session is not None and session.tainted:
                session.launched.close()
                session = None
                if not stopped:
                    session, stopped = _open(runtime, plan, answers)
            if session is None:
                body += [skipped(c, stopped) for c in step.ids]
                continue
            body += step.run(session)
    finally:
        if session is not None:
            session.launched.close()
    split = next((i for i, r in enumerate(body) if r.id.startswith("heartbeat.")), len(body))
    return results + body[:split] + _calls_checks(answers.records) + body[split:], who


def run_kit(target: Target, config: HostConfig) -> Report:
    """Drive ``target`` through every scenario (see the module doc)."""
    started = time.monotonic()
    answers = HostAnswers()
    with KitRuntime(config) as runtime:
        mismatch: list[CheckResult] = []
        failure: list[BaseException] = []

        def side() -> None:
            try:
                mismatch.extend(check_version_mismatch(runtime, target.manifest, config))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)

        thread = threading.Thread(target=side, name="kithost-conformance-mismatch", daemon=True)
        thread.start()
        try:
            results, who = _main(runtime, target, config, answers)
        finally:
            thread.join(timeout=config.deadlines.start_ms / 1000 + config.deadlines.shutdown_ms / 1000 + 10)
        if failure:
            raise failure[0]
        launches = runtime.launches
    assert set(HANDSHAKE_CHECKS) <= {r.id for r in results}
    return Report(target.label, who["name"], who["version"], who["sdk"], results + mismatch,
                  time.monotonic() - started, launches)
