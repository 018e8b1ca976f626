"""The command line as a user meets it (issue 12): the real ``kithost``, in a subprocess where it matters.

* ``--script`` names the model of a new session (``scripted/<script name>``), with or without ``--session``;
* stdout closed early (``… | head``): a quiet exit, never a traceback;
* ``--config`` before or after the command;
* ``ext logs`` says when an extension wrote nothing yet;
* ``run --json``: extension prints, handler failures, state changes and restarts are JSON lines of their
  own (``kithost.*``), not text on stderr; human mode keeps its text.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, MakeExt

from ext_sdk.events import EVENTS
from host import ExtensionHost
from host.cli import main

TIMEOUT = 90


def _env(tmp_path: Path) -> dict[str, str]:
    """The user's data and config directories of this test's own (trust file, discovery)."""
    return {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "PYTHONPATH": str(ROOT)}


def kithost(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host", *args], capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=tmp_path, env=_env(tmp_path), input=stdin)


def _script(path: Path, turns: list[list[dict[str, Any]]], **options: Any) -> Path:
    path.write_text(json.dumps({"turns": turns, **options}), encoding="utf-8")
    return path


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr and "Exception ignored" not in stderr, \
        stderr


# ---------------------------------------------------------------------- 1. --script names the model


def test_script_names_the_model_of_a_new_session_file(tmp_path: Path) -> None:
    script = _script(tmp_path / "hello.json", [[{"text": "hi from the script"}]])
    session = tmp_path / "new.jsonl"
    out = kithost(tmp_path, "run", "--script", str(script), "--session", str(session), "--no-discover", "--json",
                  "hello")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["type"] == "result" and result["model"] == "scripted/hello" and result["session"] == str(session)
    assert result["response"] == "hi from the script" and session.exists()

    chat_session = tmp_path / "chat.jsonl"
    out = kithost(tmp_path, "chat", "--script", str(script), "--session", str(chat_session), "--no-discover",
                  stdin="hello\n")
    assert out.returncode == 0, out.stderr
    assert "hi from the script" in out.stdout and chat_session.exists()
    assert "scripted/hello" in chat_session.read_text()



# ---------------------------------------------------------------------- 2. stdout closed early


def _popen(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.Popen[str]:
    (tmp_path / "stdin.txt").write_text(stdin)
    with (tmp_path / "stdin.txt").open() as inp:
        return subprocess.Popen([sys.executable, "-m", "host", *args], stdin=inp, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=_env(tmp_path))


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, err


def test_run_json_piped_into_head_exits_quietly(tmp_path: Path) -> None:
    # a long answer, streamed slowly: the reader goes away while kithost still writes
    script = _script(tmp_path / "long.json", [[{"text": "word " * 400, "chunk_size": 5, "chunk_delay_ms": 5}]])
    proc = _popen(tmp_path, "run", "--script", str(script), "--no-discover", "--json", "talk")
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert json.loads(first)["type"] == "session_start"
    proc.stdout.close()  # `| head -1`
    status, err = _finish(proc)
    _no_traceback(err)
    assert status in (0, 141), err


def test_chat_piped_into_head_exits_quietly(tmp_path: Path) -> None:
    script = _script(tmp_path / "chat.json", [[{"text": "line\n" * 400, "chunk_size": 5, "chunk_delay_ms": 5}]] * 3)
    proc = _popen(tmp_path, "chat", "--script", str(script), "--no-discover", stdin="first\nsecond\nthird\n")
    assert proc.stdout is not None
    assert proc.stdout.readline() == "line\n"
    proc.stdout.close()
    status, err = _finish(proc)
    _no_traceback(err)
    assert status in (0, 141), err


def test_any_command_whose_stdout_is_closed_exits_quietly(tmp_path: Path) -> None:
    """The reader is gone before kithost writes a byte (the schema is one big write)."""
    proc = _popen(tmp_path, "schema")
    assert proc.stdout is not None
    proc.stdout.close()
    status, err = _finish(proc)
    _no_traceback(err)
    assert status == 141, err


# ---------------------------------------------------------------------- 3. --config anywhere


def test_config_is_accepted_before_and_after_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[deadlines]\ngate = \"0ms\"\n")
    good = tmp_path / "good.toml"
    good.write_text("[deadlines]\ngate = \"500ms\"\n")
    script = _script(tmp_path / "s.json", [[{"text": "x"}]])
    message = '[deadlines] gate must be greater than 0 (got "0ms")'
    for argv in (["--config", str(bad), "ext", "list"],
                 ["ext", "list", "--config", str(bad)],
                 ["ext", "--config", str(bad), "sandbox"],
                 ["--config", str(bad), "run", "--script", str(script), "hi"],
                 ["run", "--config", str(bad), "--script", str(script), "hi"],
                 ["chat", "--script", str(script), "--config", str(bad)],
                 ["--config", str(good), "ext", "sandbox", "--config", str(bad)]):  # the last one given wins
        assert main(argv) == 1, argv
        assert message in capsys.readouterr().err, argv
    assert main(["ext", "sandbox", "--config", str(good), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["allow_weak"] is False
    # the real command line, once
    out = kithost(tmp_path, "ext", "list", "--config", str(bad))
    assert out.returncode == 1 and message in out.stderr and "unrecognized arguments" not in out.stderr
    assert "--config FILE" in kithost(tmp_path, "run", "--help").stdout


# ---------------------------------------------------------------------- 4. ext logs with nothing to show


def test_ext_logs_says_when_an_extension_wrote_nothing(tmp_path: Path, make_ext: MakeExt,
                                                       new_host: Callable[..., ExtensionHost]) -> None:
    silent = make_ext("silent-ux", """
from ext_sdk import Extension
ext = Extension("silent-ux", permissions=["conversation"])
@ext.on("tool_call")
def gate(event, ctx):
    return None
""", ["tool_call"])
    host = new_host()
    host.load(silent)
    pid = str(os.getpid())
    out = kithost(tmp_path, "ext", "logs", "silent-ux", "--host", pid)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no output from silent-ux yet (ready)"
    as_json = kithost(tmp_path, "ext", "logs", "silent-ux", "--host", pid, "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["lines"] == []  # machines: unchanged

    follow = _popen(tmp_path, "ext", "logs", "silent-ux", "--host", pid, "-f")
    assert follow.stderr is not None
    try:
        assert "no output from silent-ux yet" in follow.stderr.readline()
    finally:
        follow.send_signal(signal.SIGINT)
        status, _ = _finish(follow)
    assert status == 130


# ---------------------------------------------------------------------- 5. run --json: everything as JSON

FLAKY = textwrap.dedent("""
    import os
    import time
    from ext_sdk import Extension

    ext = Extension("flaky", permissions=["conversation"])

    @ext.on("tool_call", deadline_ms=300, policy="open")
    def gate(event, ctx):
        ctx.info("flaky saw " + event.parsed_args["command"])
        if not ctx.get_state("hung"):
            ctx.set_state("hung", True)
            time.sleep(0.8)  # past its 300 ms deadline: a timeout

    @ext.on("tool_result", deadline_ms=2000)
    def crash(event, ctx):
        if not ctx.get_state("crashed"):
            ctx.set_state("crashed", True)
            os._exit(1)  # dies inside the handler: the supervisor restarts it
""")

#: One call hangs the gate and crashes the extension; `sleep` gives the restart time; the last call meets it again.
FLAKY_TURN = [
    {"tool_calls": [{"name": "bash", "arguments": {"command": "echo one"}}]},
    {"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 3"}}]},
    {"tool_calls": [{"name": "bash", "arguments": {"command": "echo three"}}]},
    {"text": "done"},
]


def test_run_json_reports_prints_failures_states_and_restarts_as_json_events(tmp_path: Path,
                                                                           make_ext: MakeExt) -> None:
    flaky = make_ext("flaky", "", ["tool_call", "tool_result"], files={})
    (flaky / "main.py").write_text(FLAKY)
    trusted = kithost(tmp_path, "ext", "trust", "flaky", "-e", str(flaky), "--yes")
    assert trusted.returncode == 0, trusted.stderr
    script = _script(tmp_path / "flaky.json", [FLAKY_TURN])
    # A restart from a warm spare takes ~10 ms: the call after the crash could reach the new process. Without
    # spares the restart is cold (~100 ms+), so that call meets a restarting extension, which is what this
    # test reports on.
    cold = tmp_path / "cold-restarts.toml"
    cold.write_text("[supervision]\nspare = false\n")
    out = kithost(tmp_path, "run", "--config", str(cold), "--script", str(script), "-e", str(flaky),
                  "--no-discover", "--json", "go")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines[-1]["type"] == "result" and lines[-1]["response"] == "done"
    ours = [line for line in lines if line["type"].startswith("kithost.")]
    assert not [name for name in EVENTS if name.startswith("kithost.")]  # the prefix cannot collide
    assert {line["type"] for line in lines} - {line["type"] for line in ours} <= set(EVENTS) | {"result"}

    def of(notice: str, **fields: Any) -> list[dict[str, Any]]:
        return [line for line in ours if line["type"] == f"kithost.{notice}"
                and all(line.get(k) == v for k, v in fields.items())]

    prints = of("print", extension="flaky", level="info")
    assert [p["text"] for p in prints] == ["flaky saw echo one", "flaky saw echo three"]

    [timeout] = of("handler_failure", extension="flaky", event="tool_call", kind="timeout")
    assert timeout["policy"] == "open" and "300 ms" in timeout["detail"]
    [died] = of("handler_failure", extension="flaky", event="tool_result", kind="disconnected")
    assert died["policy"] == "open" and "died" in died["detail"]
    assert of("handler_failure", extension="flaky", event="tool_call", kind="not_running")  # while restarting

    states = [(s["old"], s["new"]) for s in of("extension_state", extension="flaky")]
    assert states[0] == ("starting", "starting") and ("starting", "ready") in states
    crashed = states.index(("ready", "restarting"))
    assert ("starting", "ready") in states[crashed:] and states[-1] == ("ready", "stopped")
    assert all(isinstance(s["reason"], str) and s["reason"] for s in of("extension_state"))
    [restart] = of("restart", extension="flaky")
    assert restart["restarts"] == 1 and isinstance(restart["pid"], int)
    # in order: the restart is announced after its state change, before the last call reaches it
    assert ours.index(restart) > ours.index(of("extension_state", old="ready", new="restarting")[0])
    assert ours.index(restart) < ours.index(prints[1])

    # stderr carries none of it
    assert "flaky" not in out.stderr and "handler failed" not in out.stderr and "→" not in out.stderr, out.stderr

    # human mode keeps its text on stderr
    human = kithost(tmp_path, "run", "--config", str(cold), "--script", str(script), "-e", str(flaky),
                    "--no-discover", "go")
    assert human.returncode == 0, human.stderr
    assert "[flaky info] flaky saw echo one" in human.stderr
    assert "extension flaky: tool_call handler failed (timeout" in human.stderr
    assert "kithost." not in human.stdout + human.stderr


# ---------------------------------------------------------------------- ext list: running means this very extension

TWIN = """
from ext_sdk import Extension
ext = Extension()
@ext.on("agent_end")
def seen(event, ctx):
    return None
"""


def test_ext_list_reports_running_only_for_the_same_extension_not_a_namesake(
        tmp_path: Path, make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    """A host of another checkout runs an extension of the same name: ``ext list`` must not call ours running."""
    running = make_ext("twin-ux", TWIN, ["agent_end"])
    namesake = tmp_path / "other-checkout" / "twin-ux"
    namesake.parent.mkdir()
    namesake.mkdir()
    for name in ("extension.toml", "main.py"):
        (namesake / name).write_text((running / name).read_text())
    host = new_host()
    host.load(running)
    pid = os.getpid()

    def listed(path: Path) -> dict[str, Any]:
        out = kithost(tmp_path, "ext", "list", "-e", str(path), "--json")
        assert out.returncode == 0, out.stderr
        [ext] = [e for e in json.loads(out.stdout)["extensions"] if e["name"] == "twin-ux"]
        return ext

    assert f"ready in kithost {pid}" in listed(running)["running"]
    assert not any(str(pid) in state for state in listed(namesake)["running"])
    human = kithost(tmp_path, "ext", "list", "-e", str(namesake))
    line = next(ln for ln in human.stdout.splitlines() if ln.startswith("twin-ux "))
    assert str(pid) not in line and "not running" in line


def test_run_json_drops_a_warning_a_notice_already_carries() -> None:
    import io
    import logging

    from host.agent.cli.terminal import NOTICE_RECORD, Output, json_log_records

    stream = io.StringIO()
    with json_log_records(Output(stream)):
        logging.getLogger("kithost.ext").warning("said twice", extra={NOTICE_RECORD: True})
        logging.getLogger("kithost.ext").warning("said once: %s", "here")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines == [{"type": "kithost.log", "level": "warning", "logger": "kithost.ext", "message": "said once: here"}]


NOISY = textwrap.dedent("""
    from ext_sdk import Extension
    ext = Extension()
    @ext.on("agent_end")
    def boom(event, ctx):
        raise RuntimeError("observer broke")
""")


def test_run_json_reports_a_failing_notify_handler_as_a_handler_failure(tmp_path: Path, make_ext: MakeExt) -> None:
    noisy = make_ext("noisy-ux", NOISY, ["agent_end"])
    assert kithost(tmp_path, "ext", "trust", "noisy-ux", "-e", str(noisy), "--yes").returncode == 0
    script = _script(tmp_path / "n.json", [[{"text": "done"}]])
    out = kithost(tmp_path, "run", "--script", str(script), "-e", str(noisy), "--no-discover", "--json", "go")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    [failure] = [x for x in lines if x["type"] == "kithost.handler_failure" and x["event"] == "agent_end"]
    assert failure["extension"] == "noisy-ux" and "observer broke" in failure["detail"] and failure["policy"] == "open"
    assert not [x for x in lines if x["type"] == "kithost.log" and "notify handler" in x["message"]]
    assert "observer broke" not in out.stderr
