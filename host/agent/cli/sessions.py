"""Which session ``run``/``chat`` open, and ``kithost session list|repair`` (argparse stays in :mod:`host.cli`).

:func:`choose_session` turns the session options into a file:

* ``--session FILE`` — that file (created if missing);
* ``--continue`` — the session used last in this working directory (an error if there is none);
* ``--resume ID`` — the session ID names here (:func:`~host.agent.sessions_store.find_session`);
* ``--resume`` alone — a numbered list to pick from on a terminal; without one, an error asking for an ID;
* ``--ephemeral`` — ``None``: a temporary session, deleted at exit;
* nothing — a new file in the data directory's folder for this working directory
  (:mod:`host.agent.sessions_store`), kept.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, TextIO

from ..errors import AgentError
from ..session_file import repair_session_file
from ..sessions_store import SessionInfo, find_session, list_sessions, new_session_path, sessions_dir

__all__ = ["PICK", "SessionOptions", "choose_session", "session_list_command", "session_repair_command"]

#: ``SessionOptions.resume`` value for ``--resume`` without an ID: pick from a list.
PICK: Final = ""
#: Most sessions offered by the ``--resume`` picker.
_PICK_MAX: Final = 20


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """The session options of ``run``/``chat`` (at most one is set; argparse enforces it)."""

    session: Path | None = None
    continue_last: bool = False
    #: ``None``: not given; :data:`PICK`: given without an ID.
    resume: str | None = None
    ephemeral: bool = False


def _when(info: SessionInfo) -> str:
    return datetime.fromtimestamp(info.modified).strftime("%Y-%m-%d %H:%M")


def _line(info: SessionInfo, with_cwd: bool = False) -> str:
    what = f"torn or broken: {info.problem}" if info.problem else (
        f"{info.prompts} prompt(s): {info.first_prompt[:60] + ('…' if len(info.first_prompt) > 60 else '')}"
        if info.prompts else "no prompt yet")
    where = f"  {info.cwd}" if with_cwd else ""
    return f"{info.id[:8] or '????????'}  {_when(info)}  {what}{where}"


def choose_session(options: SessionOptions, cwd: Path, *, interactive: bool, inp: TextIO | None = None,
                   err: TextIO | None = None) -> Path | None:
    """The session file to open (``None``: ephemeral); see the module doc. Raises :class:`AgentError`."""
    if options.ephemeral:
        return None
    if options.session is not None:
        return options.session
    if options.continue_last:
        here = list_sessions(cwd)
        if not here:
            raise AgentError(f"no session to continue in {cwd} (none kept in {sessions_dir(cwd)})")
        return here[0].path
    if options.resume is not None:
        return _pick(cwd, interactive, inp or sys.stdin, err or sys.stderr) if options.resume == PICK \
            else find_session(cwd, options.resume)
    return new_session_path(cwd)


def _pick(cwd: Path, interactive: bool, inp: TextIO, err: TextIO) -> Path:
    if not interactive:
        raise AgentError("--resume needs a session ID when not on a terminal (`kithost session list` shows them)")
    here = list_sessions(cwd)[:_PICK_MAX]
    if not here:
        raise AgentError(f"no session to resume in {cwd} (none kept in {sessions_dir(cwd)})")
    err.write(f"sessions in {cwd} (newest first):\n")
    err.writelines(f"  {i:>2}  {_line(info)}\n" for i, info in enumerate(here, 1))
    while True:
        err.write(f"resume which? [1-{len(here)}, Enter for 1] ")
        err.flush()
        answer = inp.readline()
        if not answer:
            raise AgentError("no session chosen")
        answer = answer.strip() or "1"
        if answer.isdigit() and 1 <= int(answer) <= len(here):
            return here[int(answer) - 1].path
        err.write(f"type a number from 1 to {len(here)}\n")


def session_list_command(cwd: Path, every: bool, as_json: bool, out: TextIO | None = None) -> int:
    """``kithost session list [--all] [--json]``: the kept sessions of ``cwd`` (or all), newest first."""
    out = out or sys.stdout
    found = list_sessions(None if every else cwd)
    if as_json:
        out.write(json.dumps([s.to_json() for s in found], indent=2) + "\n")
        return 0
    if not found:
        scope = "anywhere" if every else f"for {cwd} ({sessions_dir(cwd)})"
        out.write(f"no sessions kept {scope}\n")
        return 0
    for info in found:
        out.write(_line(info, with_cwd=every) + "\n")
        out.write(f"          {info.path}\n")
    if any(s.problem for s in found):
        out.write("a torn session opens again after: kithost session repair FILE\n")
    return 0


def session_repair_command(path: Path, out: TextIO | None = None) -> int:
    """``kithost session repair FILE``: drop a torn last line, keeping a backup; says what it did."""
    out = out or sys.stdout
    if not path.is_file():
        raise AgentError(f"{path}: no such session file")
    out.write(repair_session_file(path).describe() + "\n")
    return 0
