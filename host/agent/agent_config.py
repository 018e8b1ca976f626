"""``AgentConfig``: what the agent loop does besides talking to extensions (frozen, documented per field).

The extension host has its own record (:class:`host.config.HostConfig`:
deadlines, policy, limits); this one is about turns, steps, retries,
compaction and subagents. Vary it with :func:`dataclasses.replace`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["DEFAULT_SUBAGENT_PROMPT", "DEFAULT_SUMMARY_PROMPT", "DEFAULT_SYSTEM_PROMPT", "AgentConfig"]

DEFAULT_SYSTEM_PROMPT: Final = (
    "You are a coding agent working in the user's project directory. Use the tools to read, search, edit "
    "and run things; keep answers short and say what you changed."
)
DEFAULT_SUMMARY_PROMPT: Final = (
    "Summarise the conversation below for your own later use: the user's goals, decisions made, files "
    "touched, commands run and their outcome, and what is still open. Be concise and factual."
)
DEFAULT_SUBAGENT_PROMPT: Final = (
    "You are a subagent: do the one task you are given with the tools available, then answer with the "
    "result only."
)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Options of :class:`host.agent.loop.AgentLoop`."""

    #: The system prompt of every turn (``before_agent_start`` may replace it for one turn).
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    #: Most model calls in one turn; a turn that reaches it ends with stop reason ``error``.
    max_steps: int = 50
    #: Extra arguments for every ``litellm.completion`` call (``temperature``, ``api_base``,
    #: ``script`` for the scripted provider, ...).
    llm_params: Mapping[str, Any] = field(default_factory=dict)
    #: Retries of a transient provider failure (each one is a ``retry`` event).
    num_retries: int = 2
    #: Backoff of the first retry (doubled each time, capped by ``retry_max_delay_s``).
    retry_base_delay_s: float = 1.0
    #: Longest wait between retries.
    retry_max_delay_s: float = 30.0
    #: Timeout of one provider request; ``None`` = litellm's default.
    request_timeout_s: float | None = None
    #: Context window in tokens; ``None`` = from litellm's model map (128 000 if unknown).
    context_window: int | None = None
    #: Compact automatically at the start of a turn when the estimated context exceeds
    #: ``compact_threshold`` of the context window.
    auto_compact: bool = True
    #: Fraction of the context window that triggers automatic compaction.
    compact_threshold: float = 0.8
    #: Most recent messages kept verbatim by a compaction (the rest becomes the summary).
    compact_keep_messages: int = 6
    #: Instructions of the model call that writes a compaction summary.
    summary_prompt: str = DEFAULT_SUMMARY_PROMPT
    #: Offer the built-in ``subagent`` tool.
    subagents: bool = True
    #: System prompt of a subagent's turn.
    subagent_system_prompt: str = DEFAULT_SUBAGENT_PROMPT
    #: ``max_steps`` of a subagent's turn.
    subagent_max_steps: int = 20
    #: Emit ``context_prepare`` / ``prepare_step`` even when no extension subscribed (building the
    #: window payload costs; an event sink that wants every event, e.g. ``--json``, sets this).
    emit_windows: bool = False
    #: After a turn, how many queued messages (``ctx.send_message``) may start follow-up turns.
    max_followup_turns: int = 8
    #: After a turn, how long to wait for notify handlers of extensions granted ``agent`` (which
    #: may queue a follow-up message, e.g. from ``agent_end``).
    followup_wait_s: float = 2.0
    #: At a session switch or close, how long to wait for queued notify events (``session_shutdown``
    #: included) to reach the extensions.
    shutdown_flush_s: float = 2.0

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.subagent_max_steps < 1:
            raise ValueError("max_steps and subagent_max_steps must be at least 1")
        if not 0.0 < self.compact_threshold <= 1.0:
            raise ValueError(f"compact_threshold must be in (0, 1], not {self.compact_threshold}")
        if self.compact_keep_messages < 1:
            raise ValueError("compact_keep_messages must be at least 1")
