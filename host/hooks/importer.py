"""Reading another agent's hook settings and writing a kithost hooks extension folder.

:func:`read_settings` turns a settings file into the handler entries of a
manifest's ``[hooks]`` table, and lists what it could not map;
:func:`write_extension` writes the folder: ``extension.toml`` (events derived
from the handlers, ``conversation`` permission, ``[access] processes = true``
and read access to the scripts the commands name) and ``hooks_adapter.py``, two
lines that build the extension with :mod:`ext_sdk.hooks` (the adapter ships with
the SDK, which every extension can import inside its sandbox).

Formats read:

* ``claude`` — ``.claude/settings.json`` (and ``settings.local.json``):
  ``{"hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command",
  "command": "...", "timeout": 5}]}]}}``; ``timeout`` in seconds.
* ``gemini`` — ``.gemini/settings.json``: the same shape; ``timeout`` in
  milliseconds; ``name`` kept.
* ``codex`` — ``hooks.json`` (the Claude shape, ``timeout`` in seconds), or
  ``config.toml`` with inline ``[[hooks.<Event>]]`` tables and/or the legacy
  ``notify = ["program", ...]`` (run after each turn with its JSON as the last
  argument).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ext_sdk import hooks as engine
from ext_sdk.hooks import FORMATS, format_duration, load_hooks

__all__ = ["Imported", "detect_format", "read_settings", "render_manifest", "write_extension"]

LAUNCHER_FILE = "hooks_adapter.py"
LAUNCHER = '''"""Runs the [hooks] of this folder's extension.toml with the hook adapter (see docs/hooks.md)."""

from ext_sdk.hooks import build_extension

ext = build_extension(__file__)
'''


class SettingsError(ValueError):
    """A settings file that cannot be read as the format asked for; the message says why."""


@dataclass
class Imported:
    """What :func:`read_settings` found."""

    format: str
    #: Manifest ``[[hooks.handlers]]`` entries.
    handlers: list[dict[str, Any]] = field(default_factory=list)
    #: One line per thing not imported (an unmapped event, a non-command hook, ...).
    skipped: list[str] = field(default_factory=list)
    #: One line per note on what was imported (a default timeout filled in, a policy chosen).
    notes: list[str] = field(default_factory=list)


def detect_format(path: Path, data: object) -> str:
    """Guess the format from the file's location and events (``--format`` overrides it)."""
    parts = {p.lower() for p in path.resolve().parts}
    if ".gemini" in parts:
        return "gemini"
    if ".codex" in parts or path.suffix == ".toml":
        return "codex"
    if ".claude" in parts:
        return "claude"
    events = set(data.get("hooks", {})) if isinstance(data, Mapping) and isinstance(data.get("hooks"), Mapping) \
        else set()
    if events & {"BeforeTool", "AfterTool", "BeforeAgent", "AfterAgent", "PreCompress"}:
        return "gemini"
    return "claude"


def load_file(path: Path) -> object:
    """The parsed settings file (JSON, or TOML for a ``.toml`` file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise SettingsError(f"{path}: not valid {kind}: {exc}") from exc


def read_settings(data: object, fmt_name: str) -> Imported:
    """The hook handlers of a parsed settings file in format ``fmt_name`` (see the module doc)."""
    fmt = FORMATS[fmt_name]
    found = Imported(fmt_name)
    if not isinstance(data, Mapping):
        raise SettingsError("the settings file must hold a JSON object / TOML table")
    hooks = data.get("hooks", {})
    if fmt_name == "gemini" and isinstance(hooks, Mapping) and isinstance(hooks.get("hooks"), Mapping):
        hooks = hooks["hooks"]  # an older nesting: {"hooks": {"enabled": true, "hooks": {...}}}
    if not isinstance(hooks, Mapping):
        raise SettingsError("'hooks' must be an object of event name → list of matcher groups")
    for event, groups in hooks.items():
        if event in ("enabled", "disabled"):
            continue
        if event not in fmt.events:
            why = fmt.unmapped.get(event, f"not a {fmt_name} hook event kithost knows")
            found.skipped.append(f"{event}: not mapped ({why})")
            continue
        if not isinstance(groups, list):
            found.skipped.append(f"{event}: not a list of matcher groups")
            continue
        for group in groups:
            _group(fmt, event, group, found)
    notify = data.get("notify")
    if fmt_name == "codex" and notify is not None:
        if isinstance(notify, list) and notify and all(isinstance(a, str) for a in notify):
            found.handlers.append({"event": "notify", "command": list(notify), "timeout": "10s"})
            found.notes.append("notify: runs after each turn (agent_end) with its JSON as the last argument; "
                               "timeout 10s (Codex sets none)")
        else:
            found.skipped.append("notify: must be a list of strings (program and arguments)")
    if not found.handlers and not found.skipped:
        found.skipped.append("no hooks found in the file")
    return found


def _group(fmt: engine.Format, event: str, group: object, found: Imported) -> None:
    if not isinstance(group, Mapping):
        found.skipped.append(f"{event}: a matcher group that is not an object")
        return
    matcher = group.get("matcher")
    for hook in group.get("hooks", []) if isinstance(group.get("hooks"), list) else []:
        if not isinstance(hook, Mapping):
            continue
        kind = hook.get("type", "command")
        command = hook.get("command")
        if kind != "command" or not isinstance(command, str) or not command.strip():
            found.skipped.append(f"{event}: a {kind!r} hook (only command hooks run in kithost)")
            continue
        entry: dict[str, Any] = {"event": event}
        if isinstance(matcher, str) and matcher not in ("", "*"):
            entry["matcher"] = _their_matcher(matcher)
        entry["command"] = command
        timeout = hook.get("timeout")
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
            entry["timeout"] = f"{timeout:g}{fmt.timeout_unit}"
        else:
            entry["timeout"] = format_duration(fmt.default_timeout_ms)
            found.notes.append(f"{event}: {_short(command)}: no timeout set, {fmt.name}'s default "
                               f"{entry['timeout']} written")
        if isinstance(hook.get("name"), str) and hook["name"]:
            entry["name"] = hook["name"]
        entry["policy"] = engine.default_policy(fmt.events[event])
        found.handlers.append(entry)


def _their_matcher(matcher: str) -> str:
    """A matcher as a regular expression (their ``*`` wildcard means any)."""
    try:
        re.compile(matcher)
    except re.error:
        return re.escape(matcher).replace(r"\*", ".*")
    return matcher


def _short(text: str) -> str:
    return text if len(text) <= 50 else text[:47] + "..."


def script_paths(command: str | list[str], project_dir: Path, home: Path) -> list[Path]:
    """Existing files a command names (absolute, ``~/``, ``$CLAUDE_PROJECT_DIR/``/``$GEMINI_PROJECT_DIR/``)."""
    words = command if isinstance(command, list) else _split(command)
    found: list[Path] = []
    for word in words:
        for var in ("$CLAUDE_PROJECT_DIR", "${CLAUDE_PROJECT_DIR}", "$GEMINI_PROJECT_DIR", "${GEMINI_PROJECT_DIR}"):
            word = word.replace(var, str(project_dir))
        if word.startswith("~/"):
            word = str(home / word[2:])
        if word.startswith("/"):
            path = Path(word)
            if path.is_file():
                found.append(path)
    return found


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def render_manifest(name: str, imported: Imported, read: list[str], source: Path) -> str:
    """The ``extension.toml`` of an imported folder (validated with the engine's own rules)."""
    config = load_hooks({"format": imported.format, "handlers": imported.handlers})
    lines = [
        f"# Imported by `kithost hooks import` from {source}",
        f"name = {json.dumps(name)}",
        'version = "0.1.0"',
        f"description = {json.dumps(f'{imported.format} hooks from {source.name}, run by the kithost hook adapter')}",
        'runtime = "python"',
        f'main = "{LAUNCHER_FILE}"',
        f"events = {json.dumps(list(config.kithost_events))}",
        'permissions = ["conversation"]   # the hooks see prompts, tool input and output',
        "",
        "[access]",
        "processes = true                 # the adapter starts each hook command",
        f"read = {json.dumps(read)}",
        "",
        "[hooks]",
        f"format = {json.dumps(imported.format)}",
    ]
    for entry in imported.handlers:
        lines += ["", "[[hooks.handlers]]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in entry.items()]
    return "\n".join(lines) + "\n"


def write_extension(out: Path, name: str, imported: Imported, read: list[str], source: Path) -> None:
    """Write the folder ``out`` (created; files in it replaced)."""
    manifest = render_manifest(name, imported, read, source)
    out.mkdir(parents=True, exist_ok=True)
    (out / "extension.toml").write_text(manifest, encoding="utf-8")
    (out / LAUNCHER_FILE).write_text(LAUNCHER, encoding="utf-8")
