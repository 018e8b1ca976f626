"""The operator's config file: every table, and clear errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from host import ConfigError
from host.config import load_config


def test_full_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("""
[deadlines]
gate_ms = 700
event_budget_ms = 3000

[supervision]
memory_mb = 512
hang_ms = 4000

[policy]
"permission-gate" = "closed"
"tool-logger:tool_call" = "open"

[deadline_overrides]
"slow-approver:tool_call" = 30000

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
    ("[deadlines]\ngate_ms = 0\n", "deadlines.gate_ms"),
    ("[supervision]\nrestart = \"sometimes\"\n", "supervision.restart"),
    ("[extension_limits.x]\nmemory = 1\n", "extension_limits.x.memory"),
    ("[permissions]\nx = [\"root\"]\n", "permissions.x: unknown ['root']"),
    ("[nonsense]\n", "nonsense"),
    ("gate_ms = \n", "not valid TOML"),
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
