"""The operator's view of a running host: ext status / logs / restart, for people and machines."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from conftest import EXTENSIONS, ROOT, MakeExt, tool_call

from host import ExtensionHost


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def test_status_logs_and_restart_of_a_running_host(make_ext: MakeExt,
                                                   new_host: Callable[..., ExtensionHost]) -> None:
    noisy = make_ext("noisy", """
import sys
from ext_sdk import Extension
ext = Extension("noisy", permissions=["conversation"])
@ext.on("tool_call")
def gate(event, ctx):
    print("noisy saw", event.tool_call_id, file=sys.stderr, flush=True)
""", ["tool_call"])
    host = new_host()
    host.load_many([EXTENSIONS / "permission_gate", noisy])
    for i in range(5):
        host.emit("tool_call", tool_call("ls", call_id=f"id{i}"))
    time.sleep(0.3)  # let the stderr reader and one resource sample catch up
    out = cli("ext", "status", "--json", "--host", str(__import__("os").getpid()))
    assert out.returncode == 0, out.stderr
    [entry] = json.loads(out.stdout)
    exts = {e["name"]: e for e in entry["extensions"]}
    gate = exts["permission-gate"]
    assert gate["state"] == "ready" and gate["pid"] and gate["restarts"] == 0
    assert gate["stats"]["handled"] == 5 and gate["stats"]["latency_p50_us"] > 0
    assert gate["resources"]["rss_bytes"] > 0
    human = cli("ext", "status", "permission-gate")
    assert human.returncode == 0 and "permission-gate" in human.stdout and "ready" in human.stdout
    logs = cli("ext", "logs", "noisy", "-n", "3")
    assert logs.returncode == 0 and logs.stdout.count("noisy saw") == 3 and "id4" in logs.stdout
    old_pid = host.extension("noisy").process.pid  # type: ignore[union-attr]
    restart = cli("ext", "restart", "noisy")
    assert restart.returncode == 0, restart.stderr
    end = time.monotonic() + 10
    while time.monotonic() < end and not (host.extension("noisy").restarts == 1
                                          and host.extension("noisy").state.value == "ready"):
        time.sleep(0.05)
    noisy_ext = host.extension("noisy")
    assert noisy_ext.restarts == 1 and noisy_ext.process is not None and noisy_ext.process.pid != old_pid
    assert any(t.reason == "restarted by the operator" for t in noisy_ext.transitions)
    missing = cli("ext", "logs", "no-such-ext")
    assert missing.returncode == 1 and "no running kithost has an extension named 'no-such-ext'" in missing.stderr


def test_status_without_a_running_host(tmp_path: Path) -> None:
    from host.status_view import show_status

    assert show_status(None, as_json=False, base=tmp_path) == 0


def test_logs_follow_prints_new_lines_as_they_come(make_ext: MakeExt,
                                                   new_host: Callable[..., ExtensionHost]) -> None:
    talker = make_ext("talker", """
import sys
from ext_sdk import Extension
ext = Extension("talker", permissions=["conversation"])
@ext.on("tool_call")
def gate(event, ctx):
    print("said", event.tool_call_id, file=sys.stderr, flush=True)
""", ["tool_call"])
    host = new_host()
    host.load(talker)
    host.emit("tool_call", tool_call("ls", call_id="first"))
    follower = subprocess.Popen([sys.executable, "-m", "host", "ext", "logs", "talker", "-f"], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
    def next_line() -> str:
        assert follower.stdout is not None
        ready, _, _ = select.select([follower.stdout], [], [], 10)  # bounded wait
        return follower.stdout.readline() if ready else ""

    try:
        assert "said first" in next_line()
        host.emit("tool_call", tool_call("ls", call_id="second"))
        assert "said second" in next_line()  # arrives while following
    finally:
        follower.kill()
        follower.wait(5)
