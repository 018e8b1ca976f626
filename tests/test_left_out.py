"""One broken extension never stops the agent, unless it is required (a fail-closed gate) — through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import MakeExt

from host import ExtensionHost
from host.exthost.host import runtime_base
from host.exthost.ops import OpsClient, find_hosts

#: A harmless turn: one tool call that only lists files, then an answer.
SCRIPT_TURN = {"turns": [[{"text": "Let me look.", "tool_calls": [{"name": "ls", "arguments": {}}]},
                          {"text": "Done."}]]}
GOOD = """
from ext_sdk import Extension
ext = Extension("good")
@ext.on("llm_usage")
def usage(event, ctx):
    ctx.set_state("calls", ctx.get_state("calls", 0) + 1)
"""
BROKEN = "raise RuntimeError('broken on purpose')\n"


def script(tmp_path: Path) -> Path:
    path = tmp_path / "look.json"
    path.write_text(json.dumps(SCRIPT_TURN))
    return path


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    config.write_text('[sandbox]\ntrust = "all"\nallow_weak = true\n')
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    command = [sys.executable, "-m", "host", "--config", str(config), "run", "--script", str(script(tmp_path)),
               "--no-discover", "--cwd", str(work), *args, "clean up"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)


def test_a_broken_observer_is_left_out_and_the_turn_runs(make_ext: MakeExt, tmp_path: Path) -> None:
    good = make_ext("good", GOOD, ["llm_usage"], permissions=[])
    broken = make_ext("observer", BROKEN, ["llm_usage"], permissions=[])
    out = run(tmp_path, "-e", str(good), "-e", str(broken), "--json")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    left = [e for e in events if e["type"] == "kithost.print" and e["extension"] == "observer"]
    assert left and "left out" in left[0]["text"] and "status 3" in left[0]["text"]
    assert events[-1]["type"] == "result" and "Traceback" not in out.stderr


def test_a_broken_fail_closed_gate_stops_the_agent_unless_disabled(make_ext: MakeExt, tmp_path: Path) -> None:
    gate = make_ext("gatekeeper", BROKEN, ["tool_call"])  # a tool_call gate: fail-closed by default
    refused = run(tmp_path, "-e", str(gate))
    assert refused.returncode == 1 and "kithost: error: extension 'gatekeeper'" in refused.stderr
    assert "it is required" in refused.stderr and "--disable gatekeeper" in refused.stderr
    allowed = run(tmp_path, "-e", str(gate), "--disable", "gatekeeper")
    assert allowed.returncode == 0, allowed.stderr
    config = tmp_path / "optional.toml"
    config.write_text('[sandbox]\ntrust = "all"\nallow_weak = true\n[required]\ngatekeeper = false\n')
    optional = subprocess.run([sys.executable, "-m", "host", "run", "--config", str(config), "--script",
                               str(script(tmp_path)),
                               "--no-discover", "--cwd", str(tmp_path / "work"), "-e", str(gate), "clean up"],
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                              env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")})
    assert optional.returncode == 0 and "left out" in optional.stderr, optional.stderr


def test_ext_status_shows_an_extension_that_failed_to_load(make_ext: MakeExt,
                                                          new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host()
    report = host.load_many([make_ext("good", GOOD, ["llm_usage"], permissions=[]),
                             make_ext("observer", BROKEN, ["llm_usage"], permissions=[])])
    host.note_load_failures(report)
    (mine,) = [h for h in find_hosts(runtime_base()) if h.pid == os.getpid()]
    failed = OpsClient(mine).call("status")["failed"]
    assert [f["name"] for f in failed] == ["observer"] and "status 3" in failed[0]["error"]
    assert failed[0]["state"] == "failed" and failed[0]["required"] is False
    shown = subprocess.run([sys.executable, "-m", "host", "ext", "status", "--host", str(os.getpid())],
                           capture_output=True, text=True, timeout=60)
    assert "failed to load" in shown.stdout and "observer" in shown.stdout, shown.stdout + shown.stderr
