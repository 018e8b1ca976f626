"""The agent core: a litellm coding agent whose every lifecycle event goes to the extension host.

Leaf modules (each one concern; litellm is imported lazily, only by
:mod:`.llm_convert` and :mod:`.scripted_provider`):

* :mod:`.llm_events` / :mod:`.llm_convert` — one streamed model call as kithost's own events;
* :mod:`.script` / :mod:`.script_player` / :mod:`.scripted_provider` — the offline ``scripted`` provider;
* :mod:`.context_messages` — the context window as extensions see and edit it;
* :mod:`.tools` — built-in tools and the tool registry;
* :mod:`.session_file` / :mod:`.session_tree` — the session tree in JSONL;
* :mod:`.errors` — the agent's exceptions.
"""

from __future__ import annotations

from .errors import AgentError, LLMCallError, ScriptError, ScriptMismatch, SessionFileError
from .session_tree import SessionTree
from .tools import ToolRegistry

__all__ = [
    "AgentError",
    "LLMCallError",
    "ScriptError",
    "ScriptMismatch",
    "SessionFileError",
    "SessionTree",
    "ToolRegistry",
]
