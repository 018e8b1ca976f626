"""The operator's config file: every table, and clear errors naming the key."""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

import host.config
from host import ConfigError
from host.config import (
    Deadlines,
    ExtensionLimits,
    HostConfig,
    Limits,
    RestartMode,
    Supervision,
    load_config,
)


def test_full_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("""
[deadlines]
gate = "700ms"
event_budget = "3s"

[supervision]
memory_mb = 512
hang = "4s"

[policy]
"permission-gate" = "closed"
"tool-logger:tool_call" = "open"

[deadline_overrides]
"slow-approver:tool_call" = "30s"

[permissions]
"usage-budget" = ["session"]

[restart]
"flaky-ext" = "never"

[extension_limits."big-indexer"]
memory_mb = 4096
max_threads = 512
""")
    config = load_config(path)
    assert config.deadlines.gate_ms == 700 and config.deadlines.event_budget_ms == 3000
    assert config.policy["tool-logger:tool_call"] == "open" and config.restart == {"flaky-ext": "never"}
    assert config.permissions == {"usage-budget": ("session",)}
    assert config.supervision_for("big-indexer").memory_mb == 4096
    assert config.supervision_for("big-indexer").max_threads == 512
    assert config.supervision_for("big-indexer").hang_ms == 4000  # the rest comes from [supervision]
    assert config.supervision_for("other").memory_mb == 512


@pytest.mark.parametrize(("text", "message"), [
    ('[deadlines]\ngate = "0ms"\n', '[deadlines] gate must be greater than 0 (got "0ms")'),
    ("[supervision]\nrestart = \"sometimes\"\n", "[supervision] restart must be one of"),
    ("[extension_limits.x]\nmemory = 1\n", "unknown key 'memory' in [extension_limits.x] (did you mean 'memory_mb'?)"),
    ("[permissions]\nx = [\"root\"]\n", "[permissions] x: unknown permission 'root'"),
    ("[nonsense]\n", "nonsense"),
    ("gate = \n", "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


# ---- config errors in words (issue 12): each names the file, the table and the key


@pytest.mark.parametrize(("text", "message"), [
    ("[supervison]\nmemory_mb = 512\n", "unknown table 'supervison' (did you mean 'supervision'?)"),
    ("[deadlines]\ngatex = 1\n", "unknown key 'gatex' in [deadlines] (did you mean 'gate'?)"),
    ('[deadlines]\ngate = "0s"\n', '[deadlines] gate must be greater than 0 (got "0ms")'),
    ('[deadlines]\ngate = "-1s"\n', '[deadlines] gate must be a duration such as "500ms" or "2s" (got "-1s"'),
    ("[deadlines]\ngate = 700\n", '[deadlines] gate = 700 has no unit: write "700ms"'),
    ("[supervision]\ncrash_window = 60\n", '[supervision] crash_window = 60 has no unit: write "60s"'),
    ('[deadlines]\ngate = "700"\n', '[deadlines] gate = "700" has no unit: write "700ms"'),
    ("[deadlines]\ngate_ms = 700\n",
     "unknown key 'gate_ms' in [deadlines] (did you mean 'gate'? times take a unit: gate = \"700ms\")"),
    ("[deadline_overrides]\n\"x:tool_call\" = 30000\n",
     '[deadline_overrides] "x:tool_call" = 30000 has no unit: write "30000ms"'),
    ('[supervision]\ncpu_seconds = 5\n', "unknown key 'cpu_seconds' in [supervision] (did you mean 'cpu_time'?"),
    ('[limits]\nmax_frame = "big"\n', '[limits] max_frame must be an integer (got "big")'),
    ("[limits]\nmax_frame = 10\n", "[limits] max_frame must be at least 1024 (got 10)"),
    ('[supervision]\nrestart = "nevr"\n',
     '[supervision] restart must be one of "on-failure", "always", "never" (got "nevr"; did you mean "never"?)'),
    ('[policy]\n"gate:tool_call" = "shut"\n', '[policy] "gate:tool_call" must be one of "open", "closed" (got "shut")'),
    ('[permissions]\nx = ["sesion"]\n', "[permissions] x: unknown permission 'sesion' (did you mean 'session'?"),
    ("[supervision]\nno_retry_exit_codes = [2, \"x\"]\n",
     '[supervision] no_retry_exit_codes (item 2) must be an integer (got "x")'),
    ("deadlines = 5\n", "deadlines must be a table (got 5)"),
    ("[deadlines]\nzzz = 1\n", "unknown key 'zzz' in [deadlines] (known: gate, chain,"),
    ('state_path = "s.json"\n', "'state_path' is set by the program, not in the config file"),
])
def test_config_errors_in_words(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: {message}")
    assert "Input should" not in str(info.value) and "Extra inputs" not in str(info.value)


def test_every_problem_is_reported_each_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[supervison]\n[deadlines]\ngate = \"0ms\"\nchain = \"x\"\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{path}: ") for line in lines)


# ---- one definition per setting: the records are pydantic dataclasses, cheap to read, checked when built


def test_records_are_frozen_dataclasses_checked_when_built() -> None:
    config = HostConfig(limits=replace(Limits(), max_frame=64 * 1024), extension_limits={"x": {"memory_mb": 5}})
    assert dataclasses.is_dataclass(config) and config.limits.max_frame == 64 * 1024
    assert config.extension_limits["x"] == ExtensionLimits(memory_mb=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.deadlines.gate_ms = 5  # type: ignore[misc]
    with pytest.raises(ValidationError, match="greater than 0"):
        replace(Deadlines(), gate_ms=0)
    with pytest.raises(ValidationError, match="unknown permission 'root'"):
        HostConfig(permissions={"x": ("root",)})
    # plain slots, no per-access validation: reading a setting costs what it costs on a plain dataclass
    for record in (Deadlines, Limits, Supervision, HostConfig):
        assert "__slots__" in vars(record) and "__getattribute__" not in vars(record)


def test_docstring_example_file_loads(tmp_path: Path) -> None:
    doc = host.config.__doc__ or ""
    block = textwrap.dedent(doc.split("mirrors these records::", 1)[1])
    path = tmp_path / "config.toml"
    path.write_text(block)
    config = load_config(path)
    assert config.restart_mode("flaky-ext", "always") == RestartMode.NEVER
    assert config.supervision_for("big-indexer").memory_mb == 4096 and config.supervision.memory_mb == 512
    assert config.permissions == {"usage-budget": ("session",)} and config.deadlines.event_budget_ms == 5000


# ---- restart mode: [restart]."NAME" > [supervision] restart (when set) > the manifest's > on-failure


@pytest.mark.parametrize(("per_extension", "everyone", "manifest", "expected"), [
    (None, None, None, "on-failure"),
    (None, None, "always", "always"),
    (None, "never", "always", "never"),  # [supervision] restart is over the manifest (the bug: it was ignored)
    (None, "always", None, "always"),
    ("on-failure", "never", "always", "on-failure"),  # [restart]."NAME" is over everything
    ("never", None, "always", "never"),
])
def test_restart_mode_precedence(per_extension: str | None, everyone: str | None, manifest: str | None,
                                 expected: str) -> None:
    config = HostConfig(restart={"ext": per_extension} if per_extension else {},
                        supervision=Supervision(restart=everyone))  # type: ignore[arg-type]
    mode = config.restart_mode("ext", manifest)
    assert mode == expected and isinstance(mode, RestartMode)
    assert config.restart_mode("other", manifest) == (everyone or manifest or "on-failure")


def test_supervision_restart_from_the_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[supervision]\nrestart = "never"\n')
    config = load_config(path)
    assert config.supervision.restart is RestartMode.NEVER
    assert config.restart_mode("any", "on-failure") is RestartMode.NEVER
    assert load_config(tmp_path / "config.toml").restart == {}
    assert HostConfig().supervision.restart is None  # unset: the manifest decides
