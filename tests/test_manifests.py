"""Manifests, discovery and handshake refusals: every problem is a clear message, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FIXTURES, MakeExt

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
