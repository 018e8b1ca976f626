"""The reason ``ext status`` shows: after a restart, why the process was replaced — not "handshake done".

Through a real host: ``info()`` (what ``--json`` prints) and the human table of ``kithost ext status``
(:func:`host.status_view.show_status`, reading this process's host over its ops channel).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from conftest import MakeExt, tool_call, wait_for

from host import ExtensionHost, HostConfig
from host.config import Supervision
from host.status_view import show_status

FAST = Supervision(backoff_initial_ms=50, backoff_max_ms=400, heartbeat_ms=100, hang_ms=2000, watch_ms=100)

HOG = """
import time
from ext_sdk import Extension
ext = Extension("hog", permissions=["conversation"])
@ext.on("tool_call", deadline_ms=300)
def gate(event, ctx):
    if event.tool_call_id != "hog":
        return None
    hog = []
    while True:
        hog.append(bytearray(16 * 1024 * 1024))
        time.sleep(0.01)
"""

CRASHER = """
import os
from ext_sdk import Extension
ext = Extension("crasher", permissions=["conversation"])
@ext.on("tool_call", deadline_ms=1000)
def gate(event, ctx):
    if event.tool_call_id == "crash":
        os._exit(1)
"""




def table(name: str, capsys: pytest.CaptureFixture[str]) -> str:
    """The human status table of ``name`` as one line of text (cells folded over lines joined again)."""
    assert show_status(name, as_json=False, pid=os.getpid()) == 0
    out = capsys.readouterr().out
    cells = [line.rsplit("│", 2)[-2].strip() for line in out.splitlines() if line.count("│") > 2]
    return " ".join(cells)


def cgroup_memory(host: ExtensionHost) -> bool:
    """Whether this host's launches get a cgroup memory limit (root, cgroup layer available)."""
    return host.confiner.probe.cgroup is not None


def test_memory_is_counted_once_where_a_cgroup_holds_the_limit(make_ext: MakeExt,
                                                               new_host: Callable[..., ExtensionHost]) -> None:
    """``resources.rss_bytes`` is the cgroup's usage (``memory_source: cgroup``) where the launch has one."""
    host = new_host(HostConfig(supervision=FAST))
    ext = host.load(make_ext("crasher", CRASHER, ["tool_call"]))
    assert wait_for(lambda: ext.info()["resources"] is not None)
    resources = ext.info()["resources"]
    assert resources["rss_bytes"] > 0
    if cgroup_memory(host):
        assert ext.confined is not None and ext.confined.memory_limit_bytes == FAST.memory_mb * 2**20
        assert resources["memory_source"] == "cgroup", resources
    else:
        assert ext.confined is None or ext.confined.memory_limit_bytes is None
        assert resources["memory_source"] == "rss", resources


def test_a_memory_kill_is_the_reason_shown_after_the_restart(make_ext: MakeExt,
                                                             new_host: Callable[..., ExtensionHost],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    host = new_host(HostConfig(supervision=FAST, extension_limits={"hog": {"memory_mb": 150}}))  # type: ignore[arg-type]
    ext = host.load(make_ext("hog", HOG, ["tool_call"]))
    assert ext.info()["restart_cause"] == "" and ext.info()["reason"].startswith("handshake done")
    host.emit("tool_call", tool_call("ls", call_id="hog"))
    assert wait_for(lambda: ext.restarts == 1 and ext.state.value == "ready")
    info = ext.info()
    assert info["last_reason"].startswith("handshake done")  # the last transition: routine
    # The RSS watchdog ("(rss …)") or, where the cgroup layer is on, the kernel ("(cgroup out-of-memory kill)").
    assert info["restart_cause"].startswith("killed: memory limit 150 MiB ("), info
    if cgroup_memory(host):  # memory counted once: the kernel holds the limit, the RSS sum never kills
        assert info["restart_cause"] == "killed: memory limit 150 MiB (cgroup out-of-memory kill)", info
    assert "restarting in" not in info["restart_cause"]
    assert info["reason"] == f"restarted after: {info['restart_cause']}"
    shown = table("hog", capsys)
    assert "restarted after: killed: memory limit 150 MiB (" in shown, shown
    assert "handshake done" not in shown


def test_the_reason_follows_crashes_operator_restarts_and_death(make_ext: MakeExt,
                                                                new_host: Callable[..., ExtensionHost],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    host = new_host(HostConfig(supervision=FAST))
    ext = host.load(make_ext("crasher", CRASHER, ["tool_call"]))
    host.emit("tool_call", tool_call("ls", call_id="crash"))
    assert wait_for(lambda: ext.restarts == 1 and ext.state.value == "ready")
    assert ext.info()["reason"] == "restarted after: process exited with status 1"
    assert "restarted after: process exited with status 1" in table("crasher", capsys)
    host.restart("crasher")
    assert wait_for(lambda: ext.restarts == 2 and ext.state.value == "ready")
    assert ext.info()["reason"] == "restarted by the operator"
    # Dead (the event-crash limit): the last transition is itself the news, and says why.
    for _ in range(3):
        assert wait_for(lambda: ext.state.value == "ready")
        host.emit("tool_call", tool_call("ls", call_id="crash"))
    assert wait_for(lambda: ext.state.value == "dead")
    info = ext.info()
    assert info["reason"] == info["last_reason"] and "crashes on every event" in info["reason"]
    shown = table("crasher", capsys)
    assert "crashes on every event" in shown and "restarted after" not in shown, shown
