"""The handshake decision alone: hello + manifest + config → granted or refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ext_sdk.events import Policy
from ext_sdk.extension import Extension, read_identity
from host.config import Access, Deadlines, HostConfig, RestartMode
from host.exthost.handshake import Granted, Refused, check_hello, identity_mismatch, welcome_fields
from host.exthost.manifest import Manifest

MANIFEST = Manifest(name="gate", version="1.0.0", description="", runtime="python", main=Path("/x/main.py"),
                    command=(), events=("tool_call", "agent_end", "llm_usage"),
                    permissions=("conversation",), restart=RestartMode.ON_FAILURE, env={}, access=Access(),
                    directory=Path("/x"),
                    path=Path("/x/extension.toml"))


def hello(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"k": "hello", "seq": 1, "versions": [1], "name": "gate", "version": "1.0.0",
                            "sdk": "python/0.1.0", "subscriptions": [{"event": "tool_call", "priority": 10}],
                            "tools": [], "commands": [], "permissions": ["conversation"]}
    return {**base, **over}


ASKED = frozenset({"conversation", "ui", "state", "events"})


def refused(decision: Granted | Refused) -> str:
    assert isinstance(decision, Refused), decision
    return decision.reason


def test_accepted_with_effective_deadline_and_policy() -> None:
    decision = check_hello(hello(), MANIFEST, HostConfig(), ASKED)
    assert isinstance(decision, Granted)
    (decl,) = decision.handlers
    assert decl.event == "tool_call" and decl.priority == 10 and decl.policy is Policy.CLOSED
    assert decl.deadline_s == HostConfig().deadlines.hot_ms / 1000
    assert decision.granted == {"conversation", "ui", "state", "events"}
    assert welcome_fields(decision) == {"version": 1, "granted": ["conversation", "events", "state", "ui"],
                                        "deadlines_ms": [250]}


def test_requested_deadlines_are_clamped_and_operator_overrides_win() -> None:
    config = HostConfig(deadlines=replace(Deadlines(), max_ms=2000), policy={"gate": "open"},
                        deadline_overrides={"gate:agent_end": 99_000})
    subs = [{"event": "tool_call", "priority": 50, "deadline_ms": 60_000, "policy": "closed"},
            {"event": "agent_end", "priority": 50, "deadline_ms": 5}]
    decision = check_hello(hello(subscriptions=subs), MANIFEST, config, ASKED)
    assert isinstance(decision, Granted)
    assert [(h.deadline_s, h.policy) for h in decision.handlers] == [(2.0, Policy.OPEN), (99.0, Policy.OPEN)]


def test_refusals_name_the_problem() -> None:
    config = HostConfig()
    assert "no common protocol version" in refused(check_hello(hello(versions=[9]), MANIFEST, config, ASKED))
    assert "calls itself 'other'" in refused(check_hello(hello(name="other"), MANIFEST, config, ASKED))
    assert "['agent']" in refused(check_hello(hello(permissions=["agent"]), MANIFEST, config, ASKED))
    unknown = [{"event": "no_such_event", "priority": 50}]
    assert "unknown event" in refused(check_hello(hello(subscriptions=unknown), MANIFEST, config, ASKED))
    unlisted = [{"event": "input", "priority": 50}]
    assert "does not list" in refused(check_hello(hello(subscriptions=unlisted), MANIFEST, config, ASKED))


def test_content_events_need_the_conversation_grant() -> None:
    config = HostConfig()
    defaults = frozenset({"ui", "state", "events"})  # granted nothing beyond the defaults
    reason = refused(check_hello(hello(), MANIFEST, config, defaults))
    assert "exposes conversation content" in reason
    observer = [{"event": "llm_usage", "priority": 50}]
    decision = check_hello(hello(subscriptions=observer), MANIFEST, config, defaults)
    assert isinstance(decision, Granted) and "conversation" not in decision.granted


# ---------------------------------------------------------------------- one source for the identity (issue 12, 6)


def test_the_identity_restated_in_code_must_be_the_manifests() -> None:
    config = HostConfig()
    assert isinstance(check_hello(hello(), MANIFEST, config, ASKED), Granted)
    version = refused(check_hello(hello(version="1.0.1"), MANIFEST, config, ASKED))
    assert "version '1.0.1'" in version and "manifest says '1.0.0'" in version and "extension.toml" in version
    fewer = refused(check_hello(hello(permissions=[]), MANIFEST, config, ASKED))
    assert "leaves out permission(s) ['conversation']" in fewer
    more = refused(check_hello(hello(permissions=["conversation", "agent"]), MANIFEST, config, ASKED))
    assert "['agent']" in more and "does not declare" in more
    # the groups every extension has may be named or not
    assert isinstance(check_hello(hello(permissions=["conversation", "ui"]), MANIFEST, config, ASKED), Granted)
    assert identity_mismatch(hello(), MANIFEST) == ""
    assert "calls itself 'other'" in identity_mismatch(hello(name="other"), MANIFEST)


def _manifest_dir(tmp_path: Path, text: str) -> Path:
    (tmp_path / "ext" / "src").mkdir(parents=True)
    (tmp_path / "ext" / "extension.toml").write_text(text)
    return tmp_path / "ext"


def test_the_sdk_reads_the_identity_from_the_manifest(tmp_path: Path) -> None:
    folder = _manifest_dir(tmp_path, 'name = "gate"\nversion = "2.1.0"\npermissions = ["conversation"]\n')
    ext = Extension(manifest=folder / "src" / "main.py")  # found in the file's folder or above it
    assert (ext.name, ext.version, ext.permissions) == ("gate", "2.1.0", ["conversation"])
    assert ext.manifest == folder / "extension.toml"
    fields = ext.hello_fields()
    assert (fields["name"], fields["version"], fields["permissions"]) == ("gate", "2.1.0", ["conversation"])
    # restated: sent as written, for the host to check
    restated = Extension("gate", version="9.9.9", manifest=folder)
    assert (restated.version, restated.permissions) == ("9.9.9", ["conversation"])
    assert "version '9.9.9'" in identity_mismatch({**fields, "version": restated.version}, manifest_of(folder))


def test_the_sdk_defaults_and_errors_without_a_manifest(tmp_path: Path) -> None:
    alone = Extension("alone", manifest=tmp_path / "nowhere.py")
    assert (alone.version, alone.permissions, alone.manifest) == ("0.0.0", [], None)
    with pytest.raises(ValueError, match=r"no extension\.toml found .* give the name"):
        Extension(manifest=tmp_path / "nowhere.py")
    folder = _manifest_dir(tmp_path, 'version = "1"\n')
    with pytest.raises(ValueError, match="the manifest has no name"):
        Extension(manifest=folder)


def manifest_of(folder: Path) -> Manifest:
    """A manifest with the identity of ``folder``'s extension.toml."""
    name, version, permissions = read_identity(folder / "extension.toml")
    return replace(MANIFEST, name=name, version=version, permissions=tuple(permissions))
