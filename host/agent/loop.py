"""``AgentLoop``: one turn = the model and the tools until the model stops, every event fired where it happens.

Order of one :meth:`AgentLoop.run_turn` (each emit goes through
:class:`~host.agent.emitter.Emitter`; mode in brackets)::

    input [gate+chain]            transform → the text used below; handled (or a handler
                                  failing closed) → agent_end "handled", the model is never called
    before_agent_start [chain]    system_prompt replaces this turn's system prompt;
                                  inject_text becomes a user message stored before the prompt
    agent_start
    (before_compact)              automatic compaction when the estimate passes the threshold
                                  (the injected text and the prompt are stored after it)
    context_prepare [chain]       once per turn, the whole window (system prompt first);
                                  a result replaces what the model receives for this turn
    per step (model call) n = 1, 2, ...:
      (steering)                  messages queued by ctx.send_message are stored and injected
      prepare_step [chain]        n ≥ 2: the window for this call (after the injection), the
                                  tool choice and the active tools; a result replaces them for
                                  this call only
      step_start
      before_model [chain]        every call: the whole request (messages, tools, tool_choice,
                                  params); a result changes it, or answers it ('response': no
                                  provider call, no llm_usage; message_* and step_finish still fire)
      retry* · message_start · message_update* · reasoning_start · tool_call_input_start/
      delta*/end · source · warnings      as the stream delivers them; message_start comes
                                  with the first content of any kind, message_end after the last
      step_finish · llm_usage     one each per finished provider call (cost None when unknown)
      per tool call, in order:
        (a tool disabled by set_active_tools: its result is "Error: tool <name> is currently
        disabled", with no event, as in kit)
        tool_call [gate]          blocked (or a handler failing closed) → the tool never runs;
                                  its result is "Error: <reason>"
        tool_execution_start · tool_output* (bash) · tool_execution_end   (not when blocked)
          (subagent_start · subagent_chunk* · llm_usage* · subagent_end   inside the subagent tool;
           the subagent's own tool_call and tool_result reach this loop's handlers, with
           ``subagent: {id, task}``: a block there blocks the subagent's call)
        tool_result [chain]       for every call, a blocked one included (so each tool_call has
                                  exactly one tool_result); patched content/is_error are what the
                                  model sees and what the session stores; a handler failing closed
                                  withholds the output
    agent_end                     kit's enriched payload (turn_stats.TurnStats); a subagent's
                                  provider calls count in it too

A turn ends ``completed`` when the model answers without tool calls (and no
steering message is waiting), ``cancelled`` when :meth:`cancel` was called
(the stream stops at its next chunk, a running bash command is killed, tool
calls not yet run get an "Error: cancelled" result so the history stays
valid), ``error`` on a failed model call, the step limit, or a chain handler
failing closed on ``before_agent_start``/``context_prepare``/``prepare_step``
(each also an ``error`` event), ``handled`` by ``input``.

Sessions: every message is appended to the :class:`SessionTree` as it happens
(durable on return), so a crash loses nothing already said; the turn's own
window (possibly replaced by ``context_prepare``) grows in step with it.

Failure containment: the extension host never raises for an extension; a bug
in the loop itself ends the turn with ``error`` (logged with its traceback)
rather than leaving the session half-done. Threads: :meth:`run_turn`,
:meth:`compact` and :meth:`fork` need the agent idle (else
:class:`~host.agent.errors.AgentBusyError`); :meth:`cancel`, :meth:`steer`,
:meth:`set_model` and :meth:`current_window` may be called from any thread.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ext_sdk.events import MODEL_PARAMS, StopReason

from ..exthost import Outcome
from .agent_config import AgentConfig
from .compaction import CompactionResult, Compactor, estimate_tokens, should_auto_compact
from .context_messages import apply_context_messages, message_text, to_context_messages
from .emitter import Emitter, EventSink, PolicyBinding
from .errors import AgentBusyError, AgentError, LLMCallError
from .llm.events import (
    Finish,
    ReasoningDelta,
    Retry,
    Source,
    StreamWarning,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from .llm.models import context_window
from .llm.stream import stream_completion
from .session_tree import SessionTree
from .steering import SteeringQueue
from .subagent import SubagentTool
from .tools import ToolRegistry, ToolResult
from .turn_result import TurnResult
from .turn_stats import TurnStats, UsageTotals

__all__ = ["AgentLoop", "ForkResult"]

log = logging.getLogger("kithost.agent")


@dataclass(frozen=True, slots=True)
class ForkResult:
    """What :meth:`AgentLoop.fork` did."""

    forked: bool
    #: Why not (the extension's reason), else ''.
    reason: str = ""
    #: The new leaf (``None``: before the first entry).
    leaf_id: str | None = None
    #: Forking at a user message moves before it; its text, to edit and send again ('' otherwise).
    user_text: str = ""


@dataclass(frozen=True, slots=True)
class Completion:
    """What :meth:`AgentLoop.complete` returned (the ``complete`` host call's value)."""

    text: str
    model: str
    input_tokens: int
    output_tokens: int
    cost: float | None

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {"text": self.text, "model": self.model, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cost": self.cost}


@dataclass
class _Request:
    """One model call's request as ``prepare_step`` and ``before_model`` may change it."""

    messages: list[dict[str, Any]]
    tools: list[str]
    tool_choice: str | None = None
    #: Replacement provider parameters (keys of ``MODEL_PARAMS`` only), or ``None``: unchanged.
    params: dict[str, Any] | None = None
    #: A synthetic answer (``before_model``'s ``response``): the provider is not called.
    response: dict[str, Any] | None = None


@dataclass
class _Turn:
    stats: TurnStats = field(default_factory=TurnStats)
    step: int = 0
    response: str = ""
    system_prompt: str = ""


class _Stop(Exception):
    """Ends a turn early (control flow inside :meth:`AgentLoop.run_turn`; never escapes it)."""

    def __init__(self, stop_reason: StopReason, error: str = "", reason: str = "") -> None:
        super().__init__(stop_reason)
        self.stop_reason = stop_reason
        self.error = error
        self.reason = reason


def _parse_args(arguments: str) -> tuple[Any, str]:
    """``(parsed, problem)``: the parsed arguments, or ``None`` and what is wrong. '' means ``{}``."""
    if not arguments.strip():
        return {}, ""
    try:
        return json.loads(arguments), ""
    except json.JSONDecodeError as exc:
        return None, f"{exc.msg} at line {exc.lineno}, column {exc.colno}"


def _child_session_path(parent: Path, tool_call_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", tool_call_id) or "subagent"
    directory = parent.with_name(parent.stem + ".subagents")
    path = directory / f"{safe}.jsonl"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"{safe}-{n}.jsonl"
    return path


class AgentLoop:
    """The agent: turns, steps, tools, steering, model switching, compaction, forks, subagents."""

    def __init__(self, *, model: str, tree: SessionTree, tools: ToolRegistry, emitter: Emitter,
                 config: AgentConfig | None = None, cancel_event: threading.Event | None = None,
                 steering: SteeringQueue | None = None) -> None:
        """A loop over ``tree`` (appended to as messages happen) with ``tools``.

        With ``config.subagents`` the built-in ``subagent`` tool is registered into
        ``tools``. ``cancel_event`` shares a cancel flag (a subagent uses its
        parent's; the loop then never clears it); by default the loop owns one and
        clears it when a turn starts, so a cancel never leaks into the next turn.
        """
        self.config = config or AgentConfig()
        self.tools = tools
        self._emitter = emitter
        self._model = model
        self._tree = tree
        #: Set by :meth:`cancel`; shared with a subagent's child loop.
        self._cancel = cancel_event or threading.Event()
        self._owns_cancel = cancel_event is None
        #: Messages queued by ``ctx.send_message`` / :meth:`steer`.
        self.steering = steering or SteeringQueue()
        self._busy = threading.Lock()
        self._state = threading.RLock()  # model, tree, the turn's window
        self._window: list[dict[str, Any]] | None = None
        self._turn: _Turn | None = None
        self._limits: dict[str, int] = {}
        self._compactor = Compactor(emitter, self.config)
        #: Every provider call since the agent started (``ctx.get_session_usage``).
        self.usage = UsageTotals()
        self._stats_lock = threading.Lock()  # calls are recorded from the turn and from extensions' threads
        self._active: tuple[str, ...] | None = None  # set_active_tools; None = all
        self._turn_thread: int | None = None
        if self.config.subagents and SubagentTool.name not in tools:
            tools.register(SubagentTool(emitter, self.run_child))

    # ------------------------------------------------------------------ state

    @property
    def emitter(self) -> Emitter:
        """Where this loop's events go."""
        return self._emitter

    @property
    def model(self) -> str:
        """The model the next call uses."""
        with self._state:
            return self._model

    @property
    def tree(self) -> SessionTree:
        """The session the loop appends to."""
        with self._state:
            return self._tree

    @property
    def busy(self) -> bool:
        """Whether a turn (or a compaction, a fork) is running."""
        return self._busy.locked()

    @property
    def cancelled(self) -> bool:
        """Whether the running turn was asked to stop."""
        return self._cancel.is_set()

    @contextmanager
    def _idle(self, what: str) -> Iterator[None]:
        if not self._busy.acquire(blocking=False):
            raise AgentBusyError(f"cannot {what} while a turn is running; wait for it or cancel it")
        try:
            if self._owns_cancel:
                self._cancel.clear()
            yield
        finally:
            self._busy.release()

    def replace_tree(self, tree: SessionTree) -> SessionTree:
        """Switch to another session (the caller fires the session events); returns the old tree."""
        with self._idle("switch sessions"), self._state:
            old, self._tree = self._tree, tree
            return old

    def current_window(self) -> list[dict[str, Any]]:
        """What the model receives next (a copy): the running turn's window, else system prompt + history."""
        with self._state:
            if self._window is not None:
                return copy.deepcopy(self._window)
            tree = self._tree
            system = self.config.system_prompt
        return self._with_system(system, tree.messages())

    @property
    def active_tools(self) -> list[str]:
        """Names of the tools offered to the model (all, unless :meth:`set_active_tools` chose some)."""
        names = self.tools.names()
        active = self._active
        return names if active is None else [n for n in names if n in active]

    def set_active_tools(self, names: Sequence[str]) -> None:
        """Offer only ``names`` (empty: all); an unknown name raises :class:`AgentError`."""
        unknown = [n for n in names if n not in self.tools]
        if unknown:
            raise AgentError(f"unknown tool(s) {', '.join(map(repr, unknown))} "
                             f"(tools: {', '.join(self.tools.names())})")
        self._active = tuple(names) if names else None

    def on_turn_thread(self) -> bool:
        """Whether the caller runs on the thread of the running turn (a gate/chain handler's host call)."""
        return self._turn_thread == threading.get_ident()

    def context_limit(self, model: str | None = None) -> int:
        """The context window (tokens) used for compaction decisions."""
        if self.config.context_window is not None:
            return self.config.context_window
        name = model or self.model
        if name not in self._limits:
            self._limits[name] = context_window(name)
        return self._limits[name]

    # ------------------------------------------------------------------ from any thread

    def cancel(self) -> None:
        """Stop the running turn cleanly (``agent_end`` stop reason ``cancelled``); no-op when idle."""
        self._cancel.set()

    def steer(self, text: str, source: str = "user") -> None:
        """Queue a user message (see :mod:`host.agent.steering`)."""
        self.steering.put(text, source)

    def set_model(self, model: str, source: str = "user") -> bool:
        """Switch the model (the next call uses it); fires ``model_change``. ``False`` if already in use."""
        with self._state:
            previous = self._model
            if model == previous:
                return False
            self._model = model
            self._tree.append_model_change(model, previous, source)
        self._emitter.emit("model_change", {"new_model": model, "previous_model": previous, "source": source})
        return True

    # ------------------------------------------------------------------ idle operations

    def complete(self, prompt: str, *, system: str = "", messages: Sequence[Mapping[str, Any]] = (),
                 model: str = "", max_tokens: int | None = None) -> Completion:
        """One model call made for an extension (kit's ``Complete``), from any thread.

        The call gets no tools. It is reported as ``llm_usage`` (step 0), counted
        in the session usage and, when a turn runs, in that turn's ``agent_end``.
        Raises :class:`~host.agent.errors.LLMCallError` when the call fails.
        """
        chosen = model or self.model
        request = ([{"role": "system", "content": system}] if system else []) + [dict(m) for m in messages]
        request.append({"role": "user", "content": prompt})
        params = dict(self.config.llm_params)
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        text, usage, finish = self._compactor.call(chosen, request, params, self._cancel if self.busy else None)
        self._extra_usage(usage, finish)
        return Completion(text, finish.model, usage.input_tokens, usage.output_tokens, usage.cost)

    def summarize(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """A summary of ``messages`` written by the model (the compaction prompt), counted like :meth:`complete`."""
        return self._compactor.summarise(self.model, messages, None, self._extra_usage)

    def compact(self) -> CompactionResult:
        """Manual compaction (see :mod:`host.agent.compaction`)."""
        with self._idle("compact"):
            model = self.model
            return self._compactor.compact(self.tree, model, self.context_limit(model), self.config.system_prompt,
                                           is_automatic=False, cancel=self._cancel, on_usage=self._extra_usage)

    def fork(self, entry_id: str | None) -> ForkResult:
        """Branch the session at ``entry_id`` after ``before_fork`` (a cancel: nothing changes).

        The next message attaches after ``entry_id``; at a user message it
        attaches *before* it (its parent) and the text is returned to be
        edited and sent again (kit's ``IsUserMessage``/``UserText``).
        ``None`` forks before the first entry. An unknown id raises
        :class:`~host.agent.errors.AgentError`.
        """
        with self._idle("fork"):
            tree = self.tree
            if entry_id is None:
                target, parent, is_user, text = "", None, False, ""
            else:
                entry = tree.get(entry_id)
                message = entry.data.get("message") if entry.type == "message" else None
                is_user = isinstance(message, Mapping) and message.get("role") == "user"
                text = message_text(message) if is_user and isinstance(message, Mapping) else ""
                target, parent = entry.id, entry.parent_id
            out = self._emitter.emit("before_fork", {"target_id": target, "is_user_message": is_user,
                                                     "user_text": text})
            if out.stopped:
                return ForkResult(False, out.reason or "fork cancelled by an extension")
            leaf = parent if is_user else (entry_id or None)
            tree.fork(leaf)
            return ForkResult(True, "", leaf, text)

    # ------------------------------------------------------------------ the turn

    def run_turn(self, prompt: str, source: str = "interactive") -> TurnResult:
        """Run one turn for ``prompt`` (order and stop reasons in the module doc).

        ``source`` is the ``input`` event's: ``interactive``, ``cli``, ``script``,
        ``queue`` or ``extension``. Raises :class:`AgentBusyError` if a turn runs.
        """
        with self._idle("start a turn"):
            turn = _Turn()
            self._turn = turn
            self._turn_thread = threading.get_ident()
            try:
                try:
                    self._run(turn, prompt, source)
                except _Stop as stop:
                    return self._end(turn, stop.stop_reason, stop.error, stop.reason)
                except Exception as exc:  # a bug here, never an extension (emit does not raise for them)
                    log.exception("agent turn failed")
                    message = f"internal error: {type(exc).__name__}: {exc}"
                    self._emit_safely("error", {"error": message})
                    return self._end(turn, StopReason.ERROR, message)
                return self._end(turn, StopReason.COMPLETED)
            finally:
                self._turn_thread = None
                with self._state:
                    self._window = None
                    self._turn = None

    def _emit(self, event: str, payload: dict[str, Any]) -> Outcome:
        return self._emitter.emit(event, payload)

    def _emit_safely(self, event: str, payload: dict[str, Any]) -> None:
        try:
            self._emitter.emit(event, payload)
        except Exception:  # reporting an internal error must not raise a second one
            log.exception("could not emit %s", event)

    def _end(self, turn: _Turn, stop_reason: StopReason, error: str = "", reason: str = "") -> TurnResult:
        payload = turn.stats.agent_end(turn.response, stop_reason)
        self._emit_safely("agent_end", payload)
        return TurnResult.from_agent_end(payload, error=error, reason=reason, steps=turn.step,
                                         failures=tuple(self._emitter.take_failures()))

    def _run(self, turn: _Turn, prompt: str, source: str) -> None:
        out = self._emit("input", {"text": prompt, "source": source})
        if out.stopped:
            raise _Stop(StopReason.HANDLED, reason=out.reason or "handled by an extension")
        text = str(out.payload.get("text", prompt))
        out = self._emit("before_agent_start", {"prompt": text, "system_prompt": self.config.system_prompt,
                                                "inject_text": ""})
        self._fail_if_closed(out, "before_agent_start")
        turn.system_prompt = str(out.payload.get("system_prompt") or "")
        inject = str(out.payload.get("inject_text") or "")
        self._emit("agent_start", {"prompt": text})
        self._maybe_auto_compact(turn, [inject, text])
        if inject:
            self._append({"role": "user", "content": inject}, origin="before_agent_start")
        self._append({"role": "user", "content": text}, origin=source)
        window = self._with_system(turn.system_prompt, self.tree.messages())
        window = self._replace_window("context_prepare", window, {})
        with self._state:
            self._window = window
        self._steps(turn)

    def _fail_if_closed(self, out: Outcome, event: str) -> None:
        """A chain event stopped: only a handler failing closed does that; the turn cannot go on."""
        if out.stopped:
            message = f"{event}: {out.reason}"
            self._emit("error", {"error": message})
            raise _Stop(StopReason.ERROR, message)

    @staticmethod
    def _with_system(system_prompt: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + messages

    def _replace_window(self, event: str, window: list[dict[str, Any]], extra: dict[str, Any]
                        ) -> list[dict[str, Any]]:
        """Offer ``window`` to ``event``'s handlers (if anyone listens); their result replaces it."""
        if not self._emitter.wants(event):
            return window
        items = to_context_messages(window)
        out = self._emit(event, {**extra, "messages": items})
        self._fail_if_closed(out, event)
        return self._applied(event, window, items, out.payload.get("messages"))

    def _maybe_auto_compact(self, turn: _Turn, pending: Sequence[str]) -> None:
        if not self.config.auto_compact:
            return
        model = self.model
        limit = self.context_limit(model)
        window = self._with_system(turn.system_prompt, self.tree.messages())
        window += [{"role": "user", "content": t} for t in pending if t]
        if should_auto_compact(estimate_tokens(window), limit, self.config):
            result = self._compactor.compact(self.tree, model, limit, turn.system_prompt, is_automatic=True,
                                             cancel=self._cancel, on_usage=self._extra_usage)
            if not result.compacted:
                log.info("automatic compaction skipped: %s", result.reason)

    def _extra_usage(self, usage: Usage, finish: Finish) -> None:
        """A provider call outside a turn's steps (a compaction summary): ``llm_usage`` step 0."""
        self._emit("llm_usage", {**usage.tokens(), "cost": usage.cost, "model": finish.model,
                                 "provider": finish.provider, "request_id": finish.request_id, "step_number": 0,
                                 "finish_reason": finish.reason})
        self._record_call(usage)

    def _record_call(self, usage: Usage) -> None:
        """One finished provider call: in the session usage and, when a turn runs, in its ``agent_end``."""
        self.usage.record(usage)
        with self._stats_lock:
            turn = self._turn
            if turn is not None:
                turn.stats.record_call(usage)

    def _append(self, message: dict[str, Any], **extra: Any) -> str:
        """Store ``message`` in the session (durable on return) and in the running turn's window."""
        with self._state:
            entry_id = self._tree.append("message", {"message": message, **extra}).id
            if self._window is not None:
                self._window.append(copy.deepcopy(message))
            return entry_id

    def _steps(self, turn: _Turn) -> None:
        while True:
            if self._cancel.is_set():
                raise _Stop(StopReason.CANCELLED)
            if turn.step >= self.config.max_steps:
                limit = f"the turn reached its step limit ({self.config.max_steps} model calls) and was stopped"
                self._emit("error", {"error": limit})
                raise _Stop(StopReason.ERROR, limit)
            turn.step += 1
            for steer in self.steering.drain():
                self._append({"role": "user", "content": steer.text}, origin="steer", steer_source=steer.source)
            with self._state:
                assert self._window is not None
                messages = copy.deepcopy(self._window)
            request = self._prepare_step(turn, messages)
            self._emit("step_start", {"step_number": turn.step})
            self._before_model(turn, request)
            if request.response is not None:
                message, finish_reason = self._synthetic(turn, request.response)
            else:
                message, finish_reason = self._call_model(turn, request)
            if finish_reason == "cancelled":
                raise _Stop(StopReason.CANCELLED)
            calls = message.get("tool_calls") or []
            if not calls:
                if len(self.steering):
                    continue  # a message arrived during the last call: answer it in this turn
                return
            for i, call in enumerate(calls):
                if self._cancel.is_set():
                    for rest in calls[i:]:
                        self._append({"role": "tool", "tool_call_id": rest["id"],
                                      "content": "Error: cancelled before it ran"}, is_error=True)
                    raise _Stop(StopReason.CANCELLED)
                self._tool_call(turn, call)

    def _prepare_step(self, turn: _Turn, messages: list[dict[str, Any]]) -> _Request:
        """The request of this step after ``prepare_step`` (n ≥ 2; order in the module doc)."""
        request = _Request(messages, self.active_tools)
        if turn.step > 1 and self._emitter.wants("prepare_step"):
            items = to_context_messages(messages)
            out = self._emit("prepare_step", {"step_number": turn.step, "messages": items, "tool_choice": None,
                                              "active_tools": list(request.tools)})
            self._fail_if_closed(out, "prepare_step")
            request.messages = self._applied("prepare_step", messages, items, out.payload.get("messages"))
            request.tool_choice = out.payload.get("tool_choice") or None
            request.tools = self._known_tools("prepare_step", out.payload.get("active_tools"), request.tools)
        return request

    def _before_model(self, turn: _Turn, request: _Request) -> None:
        """``before_model`` changes ``request`` in place (or answers it: ``request.response``)."""
        if self._emitter.wants("before_model"):
            items = to_context_messages(request.messages)
            params = {k: v for k, v in self.config.llm_params.items() if k in MODEL_PARAMS.fields}
            out = self._emit("before_model", {"step_number": turn.step, "model": self.model, "messages": items,
                                              "tools": list(request.tools), "tool_choice": request.tool_choice,
                                              "params": params, "response": None})
            self._fail_if_closed(out, "before_model")
            request.messages = self._applied("before_model", request.messages, items, out.payload.get("messages"))
            request.tools = self._known_tools("before_model", out.payload.get("tools"), request.tools)
            request.tool_choice = out.payload.get("tool_choice") or None
            new_params = out.payload.get("params")
            if isinstance(new_params, dict) and new_params != params:
                request.params = {k: v for k, v in new_params.items() if k in MODEL_PARAMS.fields and v is not None}
            response = out.payload.get("response")
            request.response = dict(response) if isinstance(response, dict) else None

    def _applied(self, event: str, window: list[dict[str, Any]], items: list[dict[str, Any]], new: Any
                 ) -> list[dict[str, Any]]:
        if not isinstance(new, list) or new == items:
            return window
        applied = apply_context_messages(window, new)
        for problem in applied.problems:
            log.warning("%s result repaired: %s", event, problem)
        return applied.messages

    def _known_tools(self, event: str, names: Any, default: list[str]) -> list[str]:
        """``names`` restricted to the agent's tools (unknown names dropped, logged)."""
        if not isinstance(names, list) or names == default:
            return default
        unknown = [n for n in names if n not in self.tools]
        if unknown:
            log.warning("%s result names unknown tools %s: left out", event, unknown)
        return [n for n in names if n in self.tools]

    def _llm_params(self, request: _Request) -> dict[str, Any]:
        params = dict(self.config.llm_params)
        if request.params is not None:
            for key in MODEL_PARAMS.fields:
                params.pop(key, None)
            params.update(request.params)
        if request.tool_choice and request.tools:
            choice = request.tool_choice
            params["tool_choice"] = (choice if choice in ("auto", "none", "required")
                                     else {"type": "function", "function": {"name": choice}})
        return params

    def _synthetic(self, turn: _Turn, response: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        """A ``before_model`` answer used as the model's: stored and streamed as one chunk; no provider call."""
        content = str(response.get("content") or "")
        calls = [{"id": str(c.get("id") or f"synthetic_{turn.step}_{i}"), "type": "function",
                  "function": {"name": str(c.get("name", "")), "arguments": str(c.get("arguments") or "{}")}}
                 for i, c in enumerate(response.get("tool_calls") or ())]
        message: dict[str, Any] = {"role": "assistant", "content": content or None}
        if calls:
            message["tool_calls"] = calls
        if content:
            self._emit("message_start", {})
            self._emit("message_update", {"chunk": content})
            self._emit("message_end", {"content": content})
            turn.response = content
        if content or calls:
            self._append(message, synthetic=True)
        reason = "tool_calls" if calls else "stop"
        self._emit("step_finish", {"step_number": turn.step, "has_tool_calls": bool(calls), "finish_reason": reason,
                                   **Usage().tokens()})
        return message, reason

    def _call_model(self, turn: _Turn, request: _Request) -> tuple[dict[str, Any], str]:
        """One provider call: stream it as events, store the message; ``(message, finish_reason)``."""
        step = turn.step
        messages = request.messages
        started = reasoning = False
        text: list[str] = []
        usage = Usage()
        finish: Finish | None = None

        def start_message() -> None:
            nonlocal started
            if not started:
                started = True
                self._emit("message_start", {})

        try:
            for event in stream_completion(
                    self.model, messages, tools=self.tools.specs(request.tools), num_retries=self.config.num_retries,
                    retry_base_delay_s=self.config.retry_base_delay_s,
                    retry_max_delay_s=self.config.retry_max_delay_s, timeout_s=self.config.request_timeout_s,
                    params=self._llm_params(request), cancel=self._cancel):
                if isinstance(event, TextDelta):
                    start_message()
                    text.append(event.text)
                    self._emit("message_update", {"chunk": event.text})
                elif isinstance(event, ReasoningDelta):
                    start_message()
                    if not reasoning:
                        reasoning = True
                        self._emit("reasoning_start", {"id": f"reasoning_{step}"})
                elif isinstance(event, ToolCallStart):
                    start_message()
                    self._emit("tool_call_input_start", {"tool_call_id": event.id, "tool_name": event.name,
                                                         "tool_kind": self.tools.kind(event.name)})
                elif isinstance(event, ToolCallDelta):
                    self._emit("tool_call_input_delta", {"tool_call_id": event.id, "delta": event.delta})
                elif isinstance(event, ToolCallEnd):
                    self._emit("tool_call_input_end", {"tool_call_id": event.id})
                elif isinstance(event, Source):
                    self._emit("source", {"source_type": event.source_type, "id": event.id, "url": event.url,
                                          "title": event.title})
                elif isinstance(event, StreamWarning):
                    self._emit("warnings", {"warnings": [event.message]})
                elif isinstance(event, Retry):
                    self._emit("retry", {"attempt": event.attempt, "error": event.error})
                elif isinstance(event, Usage):
                    usage = event
                elif isinstance(event, Finish):
                    finish = event
        except LLMCallError as exc:
            if started:
                self._emit("message_end", {"content": "".join(text)})
            if text:  # what the user already saw stays in the history
                self._append({"role": "assistant", "content": "".join(text)}, partial=True)
                turn.response = "".join(text)
            self._emit("error", {"error": str(exc)})
            raise _Stop(StopReason.ERROR, str(exc)) from None
        assert finish is not None, "stream_completion ends with Finish"
        message = dict(finish.message)
        if finish.reason == "cancelled":
            message.pop("tool_calls", None)  # incomplete calls are never run
        content = message_text(message)
        if started:
            self._emit("message_end", {"content": content})
        if content or message.get("tool_calls"):
            self._append(message)
        if content:
            turn.response = content
        self._emit("step_finish", {"step_number": step, "has_tool_calls": bool(message.get("tool_calls")),
                                   "finish_reason": finish.reason, **usage.tokens()})
        self._emit("llm_usage", {**usage.tokens(), "cost": usage.cost, "model": finish.model,
                                 "provider": finish.provider, "request_id": finish.request_id,
                                 "step_number": step, "finish_reason": finish.reason})
        self._record_call(usage)
        return message, finish.reason

    def _tool_call(self, turn: _Turn, call: Mapping[str, Any]) -> None:
        """One tool call through tool_call → execution → tool_result; the result is stored."""
        fn = call.get("function") or {}
        call_id, name = str(call.get("id", "")), str(fn.get("name", ""))
        arguments = fn.get("arguments", "")
        arguments = arguments if isinstance(arguments, str) else json.dumps(arguments)
        kind = self.tools.kind(name)
        parsed, problem = _parse_args(arguments)
        turn.stats.record_tool(name)

        def ident() -> dict[str, Any]:
            return {"tool_call_id": call_id, "tool_name": name, "tool_kind": kind}

        if self._active is not None and name in self.tools and name not in self._active:
            self._append({"role": "tool", "tool_call_id": call_id, "content": f"Error: tool {name!r} is currently "
                          "disabled"}, is_error=True, tool_name=name)
            return
        out = self._emit("tool_call", {**ident(), "input": arguments, "parsed_args": parsed, "source": "llm",
                                       "subagent": None})
        if out.stopped:
            result = ToolResult(f"Error: {out.reason or 'blocked by extension'}", True,
                                {"blocked": True, "blocked_by": out.stop.by if out.stop else ""})
        else:
            self._emit("tool_execution_start", ident())
            started = time.monotonic()
            if problem:
                result = ToolResult(f"{name}: the arguments are not valid JSON ({problem}); send a JSON object",
                                    True, {})
            else:
                result = self.tools.run(name, parsed, tool_call_id=call_id, on_output=self._output_sink(ident),
                                        cancel=self._cancel)
            self._emit("tool_execution_end", {**ident(), "is_error": result.is_error,
                                              "duration_ms": int((time.monotonic() - started) * 1000)})
        out = self._emit("tool_result", {**ident(), "input": arguments, "content": result.content,
                                         "is_error": result.is_error,
                                         "metadata": json.dumps(dict(result.metadata), default=str),
                                         "subagent": None})
        if out.stopped:  # a handler failing closed (e.g. a redactor): the output must not reach the model
            content, is_error = f"Error: the tool's output was withheld ({out.reason})", True
        else:
            content = str(out.payload.get("content", result.content))
            is_error = bool(out.payload.get("is_error", result.is_error))
        self._append({"role": "tool", "tool_call_id": call_id, "content": content}, is_error=is_error,
                     tool_name=name)

    def _output_sink(self, ident: Callable[[], dict[str, Any]]) -> Callable[[str, bool], None]:
        def on_output(chunk: str, is_stderr: bool) -> None:
            self._emit("tool_output", {**ident(), "chunk": chunk, "is_stderr": is_stderr})

        return on_output

    # ------------------------------------------------------------------ subagents

    def _child_sink(self, sink: EventSink) -> EventSink:
        """A child's provider calls are real spend: each ``llm_usage`` is re-emitted here (so budget
        extensions see it, with the child's step numbers) and counted in this turn's ``agent_end``."""

        def forward(event: str, data: dict[str, Any]) -> None:
            if event == "llm_usage":
                self._emit("llm_usage", dict(data))
                usage = Usage(int(data["input_tokens"]), int(data["output_tokens"]), int(data["cache_read_tokens"]),
                              int(data["cache_write_tokens"]), data["cost"])
                self._record_call(usage)
            sink(event, data)

        return forward

    def run_child(self, task: str, sink: EventSink, cancel: threading.Event | None, tool_call_id: str,
                  system_prompt: str = "") -> TurnResult:
        """One subagent turn (see :mod:`host.agent.subagent`): child loop, own session, no extensions of its
        own but this loop's ``tool_call``/``tool_result`` handlers (:class:`PolicyBinding`)."""
        parent = self.tree
        tree = SessionTree.create(_child_session_path(parent.path, tool_call_id),
                                  cwd=parent.header.get("cwd") or None, parent_session=parent.path)
        try:
            model = self.model
            tree.append_model_change(model, "", "config")
            config = replace(self.config, system_prompt=system_prompt or self.config.subagent_system_prompt,
                             max_steps=self.config.subagent_max_steps, subagents=False, auto_compact=False,
                             emit_windows=False, max_followup_turns=0)
            child = AgentLoop(model=model, tree=tree, tools=ToolRegistry(self.tools.cwd),
                              emitter=Emitter(None, self._child_sink(sink),
                                              binding=PolicyBinding(self._emitter, {"id": tool_call_id, "task": task})),
                              config=config,
                              cancel_event=cancel or self._cancel)
            return child.run_turn(task, source="extension")
        finally:
            tree.close()
