"""A cancelled turn drops the rest of its scripted steps: the next prompt plays the next turn.

Real scripted sessions (the harness's :class:`Rig`), cancelled as Ctrl-C does (``session.cancel()``)
at the places a cancel can land: during a step's stream, during a bash command, before a tool call ran.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from .harness import Rig

RigFactory = Callable[..., Rig]

NEXT_TURN = [{"expect": {"last_role": "user", "last_contains": "second prompt"}, "text": "second answer"}]
LEFTOVER = {"text": "LEFTOVER of the cancelled turn"}


def cancel_on(r: Rig, event: str, when: Callable[[Any], bool] = lambda e: True) -> list[bool]:
    """Cancel the running turn the first time ``event`` fires with ``when(event)`` true."""
    fired: list[bool] = []

    def hook(e: Any) -> None:
        if not fired and when(e):
            fired.append(True)
            r.session.cancel()

    r.session.host.on(event, hook)
    return fired


def test_a_cancel_during_the_stream_drops_the_rest_of_the_turn(rig: RigFactory,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    r = rig([
        [{"text": "first step, streamed slowly", "chunk_size": 3, "chunk_delay_ms": 5,
          "tool_calls": [{"name": "bash", "arguments": {"command": "echo never"}}]},
         LEFTOVER],
        NEXT_TURN,
    ])
    fired = cancel_on(r, "message_update")
    with caplog.at_level(logging.INFO, logger="kithost.agent.scripted"):
        first = r.run("first prompt")
        assert fired and first.stop_reason == "cancelled"
        second = r.run("second prompt")
    assert second.stop_reason == "completed", second.error
    assert second.response == "second answer"
    assert "LEFTOVER" not in str(r.session.tree.messages())
    assert "turn 1 was cancelled (the agent stopped reading the last step's stream); its 1 remaining step(s) " \
           "dropped" in caplog.text


def test_a_cancel_during_a_bash_command_drops_the_rest_of_the_turn(rig: RigFactory) -> None:
    r = rig([
        [{"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 30"}},
                         {"name": "bash", "arguments": {"command": "echo not run"}}]},
         LEFTOVER, {"text": "another leftover"}],
        NEXT_TURN,
        [{"expect": {"last_contains": "third prompt"}, "text": "third answer"}],
    ])
    fired = cancel_on(r, "tool_execution_start")  # the command then sees the cancel and is killed
    first = r.run("first prompt")
    assert fired and first.stop_reason == "cancelled"
    results = [m["content"] for m in r.session.tree.messages() if m.get("role") == "tool"]
    assert "[cancelled" in results[0] and results[1] == "Error: cancelled before it ran"
    second = r.run("second prompt")
    assert second.stop_reason == "completed" and second.response == "second answer", second.error
    assert r.run("third prompt").response == "third answer"  # later turns are where they were


def test_a_turn_that_completes_or_is_steered_keeps_its_steps(rig: RigFactory) -> None:
    """No cancel, no drop: a steered message mid-turn still gets the turn's next step."""
    r = rig([
        [{"tool_calls": [{"name": "bash", "arguments": {"command": "echo hi"}}]},
         {"expect": {"last_role": "user", "last_contains": "steered"}, "text": "steered answer"}],
        NEXT_TURN,
    ])
    fired: list[bool] = []

    def steer(e: Any) -> None:
        if not fired:
            fired.append(True)
            r.session.steer("steered in")

    r.session.host.on("tool_result", steer)
    first = r.run("first prompt")
    assert first.stop_reason == "completed" and first.response == "steered answer", first.error
    assert r.run("second prompt").response == "second answer"


def test_a_cancel_in_the_last_step_drops_nothing(rig: RigFactory) -> None:
    r = rig([
        [{"tool_calls": [{"name": "bash", "arguments": {"command": "echo hi"}}]},
         {"text": "the last step, streamed slowly", "chunk_size": 3, "chunk_delay_ms": 5}],
        NEXT_TURN,
    ])
    fired = cancel_on(r, "message_update")
    assert r.run("first prompt").stop_reason == "cancelled" and fired
    assert r.run("second prompt").response == "second answer"
