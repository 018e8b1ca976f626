"""The built-in ``subagent`` tool: a child agent for one task, observed through ``subagent_*`` events.

Contract (kit's ``SpawnSubagent`` as a tool, ``internal/extensions/subagent.go``):

* The tool does not know the loop: it is given the parent's emitter and a
  :data:`RunChild` function (:meth:`host.agent.loop.AgentLoop.run_child`) that
  runs the child turn.
* The child is a full :class:`~host.agent.loop.AgentLoop` with the parent's
  current model, the built-in tools only (no extension tools, no ``subagent``:
  depth is one), **no extensions of its own**: its events go to the parent
  (below), and its ``tool_call`` and ``tool_result`` to the parent's
  handlers with ``subagent: {id, task}`` — a parent's gate blocks the child's
  call (the child's model gets ``Error: <reason>``), so a policy cannot be
  bypassed by delegating,
  its own session file beside the parent's
  (``<parent>.subagents/<tool_call_id>.jsonl``, ``parent_session`` set), and
  the parent's cancel flag (Ctrl-C stops both).
* In the parent, inside the ``subagent`` tool's execution
  (after ``tool_execution_start``, before ``tool_execution_end``):
  ``subagent_start`` → one ``subagent_chunk`` per child event worth showing
  (:data:`CHUNK_TYPES`: text fragments, reasoning, tool calls, executions and
  results, turn start/end) → ``subagent_end`` (``error_msg`` is '' on success).
* The child's provider calls are real spend: each of its ``llm_usage`` events
  is also emitted in the parent (the child's step numbers) and counted in the
  parent turn's ``agent_end`` (calls, tokens, cost).
* The tool result for the parent's model is the child's final answer; a child
  turn that ends in error or cancelled is an error result saying so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ext_sdk.events import StopReason

from .emitter import Emitter, EventSink
from .tools.base import ToolContext, ToolKind, ToolResult
from .turn_result import TurnResult

__all__ = ["CHUNK_TYPES", "RunChild", "SubagentOutcome", "SubagentTool", "chunk_for", "run_subagent"]

log = logging.getLogger("kithost.agent")

#: Child event → ``subagent_chunk.chunk_type``.
CHUNK_TYPES: Final[Mapping[str, str]] = {
    "message_update": "text",
    "reasoning_start": "reasoning",
    "tool_call": "tool_call",
    "tool_execution_start": "tool_execution_start",
    "tool_execution_end": "tool_execution_end",
    "tool_result": "tool_result",
    "agent_start": "turn_start",
    "agent_end": "turn_end",
}


#: ``run_child(task, sink, cancel, tool_call_id, system_prompt)``: run one child turn for ``task``, its events
#: going to ``sink``, stopping when ``cancel`` is set (``None``: the parent's flag), with ``system_prompt``
#: ('' = the configured one); the child's result.
RunChild = Callable[[str, EventSink, threading.Event | None, str, str], TurnResult]


def chunk_for(tool_call_id: str, task: str, event: str, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``subagent_chunk`` payload for child event ``event``, or ``None`` if it is not shown."""
    chunk_type = CHUNK_TYPES.get(event)
    if chunk_type is None:
        return None
    content = ""
    if event == "message_update":
        content = str(data.get("chunk", ""))
    elif event == "agent_start":
        content = str(data.get("prompt", ""))
    elif event == "agent_end":
        content = str(data.get("response", ""))
    return {
        "tool_call_id": tool_call_id,
        "task": task,
        "chunk_type": chunk_type,
        "content": content,
        "tool_name": str(data.get("tool_name", "")),
        "tool_args": str(data.get("input", "")) if event == "tool_call" else "",
        "tool_result": str(data.get("content", "")) if event == "tool_result" else "",
        "is_error": bool(data.get("is_error", False)),
    }


class SubagentTool:
    """``subagent(task)``: run a child agent and return its answer."""

    name: Final = "subagent"
    kind: Final[ToolKind] = "agent"
    description: Final = (
        "Delegate one self-contained task to a subagent with the same model and the built-in tools "
        "(read, write, edit, bash, ls, glob, grep). It starts with no knowledge of this conversation: "
        "put everything it needs in `task`. Returns its final answer."
    )
    parameters: Final[dict[str, Any]] = {
        "type": "object",
        "properties": {"task": {"type": "string", "description": "The task, with all the context it needs."}},
        "required": ["task"],
        "additionalProperties": False,
    }

    def __init__(self, emitter: Emitter, run_child: RunChild) -> None:
        """``emitter``: the parent's (``subagent_*`` events go there); ``run_child`` runs the child turn."""
        self._emitter = emitter
        self._run_child = run_child

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Run the child (contract in the module doc)."""
        outcome = run_subagent(self._emitter, self._run_child, str(args["task"]), ctx.tool_call_id, ctx.cancel)
        if outcome.error_msg:
            partial = f"\n(partial answer: {outcome.response})" if outcome.response else ""
            return ToolResult(f"Error: {outcome.error_msg}{partial}", True, outcome.meta)
        return ToolResult(outcome.response or "(the subagent gave no answer)", False, outcome.meta)


@dataclass(frozen=True, slots=True)
class SubagentOutcome:
    """How one subagent run ended."""

    #: ``completed``, ``cancelled`` or ``error``.
    status: str
    response: str
    #: '' when it succeeded (kit's ``ErrorMsg``).
    error_msg: str
    meta: dict[str, Any] = field(default_factory=dict)


def run_subagent(emitter: Emitter, run_child: RunChild, task: str, subagent_id: str,
                 cancel: threading.Event | None, system_prompt: str = "") -> SubagentOutcome:
    """``subagent_start`` → the child's turn (its events as ``subagent_chunk``) → ``subagent_end``; never raises.

    Shared by the ``subagent`` tool and ``ctx.spawn_subagent`` (``subagent_id`` is the
    events' ``tool_call_id``).
    """
    emitter.emit("subagent_start", {"tool_call_id": subagent_id, "task": task})

    def forward(event: str, data: dict[str, Any]) -> None:
        chunk = chunk_for(subagent_id, task, event, data)
        if chunk is not None:
            emitter.emit("subagent_chunk", chunk)

    response, error, status = "", "", "error"
    meta: dict[str, Any] = {}
    try:
        result = run_child(task, forward, cancel, subagent_id, system_prompt)
    except Exception as exc:  # a broken child must not take the parent's turn down
        log.exception("subagent %s failed", subagent_id)
        error = f"the subagent could not run: {type(exc).__name__}: {exc}"
    else:
        response, status = result.response, "completed"
        meta = {"stop_reason": result.stop_reason.value, "llm_call_count": result.llm_call_count,
                "tool_call_count": result.tool_call_count, "cost": result.cost}
        if result.stop_reason is StopReason.ERROR:
            error, status = result.error or "the subagent's turn failed", "error"
        elif result.stop_reason is not StopReason.COMPLETED:
            error = f"the subagent's turn ended: {result.stop_reason}"
            status = "cancelled" if result.stop_reason is StopReason.CANCELLED else "error"
    emitter.emit("subagent_end", {"tool_call_id": subagent_id, "task": task, "response": response,
                                  "error_msg": error})
    return SubagentOutcome(status, response, error, meta)
