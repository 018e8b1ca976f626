"""The agent core: a litellm coding agent whose every lifecycle event goes to the extension host.

Modules (each one concern; litellm is imported lazily, only through
:func:`.llm_convert.litellm_module`):

* :mod:`.session` — :class:`AgentSession`: loop + extension host + session file (what the CLI drives);
* :mod:`.commands` — ``kithost run`` / ``kithost chat`` without argparse;
* :mod:`.loop` — :class:`AgentLoop`: turns and steps, every event fired where it happens;
* :mod:`.emitter` — the one path of every event (extension host + the application's sink);
* :mod:`.services` — :class:`AgentServices`: extensions' ``ctx`` calls answered by the agent;
* :mod:`.turn_stats` (enriched ``agent_end``), :mod:`.steering` (``send_message``),
  :mod:`.compaction`, :mod:`.subagent`, :mod:`.models`, :mod:`.agent_config`, :mod:`.render`;
* :mod:`.llm_events` / :mod:`.llm_convert` — one streamed model call as kithost's own events;
* :mod:`.script` / :mod:`.script_player` / :mod:`.scripted_provider` — the offline ``scripted`` provider;
* :mod:`.context_messages` — the context window as extensions see and edit it;
* :mod:`.tools` — built-in tools and the tool registry;
* :mod:`.session_file` / :mod:`.session_tree` — the session tree in JSONL;
* :mod:`.errors` — the agent's exceptions.
"""

from __future__ import annotations

from .agent_config import AgentConfig
from .errors import (
    AgentBusyError,
    AgentError,
    LLMCallError,
    ModelError,
    ScriptError,
    ScriptMismatch,
    SessionFileError,
)
from .loop import AgentLoop, ForkResult, TurnResult
from .session import AgentSession, SwitchResult
from .session_tree import SessionTree
from .tools import ToolRegistry

__all__ = [
    "AgentBusyError",
    "AgentConfig",
    "AgentError",
    "AgentLoop",
    "AgentSession",
    "ForkResult",
    "LLMCallError",
    "ModelError",
    "ScriptError",
    "ScriptMismatch",
    "SessionFileError",
    "SessionTree",
    "SwitchResult",
    "ToolRegistry",
    "TurnResult",
]
