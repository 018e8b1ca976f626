"""The state sidecar: namespaced, atomic, survives an extension's kill -9 and a host restart."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MakeExt, tool_call

from host import ExtensionHost, HostConfig, StateStoreError
from host.exthost.state_store import StateStore, sidecar_path


def test_sidecar_path_follows_kit() -> None:
    assert sidecar_path(Path("/s/foo.jsonl")) == Path("/s/foo.ext-state.json")
    assert sidecar_path(Path("/s/foo")) == Path("/s/foo.ext-state.json")


def test_missing_and_empty_files_are_an_empty_store(tmp_path: Path) -> None:
    assert StateStore(tmp_path / "none.json").snapshot() == {}
    (tmp_path / "empty.json").write_text("  \n")
    assert StateStore(tmp_path / "empty.json").snapshot() == {}


def test_malformed_file_is_a_clear_error_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"kithost_state": 1, "extensions": {')
    with pytest.raises(StateStoreError, match=r"s\.json: extension state is not valid JSON \(line 1"):
        StateStore(path)
    assert path.read_text() == '{"kithost_state": 1, "extensions": {'
    path.write_text('["not", "a", "store"]')
    with pytest.raises(StateStoreError, match="not a kithost state file"):
        StateStore(path)


def test_reload_keeps_old_store_on_error(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = StateStore(path)
    store.set("a", "k", 1)
    path.write_text("{broken")
    with pytest.raises(StateStoreError):
        store.reload()
    assert store.get("a", "k") == 1


def test_namespaces_atomic_writes_and_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = StateStore(path)

    def writer(ext: str) -> None:
        for i in range(50):
            store.set(ext, f"k{i}", {"i": i, "ext": ext})

    threads = [threading.Thread(target=writer, args=(f"e{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    on_disk = json.loads(path.read_text())
    assert on_disk["kithost_state"] == 1
    assert {name: len(v) for name, v in on_disk["extensions"].items()} == {f"e{n}": 50 for n in range(4)}
    assert store.keys("e1")[:2] == ["k0", "k1"] and store.get("e2", "k7") == {"i": 7, "ext": "e2"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    store.delete("e1", "k0")
    store.delete("e1", "missing")
    assert StateStore(path).get("e1", "k0") is None and StateStore(path).get("e1", "k1") == {"i": 1, "ext": "e1"}


COUNTER = """
from ext_sdk import Extension
ext = Extension("counter", permissions=["conversation"])
@ext.on("tool_call")
def count(event, ctx):
    n = ctx.get_state("n", 0) + 1
    ctx.set_state("n", n)
    assert ctx.get_state("n") == n
    ctx.set_state("last", event.tool_call_id)
    assert "n" in ctx.list_state()
    ctx.delete_state("gone")
"""


def test_state_calls_mid_event_survive_kill_9_and_host_restart(make_ext: MakeExt, tmp_path: Path,
                                                              new_host: Callable[..., ExtensionHost]) -> None:
    ext_dir = make_ext("counter", COUNTER, ["tool_call"])
    state_file = tmp_path / "s.ext-state.json"
    host = new_host(HostConfig(state_path=state_file))
    host.load(ext_dir)
    for i in range(3):
        assert host.emit("tool_call", tool_call("ls", call_id=f"c{i}")).failures == ()
    proc = host.extension("counter").process
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.popen.wait(5)
    # The extension is gone; its state is not.
    assert host.state.get("counter", "n") == 3
    out = host.emit("tool_call", tool_call("ls", call_id="after-kill"))
    assert [f.kind for f in out.failures] in (["not_running"], ["disconnected"])
    host.close()
    # A new host (and a new process) sees the same state.
    again = new_host(HostConfig(state_path=state_file))
    again.load(ext_dir)
    assert again.emit("tool_call", tool_call("ls", call_id="c9")).failures == ()
    assert again.state.get("counter", "n") == 4 and again.state.get("counter", "last") == "c9"
    assert json.loads(state_file.read_text())["extensions"]["counter"]["n"] == 4


def test_temp_files_of_a_killed_writer_are_removed_when_the_store_opens(tmp_path: Path) -> None:
    path = tmp_path / "s.ext-state.json"
    StateStore(path).set("x", "k", 1)
    stale = tmp_path / f".{path.name}.abc123.tmp"
    stale.write_text('{"half": ')  # what a writer killed before its rename leaves
    old = time.time() - 60
    os.utime(stale, (old, old))
    fresh = tmp_path / f".{path.name}.def456.tmp"  # a write in progress right now: left alone
    fresh.write_text("{}")
    store = StateStore(path)
    assert not stale.exists() and fresh.exists() and store.get("x", "k") == 1
