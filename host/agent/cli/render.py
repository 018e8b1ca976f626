"""``render_event_for_humans``: agent events as streaming terminal text (``kithost run``/``chat`` without ``--json``).

Contract: called with every event in order (an :data:`~host.agent.emitter.EventSink`
can call it and write what it returns); returns the text to write as is — no
newline is added, so streamed chunks (``message_update``, ``tool_output``) join
up — or ``None`` for events not shown. Plain text, no colours; never raises
for a payload of the documented shape.

A ``tool_result`` shows one line: for a call an extension blocked, who
blocked it and the reason (the result's first line, where the loop puts
``Error: <reason>``; ``tool_result`` handlers may have appended to it); for
another failed call, the result's last line (where tools put the error); else
the number of lines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from ext_sdk.events import StopReason

__all__ = ["render_event_for_humans"]

#: Longest tool argument / result preview.
PREVIEW: Final = 120

#: Head of the ``agent_end`` line by stop reason.
_END_HEADS: Final[dict[str, str]] = {StopReason.COMPLETED: "done", StopReason.CANCELLED: "cancelled",
                                     StopReason.ERROR: "stopped by an error",
                                     StopReason.HANDLED: "handled by an extension"}


def _short(text: str, limit: int = PREVIEW) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _args_preview(tool: str, data: Mapping[str, Any]) -> str:
    args = data.get("parsed_args")
    if isinstance(args, Mapping):
        for key in ("command", "path", "pattern", "task"):
            if isinstance(args.get(key), str):
                return _short(args[key])
        return _short(json.dumps(args, ensure_ascii=False))
    return _short(str(data.get("input", "")))


def _blocked_by(data: Mapping[str, Any]) -> str | None:
    """Who blocked the call of a ``tool_result`` (from its metadata, which the chain cannot change), or ``None``."""
    try:
        metadata = json.loads(str(data.get("metadata") or "{}"))
    except json.JSONDecodeError:
        return None
    if isinstance(metadata, dict) and metadata.get("blocked") is True:
        return str(metadata.get("blocked_by") or "")
    return None


def _cost(value: Any) -> str:
    return "cost unknown" if value is None else f"${float(value):.6f}"


def render_event_for_humans(event: str, data: Mapping[str, Any]) -> str | None:
    """The text for ``event`` (see the module doc)."""
    if event == "message_update":
        return str(data.get("chunk", ""))
    if event == "message_end":
        return "\n" if data.get("content") else None
    if event == "reasoning_start":
        return "(thinking)\n"
    if event == "tool_call":
        return f"→ {data.get('tool_name', '?')} {_args_preview(str(data.get('tool_name', '')), data)}\n"
    if event == "tool_output":
        return str(data.get("chunk", ""))
    if event == "tool_result":
        content = str(data.get("content", ""))
        blocked_by = _blocked_by(data)
        if blocked_by is not None:  # the reason is the first line; handlers of the chain may have added more
            first = next((ln for ln in content.splitlines() if ln.strip()), content)
            return f"  ✗ blocked by {blocked_by or 'an extension'}: {_short(first)}\n"
        if data.get("is_error"):
            last = next((ln for ln in reversed(content.splitlines()) if ln.strip()), content)
            return f"  ✗ {_short(last)}\n"
        lines = content.count("\n") + 1 if content else 0
        return f"  ✓ {data.get('tool_name', '')}: {lines} line(s)\n"
    if event == "retry":
        return f"(retrying, attempt {data.get('attempt')}: {_short(str(data.get('error', '')))})\n"
    if event == "warnings":
        return "".join(f"warning: {w}\n" for w in data.get("warnings") or ())
    if event == "error":
        return f"error: {data.get('error', '')}\n"
    if event == "source":
        return f"[source: {data.get('title') or data.get('url', '')} {data.get('url', '')}]\n"
    if event == "model_change":
        return f"[model: {data.get('previous_model') or '-'} → {data.get('new_model')} ({data.get('source')})]\n"
    if event == "subagent_start":
        return f"[subagent started: {_short(str(data.get('task', '')))}]\n"
    if event == "subagent_chunk":
        if data.get("chunk_type") == "tool_call":
            return f"  [subagent → {data.get('tool_name', '?')}]\n"
        return None
    if event == "subagent_end":
        error = data.get("error_msg")
        return f"[subagent {'failed: ' + _short(str(error)) if error else 'done'}]\n"
    if event == "before_compact":
        auto = "automatic " if data.get("is_automatic") else ""
        return (f"[{auto}compaction: ~{data.get('estimated_tokens')} tokens, {data.get('usage_percent')}% of "
                f"{data.get('context_limit')}]\n")
    if event == "agent_end":
        reason = data.get("stop_reason")
        head = _END_HEADS.get(str(reason), str(reason))
        return (f"[{head}: {data.get('llm_call_count', 0)} model call(s), {data.get('tool_call_count', 0)} tool "
                f"call(s), {data.get('input_tokens_delta', 0)}+{data.get('output_tokens_delta', 0)} tokens, "
                f"{_cost(data.get('cost_delta'))}, {data.get('duration_ms', 0)} ms]\n")
    return None
