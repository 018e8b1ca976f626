"""Manifests, discovery and handshake refusals: every problem is a clear message, never a traceback."""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, MakeExt

from host import ExtensionHost, ExtensionStartError, HostConfig, ManifestError
from host.exthost.discovery import discover
from host.exthost.manifest import load_manifest

OK = """
from ext_sdk import Extension
ext = Extension("{name}", permissions={perms})
@ext.on("{event}")
def handler(event, ctx):
    return None
"""


def test_manifest_errors_name_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "extension.toml").write_text('name = "Bad Name"\nmain = "x.py"\n')
    with pytest.raises(ManifestError, match=r"extension\.toml: name: .*lowercase"):
        load_manifest(bad)
    (bad / "extension.toml").write_text('name = "ok"\nmain = "x.py"\nevents = ["tool_cal"]\n')
    with pytest.raises(ManifestError, match=r"events: .*unknown event"):
        load_manifest(bad)
    (bad / "extension.toml").write_text('name = "ok"\nmain = "missing.py"\n')
    with pytest.raises(ManifestError, match=r"main file 'missing\.py' does not exist"):
        load_manifest(bad)
    (bad / "extension.toml").write_text('name = "ok"\nmain = \n')
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_manifest(bad)
    with pytest.raises(ManifestError, match="no such file"):
        load_manifest(tmp_path / "nowhere")


def test_discovery_order_duplicates_and_problems(make_ext: MakeExt, tmp_path: Path) -> None:
    user = tmp_path / "user"
    for name in ("zeta", "alpha"):
        src = make_ext(name, OK.format(name=name, perms=[], event="agent_start"), ["agent_start"])
        src.rename(user / name) if user.exists() else (user.mkdir(), src.rename(user / name))
    dup = make_ext("alpha", OK.format(name="alpha", perms=[], event="agent_start"), ["agent_start"])
    found = discover([user, tmp_path / "missing-dir"], [dup, tmp_path / "nope"])
    assert [m.name for m in found.manifests] == ["alpha", "zeta"]
    problems = " | ".join(p for _, p in found.problems)
    assert "already loaded from" in problems and "no such file or directory" in problems


@pytest.mark.parametrize(
    ("source", "events", "perms", "expected"),
    [
        (OK.format(name="x", perms=[], event="tool_call"), ["tool_call"], [],
         "exposes conversation content, but 'conversation' was not granted"),
        (OK.format(name="x", perms=["conversation"], event="tool_call"), ["agent_start"], ["conversation"],
         "which its manifest does not list"),
        (OK.format(name="y", perms=[], event="agent_start"), ["agent_start"], [],
         "calls itself 'y' but its manifest says 'x'"),
        (OK.format(name="x", perms=["agent"], event="agent_start"), ["agent_start"], [],
         "that its manifest does not declare"),
        ("raise RuntimeError('boom at import')", ["agent_start"], [], "exited with status 3"),
    ],
)
def test_handshake_refusals_are_clear(source: str, events: list[str], perms: list[str], expected: str,
                                      make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    path = make_ext("x", source, events, permissions=perms)
    host = new_host()
    with pytest.raises(ExtensionStartError, match=expected) as info:
        host.load(path)
    assert host.extension("x").state.value == "dead"
    if "status 3" in expected:
        assert "boom at import" in str(info.value)  # stderr tail is part of the message


def test_operator_can_withhold_a_permission(make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    path = make_ext("x", OK.format(name="x", perms=["conversation"], event="tool_call"), ["tool_call"])
    host = new_host(HostConfig(permissions={"x": ()}))
    with pytest.raises(ExtensionStartError, match="'conversation' was not granted"):
        host.load(path)


def test_no_common_protocol_version(make_ext: MakeExt, new_host: Callable[..., ExtensionHost],
                                    tmp_path: Path) -> None:
    source = (FIXTURES / "rogue_ext.py").read_text().replace('"versions": [1]', '"versions": [9]')
    path = make_ext("rogue", "", ["tool_call"], runtime="command", command=[sys.executable, "v9.py"],
                    files={"v9.py": source})
    host = new_host()
    with pytest.raises(ExtensionStartError, match=r"no common protocol version \(extension speaks \[9\]"):
        host.load(path)


def test_a_hung_start_is_bounded(make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    from dataclasses import replace

    from host import Deadlines

    path = make_ext("sleepy", "", ["agent_start"], runtime="command",
                    command=[sys.executable, "-c", "import time; time.sleep(60)"])
    host = new_host(HostConfig(deadlines=replace(Deadlines(), start_ms=500)))
    with pytest.raises(ExtensionStartError, match=r"no handshake within 0\.5 s"):
        host.load(path)


#: A Python extension without the SDK (pyzmq + msgpack + hmac), run through its ``#!/usr/bin/env python3`` line:
#: the ``observer.py`` of docs/MANIFEST.md's example.
SHEBANG_OBSERVER = r'''#!/usr/bin/env python3
"""raw-observer: a kithost extension without the SDK, started through its #! line."""
import hashlib, hmac, os, sys, threading

import msgpack, zmq

with open(os.environ["KITHOST_SECRET_FILE"], "rb") as fh:
    KEY = fh.read()
ctx = zmq.Context()
events, calls, control = ctx.socket(zmq.REP), ctx.socket(zmq.REQ), ctx.socket(zmq.REP)
events.connect(os.environ["KITHOST_EVENTS"])
calls.connect(os.environ["KITHOST_CALLS"])
control.connect(os.environ["KITHOST_CONTROL"])


class Seal:
    def __init__(self):
        self.seq = 0

    def __call__(self, kind, **fields):
        self.seq += 1
        body = msgpack.packb({"k": kind, "seq": self.seq, **fields})
        return hmac.new(KEY, body, hashlib.sha256).digest() + body


def unseal(frame):
    mac, body = frame[:32], frame[32:]
    return msgpack.unpackb(body) if hmac.compare_digest(mac, hmac.new(KEY, body, hashlib.sha256).digest()) else None


print(f"interpreter: {sys.executable}", file=sys.stderr, flush=True)
calls.send(Seal()("hello", versions=[1], name=os.environ["KITHOST_EXTENSION"], version="0.0.0",
                  sdk="raw-observer/1", tools=[], commands=[], permissions=["conversation"],
                  subscriptions=[{"event": "session_start", "priority": 50}, {"event": "agent_end", "priority": 50}]))
if (unseal(calls.recv()) or {}).get("k") != "welcome":
    sys.exit(4)


def serve_control():
    seal = Seal()
    while True:
        msg = unseal(control.recv())
        if msg is None:
            control.send(b"")
        elif msg["k"] == "ping":
            control.send(seal("pong", id=msg["id"], busy=False, busy_ms=0))
        else:
            control.send(seal("bye", id=msg["id"]))
            os._exit(0)


threading.Thread(target=serve_control, daemon=True).start()
seal = Seal()
while True:
    msg = unseal(events.recv())
    if msg is None:
        events.send(b"")
        continue
    count = len(msg["events"]) if msg["k"] == "batch" else 1
    events.send(seal("reply", id=msg["id"], results=[{"ok": True, "result": None}] * count))
'''


def test_the_manifest_doc_shebang_example_starts_under_a_real_host(tmp_path: Path,
                                                                   new_host: Callable[..., ExtensionHost]) -> None:
    """docs/MANIFEST.md: ``command = ["./observer.py"]`` with ``[access] processes = true`` runs the script through
    ``/usr/bin/env`` and the host's virtualenv ``python3`` (first on the extension's ``PATH``), sandboxed as this
    machine allows; the host gets its ``hello`` and delivers events."""
    text = (ROOT / "docs" / "MANIFEST.md").read_text()
    blocks = [b for b in re.findall(r"^```toml\n(.*?)^```$", text, re.S | re.M)
              if tomllib.loads(b).get("command") == ["./observer.py"]]
    assert len(blocks) == 1, "docs/MANIFEST.md must have one example running ./observer.py"
    manifest = tomllib.loads(blocks[0])
    assert manifest["access"] == {"processes": True}
    directory = tmp_path / "raw-observer"
    directory.mkdir()
    (directory / "extension.toml").write_text(blocks[0])
    script = directory / "observer.py"
    script.write_text(SHEBANG_OBSERVER)
    script.chmod(0o755)

    host = new_host()
    ext = host.load(directory)
    assert ext.state.running, ext.log.tail()
    assert [h.event for h in ext.declared.handlers] == manifest["events"]
    assert f"interpreter: {Path(sys.executable).parent / 'python3'}" in ext.log.tail(), ext.log.tail()
    host.emit("session_start", {"session_id": "s1"})
    assert host.flush(10)
    assert ext.stats.notified == 1, ext.log.tail()

    # Where Landlock confines what may be executed, the grant is what makes it start.
    assert ext.confined is not None
    host.close()
    if any(layer.startswith("landlock") for layer in ext.confined.layers):
        bare = tmp_path / "bare" / "raw-observer"
        bare.mkdir(parents=True)
        (bare / "extension.toml").write_text(blocks[0].split("[access]", 1)[0])
        (bare / "observer.py").write_text(SHEBANG_OBSERVER)
        (bare / "observer.py").chmod(0o755)
        with pytest.raises(ExtensionStartError, match="Permission denied"):
            new_host().load(bare)
