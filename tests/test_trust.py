"""Trust: an extension that asks for more than the defaults starts only once the operator granted it,
and a changed extension asks again (real extension processes, a real trust file)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MakeExt, tool_call

from host import ExtensionHost, ExtensionStartError, HostConfig
from host.config import Sandbox, TrustMode
from host.exthost.manifest import load_manifest
from host.exthost.trust import TrustStore

ASKER = """
from ext_sdk import Extension
ext = Extension("{name}", permissions={perms!r})
@ext.on("tool_call")
def gate(event, ctx):
    try:
        ctx.send_message("hi")
        ctx.set_state("agent_call", "allowed")
    except Exception as exc:
        ctx.set_state("agent_call", str(exc))
"""


def asking(sandbox_dir: Path) -> HostConfig:
    return HostConfig(sandbox=Sandbox(trust=TrustMode.ASK, trust_file=sandbox_dir / "trust.json", allow_weak=True))


def test_untrusted_extension_does_not_start_and_says_how_to_trust_it(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost], tmp_path: Path) -> None:
    path = make_ext("asker", ASKER.format(name="asker", perms=["conversation"]), ["tool_call"])
    host = new_host(asking(tmp_path))
    with pytest.raises(ExtensionStartError, match=r"not trusted: it asks for: host calls: conversation; "
                                                  r"conversation content through: tool_call.*kithost ext trust asker"):
        host.load(path)
    assert host.extensions() == [] or host.extensions()[0].process is None  # nothing was started


def test_an_extension_that_asks_for_nothing_starts_without_trust(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost], tmp_path: Path) -> None:
    source = "from ext_sdk import Extension\next = Extension('modest')\n@ext.on('llm_usage')\ndef n(e, ctx): pass\n"
    ext = new_host(asking(tmp_path)).load(make_ext("modest", source, ["llm_usage"], permissions=[]))
    assert ext.grant.source == "default" and ext.info()["grant_source"] == "default"


def test_trusted_content_starts_and_a_change_asks_again(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost], tmp_path: Path) -> None:
    path = make_ext("asker", ASKER.format(name="asker", perms=["conversation"]), ["tool_call"])
    store = TrustStore(tmp_path / "trust.json")
    manifest = load_manifest(path)
    from host.exthost.trust import Request

    store.record(manifest, Request.of(manifest))
    assert oct(os.stat(store.path).st_mode & 0o777) == "0o600"
    host = new_host(asking(tmp_path))
    ext = host.load(path)
    assert ext.grant.source == "trusted" and "conversation" in ext.granted
    host.emit("tool_call", tool_call("ls"))
    assert "permission denied" in host.state.get("asker", "agent_call")  # 'agent' was never asked for
    host.unload("asker")
    # The author changes the code and asks for more: it must not start until trusted again.
    message = refused_after_change(new_host(asking(tmp_path)), path,
                                   ASKER.format(name="asker", perms=["conversation", "agent"]),
                                   'permissions = ["conversation"]', 'permissions = ["conversation", "agent"]')
    assert "changed since you trusted it" in message and "changed file main.py" in message
    assert "changed file extension.toml" in message and "now asks for host calls: agent" in message


def refused_after_change(host: ExtensionHost, path: Path, code: str, old: str, new: str) -> str:
    """Rewrite the extension's code and one manifest line (``old`` → ``new``); the refusal ``host`` gives it."""
    (path / "main.py").write_text(code)
    manifest = path / "extension.toml"
    manifest.write_text(manifest.read_text().replace(old, new))
    with pytest.raises(ExtensionStartError) as info:
        host.load(path)
    return str(info.value)


def test_a_changed_extension_that_subscribes_to_a_new_content_event_lists_it(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost], tmp_path: Path) -> None:
    path = make_ext("asker", ASKER.format(name="asker", perms=["conversation"]), ["tool_call"])
    manifest = load_manifest(path)
    from host.exthost.trust import Request

    TrustStore(tmp_path / "trust.json").record(manifest, Request.of(manifest))
    first = new_host(asking(tmp_path))
    assert first.load(path).grant.source == "trusted"
    first.unload("asker")
    # Same permissions, one more handler: on tool_result, which carries the tools' output (conversation content).
    message = refused_after_change(new_host(asking(tmp_path)), path,
                                   ASKER.format(name="asker", perms=["conversation"])
                                   + "@ext.on('tool_result')\ndef seen(event, ctx):\n    pass\n",
                                   'events = ["tool_call"]', 'events = ["tool_call", "tool_result"]')
    assert "changed since you trusted it" in message and "now receives tool_result" in message, message
    assert "now receives tool_call" not in message and "now asks for host calls" not in message, message


def test_the_operators_config_grants_exactly_what_it_says(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost], tmp_path: Path) -> None:
    path = make_ext("asker", ASKER.format(name="asker", perms=["conversation", "agent"]), ["tool_call"],
                    permissions=["conversation", "agent"])
    config = asking(tmp_path)
    from dataclasses import replace

    host = new_host(replace(config, permissions={"asker": ("conversation",)}))
    ext = host.load(path)
    assert ext.grant.source == "config" and ext.granted == {"conversation", "ui", "state", "events"}
    host.emit("tool_call", tool_call("ls"))
    assert "permission denied" in host.state.get("asker", "agent_call")


@pytest.mark.parametrize("answer", [True, False])
def test_the_interactive_prompt_records_a_yes(make_ext: MakeExt, tmp_path: Path, answer: bool) -> None:
    path = make_ext("asker", ASKER.format(name="asker", perms=["conversation"]), ["tool_call"])
    asked: list[str] = []

    def ask(manifest: object, verdict: object) -> bool:
        asked.append(getattr(manifest, "name", ""))
        return answer

    config = HostConfig(search_dirs=(), state_path=tmp_path / "s.json",
                        sandbox=Sandbox(trust_file=tmp_path / "trust.json", allow_weak=True))
    with ExtensionHost(config, ask=ask) as host:
        report = host.load_many([path])
    assert asked == ["asker"]
    assert bool(report.loaded) is answer and bool(report.failed) is not answer
    assert (TrustStore(tmp_path / "trust.json").entry(load_manifest(path)) is not None) is answer


def test_ext_trust_command_records_lists_and_revokes(make_ext: MakeExt, tmp_path: Path) -> None:
    path = make_ext("asker", ASKER.format(name="asker", perms=["conversation"]), ["tool_call"])
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "host", "ext", "trust", *args], capture_output=True, text=True,
                              timeout=60, env=env, stdin=subprocess.DEVNULL)

    refused = cli("asker", "-e", str(path))
    assert refused.returncode == 1 and "not confirmed" in refused.stderr and "Traceback" not in refused.stderr
    assert "asks for: host calls: conversation" in refused.stdout
    done = cli("asker", "-e", str(path), "--yes")
    assert done.returncode == 0 and "trusted asker" in done.stdout
    assert "asker" in cli("--list").stdout and "already granted (trusted)" in cli("asker", "-e", str(path)).stdout
    assert "revoked" in cli("asker", "-e", str(path), "--revoke").stdout
    assert "nothing trusted" in cli("--list").stdout
