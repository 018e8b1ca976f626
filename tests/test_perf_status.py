"""What ``kithost ext status`` shows of a real extension: handled and notified apart, the latency split,
bad frames (an oversized reply included) and refused host calls in columns of their own."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeExt, tool_call

from host import ExtensionHost, HostConfig, Limits, status_view
from host.exthost.ops import RunningHost

SOURCE = """
from ext_sdk import Extension, Block

ext = Extension("observer", version="0.1.0", permissions=["conversation"])


@ext.on("tool_call")
def gate(event, ctx):
    if event["tool_name"] == "big":
        return Block("x" * 200_000)  # over the host's frame limit in this test: libzmq drops the connection
    if event["tool_name"] == "refused":
        try:
            ctx._call("no_such_method", {})  # refused by the host: counted as a call error
        except Exception:
            pass
    return None


@ext.on("message_update")
def seen(event, ctx):
    return None
"""


def _table(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, info: dict[str, Any]) -> str:
    """``kithost ext status`` as printed for one host holding ``info`` (the operator channel left out)."""
    host = RunningHost(pid=4242, started=0.0, cwd="/tmp/project", directory=Path("/nonexistent"))
    monkeypatch.setattr(status_view, "_collect", lambda base, pid: [(host, [info])])
    assert status_view.show_status(None, as_json=False) == 0
    return capsys.readouterr().out


def _row(table: str, name: str) -> list[str]:
    head = next(line for line in table.splitlines() if "handled" in line)
    row = next(line for line in table.splitlines() if line.lstrip("│┃ ").startswith(name))
    cells = [c.strip() for c in re.split(r"[│┃]", row)[1:-1]]
    names = [c.strip() for c in re.split(r"[│┃]", head)[1:-1]]
    return [f"{n}={c}" for n, c in zip(names, cells, strict=False)]


def test_status_table_shows_handled_notified_split_and_rejections(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ext_dir = make_ext("observer", SOURCE, ["tool_call", "message_update"])
    host = new_host(HostConfig(limits=replace(Limits(), max_frame=64 * 1024)))
    ext = host.load(ext_dir)
    for i in range(4):
        assert host.emit("tool_call", tool_call("ls", call_id=f"c{i}")).failures == ()
        host.emit("message_update", {"chunk": f"part {i}"})
    assert host.flush(10)
    stats = ext.info()["stats"]
    assert stats["handled"] == 4 and stats["notified"] == 4
    split = stats["latency_split"]
    assert split is not None and set(split) == {"host", "transit", "extension"}
    assert all(split[part]["p50_us"] is not None and split[part]["p50_us"] >= 0 for part in split)
    # the three parts account for the round trip, within what the host does outside the exchange (combine)
    assert split["host"]["p50_us"] + split["transit"]["p50_us"] + split["extension"]["p50_us"] <= \
        stats["latency_p99_us"] * 2

    assert host.emit("tool_call", dict(tool_call("ls", call_id="r"), tool_name="refused")).failures == ()
    out = host.emit("tool_call", dict(tool_call("ls", call_id="big"), tool_name="big"))
    assert [f.kind for f in out.failures] == ["disconnected"]
    deadline = time.monotonic() + 10
    while ext.state.value != "ready" and time.monotonic() < deadline:
        time.sleep(0.02)
    info = ext.info()
    assert info["frame_errors"].get("dropped") == 1

    row = _row(_table(capsys, monkeypatch, info), "observer")
    assert "handled=5" in row and "notified=4" in row, row
    assert "bad frames=1" in row, row
    assert "call errors=1" in row, row
    assert any(cell.startswith("host/transit/ext=") and cell.endswith("µs") for cell in row), row
