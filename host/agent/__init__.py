"""The agent core: a litellm coding agent whose every lifecycle event goes to the extension host.

Three subpackages around the core, each one concern; imports only go down
this list (``tests/test_import_graph.py`` keeps the graph free of cycles):

* :mod:`.cli` — ``kithost run`` / ``kithost chat`` without argparse, and rendering events for a terminal;
* the core, in this package:

  * :mod:`.session` — :class:`AgentSession`: loop + extension host + session file (what the CLI drives);
  * :mod:`.services` — :class:`AgentServices`: extensions' ``ctx`` calls answered by the agent;
  * :mod:`.prompts_ui` — line-based terminal prompts and status line for extensions (``chat``);
  * :mod:`.loop` — :class:`AgentLoop`: turns and steps, every event fired where it happens;
  * :mod:`.subagent` — the ``subagent`` tool (given a function that runs the child turn, not the loop);
  * :mod:`.compaction` — summaries replacing old history (``before_compact``);
  * :mod:`.tools` — built-in tools and the tool registry;
  * :mod:`.turn_result` (what a turn did), :mod:`.turn_stats` (enriched ``agent_end``),
    :mod:`.emitter` (the one path of every event), :mod:`.steering` (``send_message``);
  * :mod:`.session_tree` / :mod:`.session_file` — the session tree in JSONL;
  * :mod:`.context_messages` — the context window as extensions see and edit it;
  * :mod:`.agent_config` — the agent's options; :mod:`.errors` — the agent's exceptions;

* :mod:`.scripted` — the offline ``scripted`` provider (script files, player, litellm custom provider),
  plugged into the llm layer through :mod:`.llm.providers`;
* :mod:`.llm` — the litellm boundary: one streamed call as kithost's own events, retries, error
  classification, model checks. litellm is imported lazily, only by :mod:`.llm.litellm_loader`.
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
from .loop import AgentLoop, ForkResult
from .session import AgentSession, SwitchResult
from .session_tree import SessionTree
from .tools import ToolRegistry
from .turn_result import TurnResult

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
