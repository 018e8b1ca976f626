"""Warm spares: a crash restarts from a process started in advance, whose extension code had not run.

Real extension processes (sandboxed at whatever level this machine gives),
real sockets: the spare is a launch of its own that waits at reading its
secret (a named pipe); the restart hands it the secret and it handshakes.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from collections.abc import Callable
from dataclasses import replace

import psutil
from conftest import MakeExt, tool_call, wait_for

from host import ExtensionHost, HostConfig
from host.exthost.extension import RunningExtension
from host.exthost.supervisor import ExtState

#: The module records when its code ran; the gate reports it (and the session it was set up for).
GATE = """
import time
from ext_sdk import Extension, Block
ext = Extension("spared", permissions=["conversation"])
IMPORTED_AT = time.time()
SESSION = None

@ext.on("session_start")
def start(event, ctx):
    global SESSION
    SESSION = event.session_id

@ext.on("tool_call")
def gate(event, ctx):
    return Block(reason=f"{IMPORTED_AT!r} {SESSION}")
"""




def spare_config(**supervision: object) -> HostConfig:
    base = HostConfig()
    return replace(base, supervision=replace(base.supervision, **{"spare_after_s": 0.1, **supervision}))


def gate_reason(host: ExtensionHost) -> tuple[float, str]:
    out = host.emit("tool_call", tool_call("ls"))
    assert out.stopped and not out.failures, out
    imported_at, session = out.reason.split(" ")
    return float(imported_at), session


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_kill_9_restarts_from_the_spare_which_ran_no_extension_code(make_ext: MakeExt,
                                                                   new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host(spare_config())
    ext: RunningExtension = host.load(make_ext("spared", GATE, ["session_start", "tool_call"]))
    host.emit("session_start", {"session_id": "s1"})
    assert host.flush(5)
    first_import, session = gate_reason(host)
    assert session == "s1"

    assert wait_for(lambda: ext.spare_pid is not None), ext.info()
    spare_pid = ext.spare_pid
    assert spare_pid is not None and ext.process is not None and spare_pid != ext.process.pid
    assert ext.info()["spare"]["pid"] == spare_pid
    assert wait_for(ext.spare_parked)  # it waits at its secret: had it imported the extension, IMPORTED_AT
    assert ext.info()["spare"] == {"pid": spare_pid, "waiting": True}  # would be before the kill
    killed_at = time.time()
    os.kill(ext.process.pid, signal.SIGKILL)

    assert wait_for(lambda: ext.state is ExtState.READY and ext.restarts == 1), ext.transitions[-4:]
    assert ext.process is not None and ext.process.pid == spare_pid
    assert any(t.reason == f"the spare pid {spare_pid}" for t in ext.transitions), ext.transitions[-4:]
    imported_at, session = gate_reason(host)
    assert imported_at >= killed_at > first_import  # the extension's code ran only once it was needed
    assert session == "s1"  # and it got the host's session_start before the tool call

    # the supervisor starts the next spare
    assert wait_for(lambda: ext.spare_pid not in (None, spare_pid)), ext.info()
    next_spare = ext.spare_pid
    assert next_spare is not None
    host.unload("spared")
    assert wait_for(lambda: not alive(next_spare) and not alive(spare_pid), 10)


def test_the_parked_secret_is_a_pipe_only_the_host_and_the_extension_can_read(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host(spare_config())
    ext = host.load(make_ext("spared", GATE, ["session_start", "tool_call"]))
    assert wait_for(lambda: ext.spare_pid is not None), ext.info()
    spare = ext.spare._spare  # the launch behind the pid
    assert spare is not None and spare.launch.parked
    st = os.lstat(spare.launch.endpoints.secret_file)
    assert stat.S_ISFIFO(st.st_mode)
    assert st.st_mode & 0o007 == 0  # nobody else
    assert st.st_mode & 0o020 == 0  # the extension's group may read it, never write it


def test_a_spare_that_dies_is_replaced_and_the_extension_keeps_serving(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host(spare_config())
    ext = host.load(make_ext("spared", GATE, ["session_start", "tool_call"]))
    assert wait_for(lambda: ext.spare_pid is not None), ext.info()
    first = ext.spare_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: ext.spare_pid not in (None, first)), ext.info()
    assert ext.state is ExtState.READY and ext.restarts == 0
    gate_reason(host)


def test_with_spares_off_a_restart_starts_cold(make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host(spare_config(spare=False))
    ext = host.load(make_ext("spared", GATE, ["session_start", "tool_call"]))
    time.sleep(0.5)  # five times spare_after: a spare would be there by now
    assert ext.spare_pid is None and ext.info()["spare"] is None
    assert ext.process is not None
    os.kill(ext.process.pid, signal.SIGKILL)
    assert wait_for(lambda: ext.state is ExtState.READY and ext.restarts == 1), ext.transitions[-4:]
    assert any(t.reason.startswith("spawned pid") for t in ext.transitions[-3:]), ext.transitions[-3:]
    gate_reason(host)


def test_a_reload_drops_the_old_versions_spare(make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host(spare_config())
    folder = make_ext("spared", GATE, ["session_start", "tool_call"])
    ext = host.load(folder)
    assert wait_for(lambda: ext.spare_pid is not None), ext.info()
    old_spare = ext.spare_pid
    assert old_spare is not None
    (folder / "main.py").write_text(GATE.replace("Block(reason=", "Block(reason='v2 ' + "))
    result = host.reload("spared")
    assert result.ok, result
    assert wait_for(lambda: not alive(old_spare), 10)
    assert wait_for(lambda: ext.spare_pid not in (None, old_spare)), ext.info()
    out = host.emit("tool_call", tool_call("ls"))
    assert out.stopped and out.reason.startswith("v2 "), out
