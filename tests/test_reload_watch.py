"""The folder watcher and the operator's ``reload`` op, with real processes.

kit's watcher reloads everything on any change of a watched ``.go`` file and
prints a failure once; here a change in one extension's folder reloads that
extension only, a broken edit is reported and leaves the old version serving,
and the fix reloads it (nothing cached).
"""

from __future__ import annotations

import io
import os
import queue
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import MakeExt, tool_call

from host import ExtensionHost
from host.errors import UnknownExtensionError
from host.exthost.host import runtime_base
from host.exthost.ops import OpsClient, find_hosts
from host.exthost.reload_cli import reload_extension

GATE = """
from ext_sdk import Extension, Block
ext = Extension("{name}", permissions=["conversation"])

@ext.on("tool_call")
def gate(event, ctx):
    return Block(reason="{text}")
"""


def next_reload(notices: queue.Queue[dict[str, Any]], timeout_s: float = 15.0) -> dict[str, Any]:
    return notices.get(timeout=timeout_s)


def test_an_edit_reloads_that_extension_a_broken_one_is_reported_and_the_fix_loads(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    reloads: queue.Queue[dict[str, Any]] = queue.Queue()
    host = new_host(notice=lambda kind, data: reloads.put(data) if kind == "reload" else None)
    watched = make_ext("watched", GATE.format(name="watched", text="v1"), ["tool_call"])
    bystander = host.load(make_ext("bystander", GATE.format(name="bystander", text="b"), ["tool_call"]))
    host.load(watched)
    host.watch(debounce_s=0.2)
    assert host.watching

    (watched / "main.py").write_text(GATE.format(name="watched", text="version two"))
    done = next_reload(reloads)
    assert done["name"] == "watched" and done["ok"], done
    assert [o.reason for o in [host.emit("tool_call", tool_call("ls"))]] == ["b"]  # bystander runs first
    assert host.extension("watched").reloads == 1 and bystander.reloads == 0

    (watched / "main.py").write_text("def broken(:\n")
    done = next_reload(reloads)
    assert not done["ok"] and "SyntaxError" in done["log_tail"]
    host.unload("bystander")
    assert host.emit("tool_call", tool_call("ls")).reason == "version two"

    (watched / "main.py").write_text(GATE.format(name="watched", text="fixed!"))
    done = next_reload(reloads)
    assert done["ok"], done
    assert host.emit("tool_call", tool_call("ls")).reason == "fixed!"
    host.unwatch()
    assert not host.watching
    (watched / "main.py").write_text(GATE.format(name="watched", text="unwatched"))
    time.sleep(0.6)  # two debounce periods: nothing may happen now that it is off
    assert reloads.empty()


def test_the_operator_reload_op(make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host()
    directory = make_ext("gate", GATE.format(name="gate", text="v1"), ["tool_call"])
    host.load(directory)
    (found,) = [h for h in find_hosts(runtime_base()) if h.pid == os.getpid()]
    client = OpsClient(found, timeout_s=30)
    (directory / "main.py").write_text(GATE.format(name="gate", text="v2"))
    data = client.call("reload", name="gate")
    assert data["ok"] and data["name"] == "gate" and data["pid"] == host.extension("gate").info()["pid"]
    assert host.emit("tool_call", tool_call("ls")).reason == "v2"
    data = client.call("reload", name="nobody")
    assert not data["ok"] and "no extension named 'nobody'" in data["reason"]
    status = client.call("status")
    assert status["reloads"]["gate"]["ok"] and status["watching"] is False
    assert [e["restarts"] for e in status["extensions"]] == [0]


def test_kithost_ext_reload_prints_the_result(make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host()
    directory = make_ext("gate", GATE.format(name="gate", text="v1"), ["tool_call"])
    host.load(directory)
    (directory / "main.py").write_text(GATE.format(name="gate", text="v2") + "\n@ext.tool('t', 'a tool')\n"
                                       "def t(args, ctx):\n    return 'x'\n")
    out = io.StringIO()
    assert reload_extension("gate", pid=os.getpid(), out=out) == 0
    assert out.getvalue().startswith(f"reloaded gate in kithost pid {os.getpid()}: version 0.1.0, pid ")
    assert "(new tools: t)" in out.getvalue()
    (directory / "main.py").write_text("raise RuntimeError('half-written file')\n")
    out = io.StringIO()
    assert reload_extension("gate", pid=os.getpid(), out=out) == 1
    text = out.getvalue()
    assert "reload of gate failed" in text and "exited with status 3 before the handshake" in text
    assert "RuntimeError: half-written file" in text
    assert host.emit("tool_call", tool_call("ls")).reason == "v2"
    with pytest.raises(UnknownExtensionError, match="no running kithost has an extension named 'nope'"):
        reload_extension("nope", pid=os.getpid())
