"""Compaction: replacing old history with a summary, manual or automatic (``before_compact``).

Procedure of :meth:`Compactor.compact` (the loop calls it with no turn running,
or at the start of a turn before the prompt is stored):

1. The window is the current branch's messages (:meth:`SessionTree.messages`).
   The last ``compact_keep_messages`` messages are kept verbatim, moved back so
   the kept part never starts with a ``tool`` result (its tool call stays with
   it). Nothing older than that → nothing to compact: no event, no change.
2. ``before_compact`` fires with the estimate (:func:`estimate_tokens` over the
   system prompt and the window), the model's context limit, the percentage,
   the message count and ``is_automatic``. A cancel — or a handler failing
   closed — means no compaction (the reason is returned). A non-empty
   ``summary`` left by the chain is used as is; otherwise the model writes one
   (one provider call, no tools, reported as ``llm_usage`` with
   ``step_number`` 0 and ``retry`` events; a failed call is an ``error`` event
   and no compaction).
3. The summary is stored as a ``compaction`` entry (``first_kept_id`` = the
   first kept message), so :meth:`SessionTree.messages` now starts with the
   summary message followed by the kept messages.

:func:`should_auto_compact` is the automatic trigger: estimated tokens above
``compact_threshold`` of the context window.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .agent_config import AgentConfig
from .context_messages import message_text
from .emitter import Emitter
from .errors import LLMCallError
from .llm.events import Finish, Retry, StreamWarning, TextDelta, Usage
from .llm.stream import stream_completion
from .session_file import Entry
from .session_tree import SessionTree

__all__ = ["CompactionResult", "Compactor", "estimate_tokens", "should_auto_compact", "window_entries"]

#: Characters per token of the estimate (the scripted provider estimates the same way).
CHARS_PER_TOKEN: Final = 4
#: Tokens counted for each message's framing.
MESSAGE_OVERHEAD: Final = 4
#: Longest text of one message in the transcript given to the summariser.
TRANSCRIPT_ITEM_CHARS: Final = 4_000


def estimate_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """About how many tokens ``messages`` take (4 characters a token, plus framing)."""
    total = 0
    for message in messages:
        chars = len(message_text(message))
        for call in message.get("tool_calls") or ():
            fn = call.get("function") or {}
            args = fn.get("arguments", "")
            chars += len(str(fn.get("name", ""))) + len(args if isinstance(args, str) else json.dumps(args))
        total += chars // CHARS_PER_TOKEN + MESSAGE_OVERHEAD
    return total


def should_auto_compact(estimated: int, limit: int, config: AgentConfig) -> bool:
    """The automatic trigger."""
    return config.auto_compact and estimated > config.compact_threshold * limit


def window_entries(tree: SessionTree) -> tuple[list[Entry], str | None]:
    """The message entries behind :meth:`SessionTree.messages`, and the summary in force (or ``None``)."""
    path = tree.branch()
    last = max((i for i, e in enumerate(path) if e.type == "compaction"), default=None)
    if last is None:
        return [e for e in path if e.type == "message"], None
    compaction = path[last]
    kept_id = compaction.data.get("first_kept_id")
    start = next((i for i, e in enumerate(path[:last]) if e.id == kept_id), last)
    kept = [e for e in path[start:last] + path[last + 1:] if e.type == "message"]
    return kept, str(compaction.data.get("summary", ""))


@dataclass(frozen=True, slots=True)
class CompactionResult:
    """What :meth:`Compactor.compact` did."""

    #: True when a compaction entry was written.
    compacted: bool
    #: Why not (cancelled by whom, nothing to compact, the summary call failed), or ''.
    reason: str = ""
    #: The summary stored.
    summary: str = ""
    #: ``extension`` (from ``before_compact``) or ``model``.
    summary_source: str = ""
    #: Id of the compaction entry.
    entry_id: str | None = None
    #: Estimated tokens before.
    tokens_before: int = 0
    #: Messages replaced by the summary.
    messages_compacted: int = 0
    is_automatic: bool = False


class Compactor:
    """Runs compactions for one agent loop."""

    def __init__(self, emitter: Emitter, config: AgentConfig) -> None:
        self.emitter = emitter
        self.config = config

    def compact(self, tree: SessionTree, model: str, limit: int, system_prompt: str, *, is_automatic: bool,
                cancel: threading.Event | None = None, on_usage: Callable[[Usage, Finish], None] | None = None,
                ) -> CompactionResult:
        """Compact ``tree``'s current branch (procedure in the module doc)."""
        entries, old_summary = window_entries(tree)
        window = tree.messages()
        estimated = estimate_tokens([{"role": "system", "content": system_prompt}, *window])
        cut = len(entries) - self.config.compact_keep_messages
        while cut > 0 and entries[cut].data["message"].get("role") == "tool":
            cut -= 1
        if cut <= 0:
            return CompactionResult(False, "nothing to compact: the conversation is shorter than what is kept",
                                    tokens_before=estimated, is_automatic=is_automatic)
        out = self.emitter.emit("before_compact", {
            "estimated_tokens": estimated,
            "context_limit": limit,
            "usage_percent": round(100.0 * estimated / limit, 2) if limit > 0 else 0.0,
            "message_count": len(window),
            "is_automatic": is_automatic,
            "summary": "",
        })
        if out.stopped:
            return CompactionResult(False, out.reason or "compaction cancelled by an extension",
                                    tokens_before=estimated, is_automatic=is_automatic)
        summary = str(out.payload.get("summary") or "").strip()
        source = "extension"
        if not summary:
            old = [{"role": "user", "content": f"[Earlier summary]\n{old_summary}"}] if old_summary else []
            to_summarise = old + [dict(e.data["message"]) for e in entries[:cut]]
            try:
                summary = self.summarise(model, to_summarise, cancel, on_usage)
            except LLMCallError as exc:
                self.emitter.emit("error", {"error": f"compaction: the summary call failed: {exc}"})
                return CompactionResult(False, f"the summary call failed: {exc}", tokens_before=estimated,
                                        is_automatic=is_automatic)
            source = "model"
            if not summary:
                return CompactionResult(False, "the model returned an empty summary", tokens_before=estimated,
                                        is_automatic=is_automatic)
        entry_id = tree.append_compaction(summary, entries[cut].id, tokens_before=estimated)
        return CompactionResult(True, "", summary, source, entry_id, estimated, cut, is_automatic)

    def summarise(self, model: str, messages: Sequence[Mapping[str, Any]], cancel: threading.Event | None,
                  on_usage: Callable[[Usage, Finish], None] | None) -> str:
        """The summary of ``messages`` (the summary prompt over their transcript); '' when cancelled."""
        request = [{"role": "system", "content": self.config.summary_prompt},
                   {"role": "user", "content": transcript(messages)}]
        text, usage, finish = self.call(model, request, self.config.llm_params, cancel)
        if on_usage is not None:
            on_usage(usage, finish)
        return "" if finish.reason == "cancelled" else text.strip()

    def call(self, model: str, request: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
             cancel: threading.Event | None) -> tuple[str, Usage, Finish]:
        """One tool-less model call outside a turn's steps: ``(text, usage, finish)``; ``retry`` and
        ``warnings`` events fire; raises :class:`LLMCallError`."""
        text: list[str] = []
        usage = Usage()
        finish: Finish | None = None
        for event in stream_completion(model, request, num_retries=self.config.num_retries,
                                       retry_base_delay_s=self.config.retry_base_delay_s,
                                       retry_max_delay_s=self.config.retry_max_delay_s,
                                       timeout_s=self.config.request_timeout_s, params=params,
                                       cancel=cancel):
            if isinstance(event, TextDelta):
                text.append(event.text)
            elif isinstance(event, Retry):
                self.emitter.emit("retry", {"attempt": event.attempt, "error": event.error})
            elif isinstance(event, StreamWarning):
                self.emitter.emit("warnings", {"warnings": [event.message]})
            elif isinstance(event, Usage):
                usage = event
            elif isinstance(event, Finish):
                finish = event
        assert finish is not None, "stream_completion ends with Finish"
        return "".join(text), usage, finish


def transcript(messages: Sequence[Mapping[str, Any]]) -> str:
    """The messages as plain text for the summariser (long items cut)."""
    lines: list[str] = []
    for message in messages:
        text = message_text(message)
        if len(text) > TRANSCRIPT_ITEM_CHARS:
            text = text[:TRANSCRIPT_ITEM_CHARS] + f" [... {len(text) - TRANSCRIPT_ITEM_CHARS} more characters]"
        calls = [f"{(c.get('function') or {}).get('name', '')}({(c.get('function') or {}).get('arguments', '')})"
                 for c in message.get("tool_calls") or ()]
        suffix = f" [tool calls: {', '.join(calls)}]" if calls else ""
        lines.append(f"{message.get('role', '?')}: {text}{suffix}")
    return "\n\n".join(lines)
