"""The pure parts of hot reload: the switch gate, the trust re-check, the change list, the watcher's debounce."""

from __future__ import annotations

import threading
from pathlib import Path

from ext_sdk.combine import HandlerDecl
from ext_sdk.events import Policy
from host.config import Access
from host.exthost.handshake import Granted
from host.exthost.reload import ReloadResult, SwitchGate, describe_changes, regrant
from host.exthost.trust import Grant, Request, Verdict
from host.exthost.watch import Debouncer, fingerprint

# ---------------------------------------------------------------------------------------------- switch gate


def test_the_gate_lets_calls_through_until_closed_and_waits_for_those_inside() -> None:
    gate = SwitchGate()
    assert gate.enter(0) and gate.enter(0) and gate.inside == 2
    with gate.closed(0.0) as drained:
        assert not drained  # two calls still inside, no time given
    gate.leave()
    gate.leave()
    entered: list[bool] = []
    with gate.closed(5.0) as drained:
        assert drained
        # a call that arrives while it is closed waits, and is refused when the gate stays closed
        assert not gate.enter(0.01)
        waiter = threading.Thread(target=lambda: entered.append(gate.enter(5)))
        waiter.start()
    waiter.join(5)
    assert entered == [True] and gate.inside == 1
    gate.leave()
    assert gate.inside == 0


def test_closing_waits_until_the_last_call_inside_leaves() -> None:
    gate = SwitchGate()
    assert gate.enter(0)
    threading.Timer(0.05, gate.leave).start()
    with gate.closed(5.0) as drained:
        assert drained and gate.inside == 0


# ---------------------------------------------------------------------------------------------- regrant

BEFORE = Request(frozenset({"session"}), ("tool_call",), Access(network=("example.com:443",)))
RUNNING = Grant(frozenset({"session", "state", "ui", "events"}), Access(network=("example.com:443",)), "trusted")


def refused(request: Request) -> Verdict:
    return Verdict(request, None, "it changed since you trusted it (changed file main.py); it asks for: ...; "
                                  "Review it, then run `kithost ext trust x`", ("changed file main.py",))


def test_a_verdict_that_grants_is_used_as_it_is() -> None:
    grant = Grant(frozenset({"state"}), Access(), "config")
    assert regrant(RUNNING, BEFORE, Verdict(BEFORE, grant)) == (grant, "")


def test_an_edit_that_asks_for_nothing_new_keeps_the_grant_narrowed_to_what_it_asks() -> None:
    same = Request(frozenset({"session"}), ("tool_call",), Access(network=("example.com:443",)))
    grant, reason = regrant(RUNNING, BEFORE, refused(same))
    assert reason == "" and grant == RUNNING
    less = Request(frozenset(), (), Access())
    grant, reason = regrant(RUNNING, BEFORE, refused(less))
    assert reason == "" and grant == Grant(frozenset({"state", "ui", "events"}), Access(), "trusted")


def test_asking_for_more_is_refused_with_what_is_new() -> None:
    more = Request(frozenset({"session", "llm"}), ("tool_call", "agent_start"),
                   Access(network=("example.com:443", "evil.example:80"), processes=True))
    grant, reason = regrant(RUNNING, BEFORE, refused(more))
    assert grant is None
    assert reason.startswith("the new version asks for more than it was granted (host calls: llm; conversation "
                             "content through: agent_start; network: evil.example:80; start other programs); ")
    assert "kithost ext trust x" in reason and reason.endswith("then reload it again")


def test_a_default_grant_does_not_cover_a_new_request() -> None:
    default = Grant(frozenset({"state", "ui", "events"}), Access(), "default")
    grant, reason = regrant(default, Request(frozenset(), (), Access()),
                            refused(Request(frozenset(), (), Access(read=(Path("/etc"),)))))
    assert grant is None and "read: /etc" in reason


# ---------------------------------------------------------------------------------------------- results


def granted(version: str, events: list[str], tools: list[str], commands: list[str]) -> Granted:
    handlers = tuple(HandlerDecl(i, e, 50, 0.25, Policy.OPEN) for i, e in enumerate(events))
    return Granted(1, version, "py", handlers, tuple({"name": t} for t in tools),
                   tuple({"name": c} for c in commands), frozenset())


def test_changes_between_two_handshakes_in_words() -> None:
    old = granted("1.0", ["tool_call", "tool_call", "agent_end"], ["a"], ["x"])
    new = granted("1.1", ["tool_call", "tool_result"], ["a", "b"], [])
    assert describe_changes(old, new) == ("version 1.0 → 1.1", "new events: tool_result", "dropped events: agent_end",
                                          "new tools: b", "dropped commands: x")
    assert describe_changes(old, old) == ()


def test_a_result_describes_itself() -> None:
    ok = ReloadResult("x", True, version="2", pid=7, changes=("new tools: b",))
    assert ok.describe() == "x: reloaded (version 2, pid 7): new tools: b"
    assert ReloadResult("x", False, "the new version did not start: boom").describe() == (
        "x: reload failed: the new version did not start: boom")
    assert ok.to_json()["changes"] == ["new tools: b"] and ok.to_json()["ok"] is True


# ---------------------------------------------------------------------------------------------- debounce


def test_a_change_fires_once_after_it_settles_and_every_change_restarts_the_wait() -> None:
    d = Debouncer(0.3)
    d.observe("a", 1, 0.0)  # baseline: no change
    assert d.due(10.0) == []
    d.observe("a", 2, 1.0)
    d.observe("a", 3, 1.2)  # still changing: the quiet period starts again
    assert d.due(1.4) == []
    d.observe("a", 3, 1.4)
    assert d.due(1.5) == ["a"] and d.due(5.0) == []


def test_names_are_independent_and_forgotten_when_gone() -> None:
    d = Debouncer(0.3)
    d.observe("a", 1, 0.0)
    d.observe("b", 1, 0.0)
    d.observe("a", 2, 1.0)
    d.observe("b", 2, 1.2)
    assert d.due(1.3) == ["a"] and d.due(1.5) == ["b"]
    d.observe("a", 3, 2.0)
    d.keep_only({"b"})
    assert d.due(9.0) == []
    d.observe("a", 4, 10.0)  # seen again after being forgotten: a new baseline
    assert d.due(20.0) == []


def test_fingerprint_sees_edits_and_skips_caches_and_editor_files(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("a = 1\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "util.py").write_text("")
    before = fingerprint(tmp_path)
    assert [entry[0] for entry in before] == ["main.py", "pkg/util.py"]
    for noise in ("__pycache__/main.cpython-311.pyc", "node_modules/x/index.js", ".git/HEAD", ".main.py.swp",
                  "main.py~", "4913", ".#main.py"):
        (tmp_path / noise).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / noise).write_text("x")
    assert fingerprint(tmp_path) == before
    (tmp_path / "main.py").write_text("a = 22\n")
    assert fingerprint(tmp_path) != before
    assert fingerprint(tmp_path / "gone") == ()
