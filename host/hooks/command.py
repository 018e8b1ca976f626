"""``kithost hooks import FILE [--format claude|gemini|codex] [--out DIR] [--name NAME]``.

Reads another agent's hook settings and writes a kithost extension folder
that runs the same hooks through the hook adapter (``docs/hooks.md``); prints
each hook it mapped (agent event → kithost event, matcher, timeout, policy)
and each thing it could not. Exit status: 0 written, 1 a bad file or nothing
to import (one line on stderr, never a traceback).

Wiring (``host/cli.py``)::

    from .hooks import command as hooks_command
    hooks_command.add_parser(sub, common)
    ...
    "hooks": hooks_command.run,
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ext_sdk.hooks import FORMATS, HooksConfigError

from ..errors import HostError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
               common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``hooks`` (with ``hooks import``) to ``sub``; returns the ``hooks`` parser."""
    hooks = sub.add_parser("hooks", parents=[common], help="run other agents' hook scripts as an extension",
                           description="Run Claude Code, Gemini CLI or Codex command hooks, unchanged, inside "
                                       "kithost's sandbox (see docs/hooks.md).")
    hooks_sub = hooks.add_subparsers(dest="hooks_command", metavar="COMMAND", required=True)
    imp = hooks_sub.add_parser(
        "import", parents=[common], help="write an extension folder from an agent's hook settings",
        description="Read a settings file (.claude/settings.json, .gemini/settings.json, Codex hooks.json or "
                    "config.toml) and write a kithost extension folder that runs the same hooks; prints what "
                    "it mapped and what it could not.")
    imp.add_argument("file", type=Path, metavar="FILE", help="the settings file")
    imp.add_argument("--format", choices=sorted(FORMATS), help="the agent (default: guessed from the path)")
    imp.add_argument("--out", type=Path, metavar="DIR",
                     help="folder to write (default: ./.kithost/extensions/<name>)")
    imp.add_argument("--name", metavar="NAME", help="extension name (default: <format>-hooks)")
    imp.add_argument("--project-dir", type=Path, metavar="DIR",
                     help="the project the hooks belong to ($CLAUDE_PROJECT_DIR; default: the folder holding "
                          ".claude/.gemini/.codex, else the file's folder)")
    imp.set_defaults(func=run)
    return hooks


def run(args: argparse.Namespace) -> int:
    """Run ``kithost hooks import``; returns the exit status (a bad file raises :class:`HostError`)."""
    from . import importer

    source: Path = args.file
    try:
        data = importer.load_file(source)
        fmt = args.format or importer.detect_format(source, data)
        found = importer.read_settings(data, fmt)
    except importer.SettingsError as exc:
        raise HostError(str(exc)) from None
    name = args.name or f"{fmt}-hooks"
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", name):
        raise HostError(f"--name {name!r}: use lowercase letters, digits, '.', '_' or '-' (at most 63)")
    out: Path = args.out or Path(".kithost") / "extensions" / name
    project = args.project_dir or _project_dir(source)
    for line in found.skipped:
        print(f"  not imported: {line}")
    if not found.handlers:
        raise HostError(f"{source}: no {fmt} command hooks to import")
    read: list[str] = []
    for entry in found.handlers:
        for path in importer.script_paths(entry["command"], project, Path.home()):
            if str(path.parent) not in read:
                read.append(str(path.parent))
    try:
        importer.write_extension(out, name, found, read, source.resolve())
    except HooksConfigError as exc:
        raise HostError(f"{source}: {exc}") from None
    except OSError as exc:
        raise HostError(f"{out}: cannot write: {exc.strerror}") from None
    spec = FORMATS[fmt]
    for entry in found.handlers:
        matcher = f" [{entry['matcher']}]" if "matcher" in entry else ""
        print(f"  mapped: {entry['event']}{matcher} → {spec.events[entry['event']]}  "
              f"timeout {entry['timeout']}, policy {entry['policy']}: {_show(entry['command'])}")
    for note in found.notes:
        print(f"  note: {note}")
    for folder in read:
        print(f"  read access asked for: {folder} (the scripts the commands name)")
    print(f"wrote {out} ({len(found.handlers)} hook(s), {fmt} format); trust it with "
          f"`kithost ext trust {name} -e {out}`")
    sys.stdout.flush()
    return 0


def _project_dir(source: Path) -> Path:
    folder = source.resolve().parent
    return folder.parent if folder.name in (".claude", ".gemini", ".codex") else folder


def _show(command: str | list[str]) -> str:
    text = command if isinstance(command, str) else " ".join(command)
    return text if len(text) <= 70 else text[:67] + "..."
