"""The command line, the committed schema and the README's examples stay true to the code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXTENSIONS, ROOT

from ext_sdk.jsonschema import render
from host.cli import main

README = (ROOT / "README.md").read_text()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def test_committed_schema_is_in_sync() -> None:
    committed = (ROOT / "docs" / "protocol.schema.json").read_text()
    assert committed == render(), "run: kithost schema --write docs/protocol.schema.json"
    schema = json.loads(committed)
    assert len(schema["x-kithost"]["events"]) == 35  # kit's 34 + before_model
    assert schema["x-kithost"]["events"]["tool_call"]["mode"] == "gate"


def test_schema_check_command(tmp_path: Path) -> None:
    assert main(["schema", "--check", str(ROOT / "docs" / "protocol.schema.json")]) == 0
    stale = tmp_path / "s.json"
    stale.write_text("{}")
    assert main(["schema", "--check", str(stale)]) == 1


def test_help_explains_every_command() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    for word in ("ext", "schema", "demo", "examples:"):
        assert word in out.stdout
    assert "load order" in run_cli("ext", "list", "--help").stdout


def test_ext_list_and_check(tmp_path: Path) -> None:
    out = run_cli("ext", "list", "-e", str(EXTENSIONS), "--json")
    assert out.returncode == 0, out.stderr
    names = [e["name"] for e in json.loads(out.stdout)["extensions"]]
    assert names == sorted(names) and "permission-gate" in names
    out = run_cli("ext", "check", str(EXTENSIONS / "permission_gate"))
    assert out.returncode == 0, out.stderr
    assert "handshake ok" in out.stdout and "tool_call" in out.stdout and "stopped (shutdown request)" in out.stdout


def test_errors_are_one_line_not_a_traceback(tmp_path: Path) -> None:
    out = run_cli("ext", "check", str(tmp_path / "nothing"))
    assert out.returncode == 1 and out.stderr.startswith("kithost: error:") and "Traceback" not in out.stderr
    bad = tmp_path / "config.toml"
    bad.write_text("[deadlines]\ngate = \"0ms\"\n")
    out = run_cli("--config", str(bad), "ext", "list")
    assert out.returncode == 1 and '[deadlines] gate must be greater than 0 (got "0ms")' in out.stderr
    assert "Traceback" not in out.stderr


def test_extension_file_run_by_hand_explains_itself() -> None:
    path = EXTENSIONS / "permission_gate" / "permission_gate.py"
    out = subprocess.run([sys.executable, "-m", "ext_sdk", "run", str(path)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2 and "runs inside kithost" in out.stderr
    out = subprocess.run([sys.executable, "-m", "ext_sdk", "check", str(path)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and json.loads(out.stdout)["subscriptions"][0]["event"] == "tool_call"


def _python_blocks(after: str) -> list[str]:
    section = README.split(after, 1)[1]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_embedding_example_runs() -> None:
    code = _python_blocks("## Embedding the host")[0]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("True permission-gate")


def test_readme_fakehost_example_runs() -> None:
    code = next(b for b in _python_blocks("## Writing an extension") if "FakeHost" in b)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr


@pytest.mark.slow  # a whole scripted agent session with six extension processes and a restart
def test_make_demo_runs_a_real_agent_session_offline() -> None:
    """What `make demo` shows: blocked command, redacted secret, usage report, a contained broken extension."""
    out = run_cli("demo")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "the model sees: Error: permission-gate blocked this command" in text
    assert "OPENAI_API_KEY=[REDACTED api key]" in text and "sk-proj-" not in text
    assert "[usage-budget] turn: 5 model call(s), 4 tool call(s)" in text
    assert "misbehaving: tool_call handler failed (timeout" in text
    assert "the extension died during the handler (exited with status 1)" in text
    assert "the supervisor restarted misbehaving 1 time(s); it is ready again" in text
    assert "demo finished" in text


@pytest.mark.slow  # two real `kithost run --json` sessions over every example extension
def test_kithost_run_json_with_a_directory_of_extensions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "build").mkdir()
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z\n")
    script = ROOT / "host" / "demo_data" / "demo_script.json"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # a trust file of this test's own
    env = dict(os.environ)
    command = [sys.executable, "-m", "host", "run", "--script", str(script), "-e", str(EXTENSIONS),
               "--no-discover", "--json", "clean up"]
    untrusted = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert untrusted.returncode == 1 and "not trusted" in untrusted.stderr and "kithost ext trust" in untrusted.stderr
    assert "Traceback" not in untrusted.stderr and (tmp_path / "build").exists()  # nothing ran
    for name in ("context-pruner", "permission-gate", "secret-redactor", "usage-budget", "tool-gate-js",
                 "observer-js"):
        # `kithost ext trust NAME --yes` in-process (its own code path, no interpreter start per extension);
        # the runs before and after stay real CLI processes reading the trust file it writes.
        status = main(["ext", "trust", name, "-e", str(EXTENSIONS), "--yes"])
        trusted = capsys.readouterr()
        assert status == 0 and f"trusted {name}" in trusted.out, trusted.err
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types[-1] == "result" and "agent_end" in types and types.count("tool_call") == 4
    blocked = [e for e in events if e["type"] == "tool_result" and "blocked" in e["content"]]
    assert len(blocked) == 1 and blocked[0]["is_error"]
    assert "sk-proj-" not in "".join(e.get("content", "") for e in events if e["type"] == "tool_result")
    assert not (tmp_path / "build").exists() and (tmp_path / ".env").exists()


def test_readme_script_example_parses() -> None:
    from host.agent.scripted import parse_script

    section = README.split("## Scripting the offline model", 1)[1]
    example = re.findall(r"```json\n(.*?)```", section, re.S)[0]
    script = parse_script(json.loads(example), "README example")
    assert len(script.turns) == 2
