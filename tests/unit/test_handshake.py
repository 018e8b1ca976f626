"""The handshake decision alone: hello + manifest + config → granted or refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ext_sdk.events import Policy
from host.config import Access, Deadlines, HostConfig, RestartMode
from host.exthost.handshake import Granted, Refused, check_hello, welcome_fields
from host.exthost.manifest import Manifest

MANIFEST = Manifest(name="gate", version="1.0.0", description="", runtime="python", main=Path("/x/main.py"),
                    command=(), events=("tool_call", "agent_end", "llm_usage"),
                    permissions=("conversation",), restart=RestartMode.ON_FAILURE, env={}, access=Access(),
                    directory=Path("/x"),
                    path=Path("/x/extension.toml"))


def hello(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"k": "hello", "seq": 1, "versions": [1], "name": "gate", "version": "1.0.0",
                            "sdk": "python/0.1.0", "subscriptions": [{"event": "tool_call", "priority": 10}],
                            "tools": [], "commands": [], "permissions": ["conversation"]}
    return {**base, **over}


ASKED = frozenset({"conversation", "ui", "state", "events"})


def refused(decision: Granted | Refused) -> str:
    assert isinstance(decision, Refused), decision
    return decision.reason


def test_accepted_with_effective_deadline_and_policy() -> None:
    decision = check_hello(hello(), MANIFEST, HostConfig(), ASKED)
    assert isinstance(decision, Granted)
    (decl,) = decision.handlers
    assert decl.event == "tool_call" and decl.priority == 10 and decl.policy is Policy.CLOSED
    assert decl.deadline_s == HostConfig().deadlines.hot_ms / 1000
    assert decision.granted == {"conversation", "ui", "state", "events"}
    assert welcome_fields(decision) == {"version": 1, "granted": ["conversation", "events", "state", "ui"],
                                        "deadlines_ms": [250]}


def test_requested_deadlines_are_clamped_and_operator_overrides_win() -> None:
    config = HostConfig(deadlines=replace(Deadlines(), max_ms=2000), policy={"gate": "open"},
                        deadline_overrides={"gate:agent_end": 99_000})
    subs = [{"event": "tool_call", "priority": 50, "deadline_ms": 60_000, "policy": "closed"},
            {"event": "agent_end", "priority": 50, "deadline_ms": 5}]
    decision = check_hello(hello(subscriptions=subs), MANIFEST, config, ASKED)
    assert isinstance(decision, Granted)
    assert [(h.deadline_s, h.policy) for h in decision.handlers] == [(2.0, Policy.OPEN), (99.0, Policy.OPEN)]


def test_refusals_name_the_problem() -> None:
    config = HostConfig()
    assert "no common protocol version" in refused(check_hello(hello(versions=[9]), MANIFEST, config, ASKED))
    assert "calls itself 'other'" in refused(check_hello(hello(name="other"), MANIFEST, config, ASKED))
    assert "['agent']" in refused(check_hello(hello(permissions=["agent"]), MANIFEST, config, ASKED))
    unknown = [{"event": "no_such_event", "priority": 50}]
    assert "unknown event" in refused(check_hello(hello(subscriptions=unknown), MANIFEST, config, ASKED))
    unlisted = [{"event": "input", "priority": 50}]
    assert "does not list" in refused(check_hello(hello(subscriptions=unlisted), MANIFEST, config, ASKED))


def test_content_events_need_the_conversation_grant() -> None:
    config = HostConfig()
    defaults = frozenset({"ui", "state", "events"})  # granted nothing beyond the defaults
    reason = refused(check_hello(hello(), MANIFEST, config, defaults))
    assert "exposes conversation content" in reason
    observer = [{"event": "llm_usage", "priority": 50}]
    decision = check_hello(hello(subscriptions=observer), MANIFEST, config, defaults)
    assert isinstance(decision, Granted) and "conversation" not in decision.granted
