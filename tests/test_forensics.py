"""Finding the bad extension through the real CLI (issue 12, item 7): ``run --record``, ``replay``,
``ext bisect`` and ``ext call``, with real extension processes and the offline scripted provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import MakeExt, tool_call, tool_result

from host.forensics.record import read_recording

TIMEOUT = 180

#: Seven harmless gates and one that blocks the second bash call it sees (it keeps a count in its state, so a
#: replay must deliver the events in order for it to block the same call again).
HARMLESS = """
from ext_sdk import Extension
ext = Extension("{name}")
@ext.on("tool_call")
def gate(event, ctx):
    ctx.set_state("seen", ctx.get_state("seen", 0) + 1)
"""
CULPRIT = """
from ext_sdk import Block, Extension
ext = Extension("{name}")
@ext.on("tool_call")
def gate(event, ctx):
    seen = ctx.get_state("seen", 0) + 1
    ctx.set_state("seen", seen)
    if seen == 2:
        return Block("{name}: the second call is not allowed")
"""
TURN = {"turns": [[{"tool_calls": [{"name": "bash", "arguments": {"command": "echo one"}}]},
                   {"tool_calls": [{"name": "bash", "arguments": {"command": "echo two"}}]},
                   {"text": "Done."}]]}


def kithost(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    config.write_text('[sandbox]\ntrust = "all"\nallow_weak = true\n')
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    return subprocess.run([sys.executable, "-m", "host", *args[:1], "--config", str(config), *args[1:]],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env, stdin=subprocess.DEVNULL,
                          cwd=tmp_path)


def _eight(make_ext: MakeExt, culprit: int) -> list[Path]:
    return [make_ext(f"ext{i}", (CULPRIT if i == culprit else HARMLESS).format(name=f"ext{i}"), ["tool_call"])
            for i in range(8)]


def _record(tmp_path: Path, dirs: list[Path]) -> Path:
    script = tmp_path / "turn.json"
    script.write_text(json.dumps(TURN))
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    recording = tmp_path / "session.rec"
    extensions = [arg for d in dirs for arg in ("-e", str(d))]
    out = kithost(tmp_path, "run", "--script", str(script), "--no-discover", "--cwd", str(work),
                  "--record", str(recording), *extensions, "--json", "run two commands")
    assert out.returncode == 0, out.stderr
    return recording


def test_bisect_finds_the_culprit_among_eight_in_at_most_four_replays(make_ext: MakeExt, tmp_path: Path) -> None:
    dirs = _eight(make_ext, culprit=5)
    recording = _record(tmp_path, dirs)
    rec = read_recording(recording)
    assert [e.name for e in rec.extensions] == [f"ext{i}" for i in range(8)]
    calls = [e for e in rec.events if e.event == "tool_call"]
    assert len(calls) == 2 and not calls[0].outcome["stopped"] and calls[1].outcome["stopped"]
    assert calls[1].outcome["by"] == "ext5" and len(calls[0].steps) == 8  # every handler's answer, timed
    assert all(isinstance(step["ms"], float) for step in calls[0].steps)

    out = kithost(tmp_path, "ext", "bisect", str(recording), "--bad", "blocked:tool_call~second", "--json")
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["culprits"] == ["ext5"] and found["replays"] <= 4, found
    human = kithost(tmp_path, "ext", "bisect", str(recording), "--bad", "blocked:tool_call")
    assert human.returncode == 0 and "culprit: ext5" in human.stdout, human.stderr
    assert "replay 1:" in human.stderr and "Traceback" not in human.stderr


def test_replay_reports_where_a_changed_extension_answers_differently(make_ext: MakeExt, tmp_path: Path) -> None:
    dirs = _eight(make_ext, culprit=2)[:3]
    recording = _record(tmp_path, dirs)
    same = kithost(tmp_path, "replay", str(recording))
    assert same.returncode == 0 and "no differences in" in same.stdout, same.stdout + same.stderr
    (dirs[2] / "main.py").write_text(HARMLESS.format(name="ext2"))  # the new version no longer blocks
    changed = kithost(tmp_path, "replay", str(recording), "--json")
    assert changed.returncode == 1, changed.stderr
    diffs = json.loads(changed.stdout)["differences"]
    assert any(d["event"] == "tool_call" and "stopped by ext2" in d["what"] and "goes through" in d["what"]
               for d in diffs), diffs
    without = kithost(tmp_path, "replay", str(recording), "-e", str(dirs[0]))  # against another set
    assert without.returncode == 1 and "goes through" in without.stdout


def test_bisect_and_replay_refuse_bad_input_in_words(make_ext: MakeExt, tmp_path: Path) -> None:
    recording = _record(tmp_path, _eight(make_ext, culprit=1)[:2])
    for args, words in [(("ext", "bisect", str(recording), "--bad", "exploded"), "starts with one of"),
                        (("ext", "bisect", str(recording), "--bad", "failed"), "does not show failed"),
                        (("replay", str(tmp_path / "nope.rec")), "no such recording"),
                        (("replay", str(tmp_path / "config.toml")), "not a kithost recording")]:
        out = kithost(tmp_path, *args)
        assert out.returncode == 1 and words in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)


def test_ext_call_prints_result_timing_and_host_calls(make_ext: MakeExt, tmp_path: Path) -> None:
    culprit = make_ext("gatekeeper", CULPRIT.format(name="gatekeeper").replace("seen == 2", "seen >= 1"),
                       ["tool_call"])
    payload = tmp_path / "call.json"
    payload.write_text(json.dumps(tool_call("rm -rf /", call_id="c1")))
    out = kithost(tmp_path, "ext", "call", str(culprit), "tool_call", str(payload), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["outcome"]["stopped"] and report["outcome"]["reason"] == \
        "gatekeeper: the second call is not allowed"
    assert [c["method"] for c in report["host_calls"]] == ["get_state", "set_state"]
    assert all(c["ok"] for c in report["host_calls"]) and report["ms"] > 0 and report["start_ms"] > 0
    human = kithost(tmp_path, "ext", "call", str(culprit), "tool_call", str(payload))
    assert "stopped by gatekeeper" in human.stdout and "host call get_state" in human.stdout
    bad = kithost(tmp_path, "ext", "call", str(culprit), "tool_call", '{"tool_name": 3}')
    assert bad.returncode == 1 and "bad payload for 'tool_call'" in bad.stderr and "Traceback" not in bad.stderr
    other = kithost(tmp_path, "ext", "call", str(culprit), "tool_result", json.dumps(tool_result("ok")))
    assert other.returncode == 1 and "does not subscribe to 'tool_result'" in other.stderr, other.stderr
    unknown = kithost(tmp_path, "ext", "call", str(culprit), "turn_end", "{}")
    assert unknown.returncode == 1 and "unknown event 'turn_end'" in unknown.stderr
