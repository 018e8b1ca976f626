"""Helpers for the agent-loop tests: real extension processes, the scripted provider, a recorded event stream.

* :class:`Rig` — an open :class:`AgentSession` plus everything it emitted
  (the application sink's view) and easy access to extension state.
* :data:`RECORDER` — an extension that appends ``[event, payload]`` to its
  state key ``log`` for every event it subscribes to (so a test asserts on
  what an extension really received, in the order it received it).
* :data:`MISBEHAVING` — an extension that raises / exits / hangs / returns junk
  in every handler.
* :func:`run_full_scenario` — a session that fires every agent event from its
  real places (two turns, a subagent, a model switch, a compaction, a fork, a
  session switch); used with a recorder and with every misbehaviour.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ext_sdk.events import EVENTS
from host import HostConfig
from host.agent import AgentConfig, AgentSession, TurnResult
from host.agent.scripted import reset
from host.config import Sandbox, TrustMode

ALL_EVENTS = sorted(EVENTS)
MODEL = "scripted/main"


def write_ext(root: Path, name: str, source: str, events: Sequence[str],
              permissions: Sequence[str] = ("conversation",)) -> Path:
    """An extension directory (manifest + main.py) under ``root``; like the ``make_ext`` fixture."""
    directory = root / "exts" / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text(textwrap.dedent(source))
    (directory / "extension.toml").write_text("\n".join([
        f'name = "{name}"', 'version = "0.1.0"', 'runtime = "python"', 'main = "main.py"',
        "events = " + json.dumps(list(events)), "permissions = " + json.dumps(list(permissions)),
    ]) + "\n")
    return directory


RECORDER = """
from ext_sdk import Extension
ext = Extension({name!r}, permissions={permissions!r})

def record(event, ctx):
    log = ctx.get_state("log", [])
    log.append([ctx.event, dict(event)])
    ctx.set_state("log", log)

for name in {events!r}:
    ext.on(name, record, deadline_ms=10000)
"""


def recorder(root: Path, events: Sequence[str] = ALL_EVENTS, name: str = "recorder",
             permissions: Sequence[str] = ("conversation",)) -> Path:
    """A recorder extension subscribed to ``events``."""
    source = RECORDER.format(name=name, permissions=list(permissions), events=list(events))
    return write_ext(root, name, source, events, permissions)


MISBEHAVING = """
import os, time
from ext_sdk import Extension
ext = Extension({name!r}, permissions=["conversation"])

def handler(event, ctx):
    if {mode!r} == "raise":
        raise RuntimeError("boom in " + ctx.event)
    if {mode!r} == "exit":
        os._exit(1)  # a crash: the host restarts the process, and it crashes again at its next event
    if {mode!r} == "hang":
        time.sleep({sleep})
        return None
    return {{"junk": [1, 2, 3]}}

for name in {events!r}:
    ext.on(name, handler, deadline_ms={deadline_ms}, policy={policy!r})
"""


def misbehaving(root: Path, mode: str, events: Sequence[str] = ALL_EVENTS, policy: str | None = "open",
                deadline_ms: int = 50, sleep: float = 1.0, name: str = "bad") -> Path:
    """An extension that misbehaves (``raise``/``exit``/``hang``/``junk``) in every handler."""
    source = MISBEHAVING.format(name=name, mode=mode, events=list(events), policy=policy,
                                deadline_ms=deadline_ms, sleep=sleep)
    return write_ext(root, name, source, events)


def write_script(path: Path, turns: list[list[dict[str, Any]]], **options: Any) -> Path:
    """A script file; its cursor is rewound (a fresh file for the provider)."""
    path.write_text(json.dumps({"turns": turns, **options}, indent=1), encoding="utf-8")
    reset(path)
    return path


def checked_host_config(**overrides: Any) -> HostConfig:
    """Every payload schema-checked, even when nobody subscribed; no search directories."""
    trusting = Sandbox(trust=TrustMode.ALL, allow_weak=True)  # the scenarios' extensions are the tests' own
    return replace(HostConfig(validate_all_payloads=True, search_dirs=(), sandbox=trusting), **overrides)


def fast_agent_config(**overrides: Any) -> AgentConfig:
    """No retry backoff."""
    return replace(AgentConfig(retry_base_delay_s=0.0, followup_wait_s=5.0), **overrides)


@dataclass
class Rig:
    """An open session and what it emitted."""

    session: AgentSession
    script: Path
    #: Every event the sink received: ``(type, payload)``, in order.
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def types(self) -> list[str]:
        return [t for t, _ in self.events]

    def payloads(self, event: str) -> list[dict[str, Any]]:
        return [d for t, d in self.events if t == event]

    def run(self, prompt: str, source: str = "cli") -> TurnResult:
        return self.session.run(prompt, source)

    def flush(self) -> None:
        assert self.session.host.flush(10.0), "notify events were not delivered in 10 s"

    def log(self, ext: str = "recorder") -> list[tuple[str, dict[str, Any]]]:
        """What a recorder extension received, in order (after delivering pending notify events)."""
        self.flush()
        return [(e, p) for e, p in self.session.host.state.get(ext, "log") or []]

    def state(self, ext: str, key: str) -> Any:
        self.flush()
        return self.session.host.state.get(ext, key)

    def played(self) -> int:
        """Model calls the script answered (or refused)."""
        from host.agent.scripted import LIBRARY

        return LIBRARY.player(str(self.script)).calls


def open_rig(tmp: Path, turns: list[list[dict[str, Any]]], exts: Sequence[Path] = (), *,
             script_options: dict[str, Any] | None = None, host_config: HostConfig | None = None,
             agent_config: AgentConfig | None = None, session_path: Path | None = None,
             model: str = MODEL, cwd: Path | None = None) -> Rig:
    """Open a session on a fresh script; the caller closes ``rig.session``."""
    script = write_script(tmp / f"script-{len(list(tmp.glob('script-*')))}.json", turns, **(script_options or {}))
    work = cwd or tmp / "work"
    work.mkdir(exist_ok=True)
    rig_events: list[tuple[str, dict[str, Any]]] = []
    session = AgentSession.open(model, script, list(exts), session_path or tmp / "session.jsonl", work,
                                host_config or checked_host_config(), agent_config=agent_config or fast_agent_config(),
                                on_event=lambda t, d: rig_events.append((t, d)), on_print=lambda *a: None)
    return Rig(session, script, rig_events)


# --------------------------------------------------------------------------- the full scenario

#: Script of :func:`run_full_scenario` (strict_turns off: the subagent's steps sit between the parent's).
FULL_TURNS: list[list[dict[str, Any]]] = [
    [  # turn 1: a transient failure, then reasoning + text + warning + source + a bash call
        {"error": "RateLimitError", "message": "slow down"},
        {"reasoning": "Let me look.", "text": "Running.", "warnings": ["careful"],
         "sources": [{"url": "https://example.com/doc", "title": "Doc"}],
         "tool_calls": [{"name": "bash", "arguments": {"command": "echo out; echo err >&2"}}]},
        {"expect": {"last_role": "tool", "last_contains": ["out", "err"]}, "text": "Delegating.",
         "tool_calls": [{"name": "subagent", "arguments": {"task": "count to two"}}]},
    ],
    [  # the subagent's turn
        {"expect": {"last_role": "user", "last_contains": "count to two", "tools_exclude": ["subagent"]},
         "text": "one", "tool_calls": [{"name": "bash", "arguments": {"command": "echo two"}}]},
        {"expect": {"last_contains": "two"}, "text": "one two"},
    ],
    [  # back in the parent's turn 1
        {"expect": {"last_role": "tool", "last_contains": "one two"}, "text": "All done."},
    ],
    [  # turn 2: a call that fails for good
        {"error": "BadRequestError", "message": "nope, bad request"},
    ],
    [  # the compaction summary
        {"expect": {"last_contains": "list files"}, "text": "SUMMARY: listed files, delegated counting."},
    ],
]


@dataclass
class ScenarioOutput:
    """What :func:`run_full_scenario` observed."""

    events: list[tuple[str, dict[str, Any]]]
    turn1: TurnResult
    turn2: TurnResult
    compacted: bool
    compaction_summary: str
    forked: bool
    switched: bool
    first_session: Path
    second_session: Path
    first_user_entry: str
    state_before_switch: dict[str, Any]
    state_after_switch: dict[str, Any]
    ext_info: list[dict[str, Any]]
    child_sessions: list[Path]
    failures: list[Any]


def run_full_scenario(tmp: Path, exts: Sequence[Path], host_config: HostConfig | None = None) -> ScenarioOutput:
    """Fire every agent event from its real place (see the module doc); the session is closed on return."""
    rig = open_rig(tmp, FULL_TURNS, exts, script_options={"strict_turns": False}, host_config=host_config,
                   agent_config=fast_agent_config(compact_keep_messages=2),
                   session_path=tmp / "first.jsonl")
    session = rig.session
    try:
        turn1 = rig.run("list files")
        session.set_model("scripted/second")
        turn2 = rig.run("again")
        compaction = session.compact()
        # the first user message lies before the compaction: look in the whole file
        first_user = next(e.id for e in session.tree.entries()
                          if e.type == "message" and e.data["message"]["role"] == "user")
        fork = session.fork(first_user)
        session.host.flush(10.0)
        state_before = session.host.state.snapshot()
        switch = session.new_session()
        session.host.flush(10.0)
        state_after = session.host.state.snapshot()
        second = session.path
        info = session.extensions_info()
    finally:
        session.close()
    return ScenarioOutput(rig.events, turn1, turn2, compaction.compacted, compaction.summary, fork.forked,
                          switch.switched, tmp / "first.jsonl", second, first_user, state_before, state_after, info,
                          sorted((tmp / "first.subagents").glob("*.jsonl")),
                          list(turn1.failures) + list(turn2.failures))


def check_scenario_behaviour(out: ScenarioOutput) -> None:
    """What the agent must do in the full scenario whatever the extensions do (they are all fail-open)."""
    assert out.turn1.stop_reason == "completed", out.turn1
    assert out.turn1.response == "All done."
    assert out.turn1.tool_names == ("bash", "subagent")
    assert out.turn2.stop_reason == "error" and "nope, bad request" in out.turn2.error
    assert out.compacted and out.compaction_summary.startswith("SUMMARY:")
    assert out.forked and out.switched
    assert out.second_session != out.first_session and out.second_session.exists()
    assert len(out.child_sessions) == 1
    assert {t for t, _ in out.events} == set(ALL_EVENTS), set(ALL_EVENTS) - {t for t, _ in out.events}
