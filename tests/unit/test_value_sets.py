"""The fixed value sets (stop reason, failure policy, failure kind) are one ``StrEnum`` each, used everywhere.

On the wire and in plain data they stay the plain strings they always were; inside kithost they are the
enum's members, and every table keyed by one of them covers all its members.
"""

from __future__ import annotations

import json

import pytest

from ext_sdk import schema
from ext_sdk.combine import FailureKind
from ext_sdk.events import EVENTS, Policy, StopReason
from ext_sdk.extension import Extension
from ext_sdk.hooks import default_policy, load_hooks
from host.agent.cli import run as cli_run
from host.agent.cli.render import render_event_for_humans
from host.agent.emitter import FailureRecord
from host.agent.turn_result import TurnResult
from host.agent.turn_stats import TurnStats


def test_the_agent_end_schema_is_the_stop_reason_enum() -> None:
    field = EVENTS["agent_end"].payload.fields["stop_reason"].type
    assert isinstance(field, schema.Enum)
    assert field.json_schema() == {"type": "string", "enum": ["completed", "cancelled", "error", "handled"]}
    assert field.values == frozenset(StopReason)
    with pytest.raises(schema.SchemaError):
        field.check("stopped")


@pytest.mark.parametrize("reason", list(StopReason))
def test_agent_end_carries_the_plain_string_and_turn_result_the_member(reason: StopReason) -> None:
    payload = TurnStats().agent_end("an answer", reason)
    assert type(payload["stop_reason"]) is str and payload["stop_reason"] == reason.value
    EVENTS["agent_end"].payload.check(payload)  # what extensions receive passes the event's own schema
    result = TurnResult.from_agent_end(payload)
    assert result.stop_reason is reason
    line = result.to_json()
    assert type(line["stop_reason"]) is str and json.loads(json.dumps(line))["stop_reason"] == reason.value


def test_every_stop_reason_has_an_exit_status_and_a_human_line() -> None:
    assert set(cli_run._EXIT) == set(StopReason)
    assert cli_run._EXIT[StopReason.COMPLETED] == cli_run._EXIT[StopReason.HANDLED] == 0
    assert cli_run._EXIT[StopReason.ERROR] == 1 and cli_run._EXIT[StopReason.CANCELLED] == 130
    heads = {}
    for reason in StopReason:
        line = render_event_for_humans("agent_end", {"stop_reason": reason.value, "cost_delta": 0.0})
        assert line is not None
        heads[reason] = line.split(":", 1)[0]
    assert heads == {StopReason.COMPLETED: "[done", StopReason.CANCELLED: "[cancelled",
                     StopReason.ERROR: "[stopped by an error", StopReason.HANDLED: "[handled by an extension"}


def test_failure_record_is_typed_and_plain_as_data() -> None:
    skipped = FailureRecord("tool_result", "redactor", FailureKind.TIMEOUT, "no reply in 250 ms", Policy.OPEN)
    stopped = FailureRecord("tool_call", "gate", FailureKind.BAD_RESULT, "block: expected bool", Policy.CLOSED)
    assert skipped.describe() == "extension redactor: tool_result handler timeout (no reply in 250 ms); skipped"
    assert stopped.describe().endswith("handler bad_result (block: expected bool); failed closed")
    data = stopped.to_json()
    assert data == {"event": "tool_call", "handler": "gate", "kind": "bad_result", "detail": "block: expected bool",
                    "policy": "closed"}
    assert type(data["kind"]) is str and type(data["policy"]) is str


def test_extension_policy_takes_the_member_or_its_string() -> None:
    ext = Extension("policies")
    ext.on("tool_call", lambda event, ctx: None, policy="closed")
    ext.on("tool_result", lambda event, ctx: None, policy=Policy.OPEN)
    ext.on("agent_end", lambda event, ctx: None)
    assert [s.policy for s in ext.subscriptions] == [Policy.CLOSED, Policy.OPEN, None]
    assert isinstance(ext.subscriptions[0].policy, Policy)
    declared = [s.declaration() for s in ext.subscriptions]
    assert [d.get("policy") for d in declared] == ["closed", "open", None]
    assert type(declared[0]["policy"]) is str
    for bad in ("maybe", "", ["closed"], 1):
        with pytest.raises(ValueError, match="policy must be 'open' or 'closed'"):
            ext.on("tool_call", lambda event, ctx: None, policy=bad)  # type: ignore[arg-type]
    assert len(ext.subscriptions) == 3


def test_hook_policies_are_members() -> None:
    config = load_hooks({"format": "claude", "handlers": [
        {"event": "PreToolUse", "command": "a", "timeout": "2s"},
        {"event": "PostToolUse", "command": "b", "timeout": "2s", "policy": "closed"},
        {"event": "Stop", "command": "c", "timeout": "1s"},
    ]})
    assert [h.policy for h in config.handlers] == [Policy.CLOSED, Policy.CLOSED, Policy.OPEN]
    assert all(isinstance(h.policy, Policy) for h in config.handlers)
    assert config.policy("tool_result") is Policy.CLOSED and config.policy("agent_end") is Policy.OPEN
    assert default_policy("input") is Policy.CLOSED and default_policy("tool_result") is Policy.OPEN
