"""Where ``kithost run``/``chat`` keep sessions: the user's data directory, one folder per working directory.

Layout::

    $XDG_DATA_HOME/kithost/            (default ~/.local/share/kithost)
      sessions/
        home-ann-src-app-3f9c2a1b/     one folder per working directory: a readable slug + a hash of the path
          2026-12-02T01-02-03_a1b2c3d4.jsonl
          2026-12-02T01-02-03_a1b2c3d4.ext-state.json   its extensions' state (beside it)
      chat_history                     prompts typed in ``kithost chat`` (one history for every directory)

Contract:

* :func:`sessions_dir` is a pure function of the working directory (resolved):
  the same directory always maps to the same folder, two directories never
  share one (the hash), and the slug makes the folder recognisable by eye.
* :func:`list_sessions` reads each file's header and first user message
  (cheaply, never the whole conversation into the agent) and returns the
  newest first (by modification time: the last one used here is first). A
  file that does not open (a torn tail, say) is listed with its problem, so
  ``session list`` shows it and ``session repair`` can be pointed at it.
* :func:`find_session` resolves what ``--resume ID`` names: a path, a file
  name (or its start), or a session id (or its start); ambiguous or unknown
  IDs are :class:`~host.agent.errors.AgentError` with one clear sentence.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..config import data_dir
from .context_messages import message_text
from .errors import AgentError, SessionFileError
from .session_file import HEADER_TYPE, read_session_file
from .session_tree import default_session_path

__all__ = ["SESSION_SUFFIX", "SessionInfo", "data_dir", "find_session", "history_file", "list_sessions",
           "new_session_path", "sessions_dir", "sessions_root"]

#: File name ending of a session file.
SESSION_SUFFIX: Final = ".jsonl"
#: Longest slug of a working directory in its folder name.
_SLUG_MAX: Final = 48


def sessions_root() -> Path:
    """The folder holding one folder of sessions per working directory."""
    return data_dir() / "sessions"


def history_file() -> Path:
    """The prompt history of ``kithost chat``."""
    return data_dir() / "chat_history"


def sessions_dir(cwd: Path) -> Path:
    """The folder of the sessions started in ``cwd`` (see the module doc)."""
    resolved = str(Path(cwd).resolve())
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", resolved).strip("-.")[-_SLUG_MAX:].lstrip("-.") or "root"
    digest = hashlib.sha256(resolved.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return sessions_root() / f"{slug}-{digest}"


def new_session_path(cwd: Path) -> Path:
    """A fresh session file name for ``cwd`` (the file is created when the session opens)."""
    return default_session_path(sessions_dir(cwd))


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One stored session, as ``session list`` shows it."""

    path: Path
    #: Session id from the header ('' when the file does not open).
    id: str
    #: Working directory recorded in the header.
    cwd: str
    #: Creation time from the header (RFC 3339), or ''.
    created: str
    #: Modification time of the file (seconds since the epoch).
    modified: float
    #: Number of user messages on any branch.
    prompts: int
    #: The first user message, on one line ('' if none).
    first_prompt: str
    #: Why the file does not open ('' when it does).
    problem: str = ""

    def to_json(self) -> dict[str, Any]:
        """For ``session list --json``."""
        return {"path": str(self.path), "id": self.id, "cwd": self.cwd, "created": self.created,
                "modified": self.modified, "prompts": self.prompts, "first_prompt": self.first_prompt,
                "problem": self.problem}


def _info(path: Path) -> SessionInfo:
    modified = path.stat().st_mtime
    try:
        header, entries = read_session_file(path)
    except SessionFileError as exc:
        header, entries, problem = _header_only(path), [], exc.problem
    else:
        problem = ""
    prompts = [message_text(e.data["message"]) for e in entries
               if e.type == "message" and e.data["message"].get("role") == "user"]
    first = " ".join(prompts[0].split()) if prompts else ""
    return SessionInfo(path, str(header.get("id", "")), str(header.get("cwd", "")), str(header.get("timestamp", "")),
                       modified, len(prompts), first, problem)


def _header_only(path: Path) -> dict[str, Any]:
    """The header of a file that does not open as a whole (or ``{}``)."""
    try:
        with path.open("rb") as f:
            obj = json.loads(f.readline())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) and obj.get("type") == HEADER_TYPE else {}


def list_sessions(cwd: Path | None) -> list[SessionInfo]:
    """Sessions of ``cwd`` (``None``: of every directory), newest first."""
    folders = [sessions_dir(cwd)] if cwd is not None else (
        sorted(p for p in sessions_root().iterdir() if p.is_dir()) if sessions_root().is_dir() else [])
    found = [_info(p) for folder in folders if folder.is_dir()
             for p in folder.iterdir() if p.name.endswith(SESSION_SUFFIX) and p.is_file()]
    return sorted(found, key=lambda s: (s.modified, s.path.name), reverse=True)


def find_session(cwd: Path, ident: str) -> Path:
    """The session ``--resume ident`` names (see the module doc); :class:`AgentError` if none or several."""
    direct = Path(ident).expanduser()
    if ident.endswith(SESSION_SUFFIX) and direct.is_file():
        return direct
    here = list_sessions(cwd)
    matches = [s for s in here if s.path.name.startswith(ident) or (s.id and s.id.startswith(ident))]
    if len(matches) > 1:
        exact = [s for s in matches if s.id == ident or s.path.name in (ident, ident + SESSION_SUFFIX)]
        if len(exact) == 1:
            return exact[0].path
        names = ", ".join(s.path.name for s in matches[:5])
        raise AgentError(f"session {ident!r} is ambiguous here ({names}); give more of its id")
    if not matches:
        hint = "`kithost session list` shows them" if here else "none is kept for this directory yet"
        raise AgentError(f"no session {ident!r} in {sessions_dir(cwd)} ({hint})")
    return matches[0].path
