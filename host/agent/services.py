"""``AgentServices``: the extension host's :class:`~host.exthost.services.HostServices`, answered by the agent.

What each ``ctx`` call does:

=====================  ==================================================================
``print``              to the application's print sink (default: stderr, prefixed with the
                       extension's name); every print is also kept in :attr:`printed`
``append_entry``       an ``extension`` entry in the current session file (durable)
``get_entries``        that extension's entries of a type in the current session, oldest first
``get_messages``       the context window the model receives next, as context messages
``send_message``       queued for the agent (:mod:`host.agent.steering`)
``set_model``          checked (:func:`host.agent.llm.models.check_model`), then switched with
                       ``model_change`` source ``extension``; an unusable model is refused
``info``               session id and path, working directory, current model
``prompt``             the :class:`~host.exthost.services.PromptUI` given (default: headless,
                       every prompt cancelled; ``chat`` passes a terminal one)
``set_status``         the status line (:class:`~host.exthost.services.StatusLine`), shown by
                       the ``on_status`` sink given
``agent_call``         kit's ctx API over the loop (below)
=====================  ==================================================================

Kit's ctx API (``agent_call``; contracts in :mod:`ext_sdk.hostcalls`): usage
and context stats, ``is_idle``/``abort``/``cancel_and_send``, ``complete``,
tools, models, the session tree, subagents; ``compact``, ``new_session`` and
``navigate_to`` need the agent idle — asked from the running turn's own thread
(a gate or chain handler) they are refused at once, from another thread
(a notify handler, a command) they wait up to ``idle_wait_s`` for the turn to
end (kit's ``WaitForIdle``). ``new_session`` needs the session's switcher
(:meth:`AgentServices.serve_sessions`); its prompt is queued as the new
session's first message (a follow-up turn). What an act of an extension fires
skips that extension's own handlers on the same thread
(:meth:`~host.agent.emitter.Emitter.acting_for`). Subagents spawned by an
extension are its own: ``subagent_status``/``kill_subagent`` see no others.

Thread-safety: calls arrive on the agent's thread (gate/chain handlers) or the
notify delivery thread. The loop and the session tree are thread-safe; the
services object only guards its own print list and the attachment below.
The extension host is built before the loop (it needs the services), so the
loop is attached afterwards; calls before that are refused as "not available".
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..exthost.services import HeadlessPrompts, NotAvailable, PromptUI, StatusLine, StatusSink, ask
from .compaction import estimate_tokens
from .context_messages import message_text, to_context_messages
from .errors import AgentBusyError, AgentError, LLMCallError, ModelError
from .llm.models import check_model, model_capabilities, usable_models
from .loop import AgentLoop
from .session_file import Entry
from .subagent import SubagentOutcome, run_subagent

__all__ = ["AgentServices", "NewSession", "PrintSink", "Switched", "format_print", "tree_node"]

class Switched(Protocol):
    """What a session switch reports (:class:`host.agent.session.SwitchResult`)."""

    @property
    def switched(self) -> bool: ...

    @property
    def reason(self) -> str: ...

    @property
    def path(self) -> Path | None: ...


#: ``new_session() -> Switched``: the session's own switch (``AgentSession.new_session``), for ``serve_sessions``.
NewSession = Callable[[], Switched]

#: ``on_print(extension, level, text)``: shows an extension's ``ctx.print``/``info``/``error``.
PrintSink = Callable[[str, str, str], None]


def format_print(extension: str, level: str, text: str) -> str:
    """An extension's print as terminal lines: ``[name] line``, ``[name info] line``, ``[name error] line``."""
    tag = {"info": " info", "error": " error"}.get(level, "")
    return "".join(f"[{extension}{tag}] {line}\n" for line in (text.splitlines() or [""]))


def _stderr_print(extension: str, level: str, text: str) -> None:
    sys.stderr.write(format_print(extension, level, text))
    sys.stderr.flush()


def tree_node(entry: Entry, children: list[str]) -> dict[str, Any]:
    """An entry as kit's ``TreeNode`` (the ``get_tree_node`` value)."""
    role, content = "", ""
    if entry.type == "message":
        message = entry.data.get("message") or {}
        role = str(message.get("role", ""))
        content = message_text(message)
        calls = [f"{(c.get('function') or {}).get('name', '')}({(c.get('function') or {}).get('arguments', '')})"
                 for c in message.get("tool_calls") or ()]
        if calls:
            content = (content + "\n" if content else "") + "[tool calls: " + ", ".join(calls) + "]"
    elif entry.type == "compaction":
        content = str(entry.data.get("summary", ""))
    elif entry.type == "model_change":
        content = str(entry.data.get("model", ""))
    elif entry.type == "extension":
        content = str(entry.data.get("data", ""))
    return {"id": entry.id, "parent_id": entry.parent_id, "type": entry.type, "role": role, "content": content,
            "timestamp": entry.timestamp, "children": children}


@dataclass
class _Spawned:
    extension: str
    cancel: threading.Event
    session_path: str
    thread: threading.Thread | None = None
    outcome: SubagentOutcome | None = None


class AgentServices:
    """Host services over an :class:`AgentLoop` and its session tree."""

    def __init__(self, on_print: PrintSink | None = None, cwd: str = "", *, prompts: PromptUI | None = None,
                 on_status: StatusSink | None = None, idle_wait_s: float = 10.0) -> None:
        """``prompts`` asks the user (default: headless, cancelled); ``on_status`` shows the status line;
        ``idle_wait_s`` bounds how long an act that needs the agent idle waits for it (see the module doc)."""
        self._on_print = on_print or _stderr_print
        self._cwd = cwd
        self._lock = threading.Lock()
        self._loop: AgentLoop | None = None
        self._new_session: NewSession | None = None
        self.prompts: PromptUI = prompts or HeadlessPrompts()
        #: The status line set by extensions.
        self.status = StatusLine(on_status)
        self.idle_wait_s = idle_wait_s
        self._spawned: dict[str, _Spawned] = {}
        self._spawn_ids = itertools.count(1)
        #: Every print as ``(extension, level, text)``, in arrival order.
        self.printed: list[tuple[str, str, str]] = []

    def attach(self, loop: AgentLoop) -> None:
        """Serve calls from ``loop`` from now on."""
        with self._lock:
            self._loop = loop

    def serve_sessions(self, new_session: NewSession) -> None:
        """Answer ``ctx.new_session`` with ``new_session`` (the session's own switch, events included)."""
        with self._lock:
            self._new_session = new_session

    def _agent(self, what: str) -> AgentLoop:
        with self._lock:
            loop = self._loop
        if loop is None:
            raise NotAvailable(f"{what} is not available yet: the agent is still starting")
        return loop

    # ------------------------------------------------------------------ HostServices

    def print(self, extension: str, level: str, text: str) -> None:
        with self._lock:
            self.printed.append((extension, level, text))
            self._on_print(extension, level, text)

    def append_entry(self, extension: str, entry_type: str, data: Any) -> str:
        return self._agent("append_entry").tree.append_entry(extension, entry_type, data)

    def get_entries(self, extension: str, entry_type: str) -> list[dict[str, Any]]:
        return self._agent("get_entries").tree.get_entries(extension, entry_type)

    def get_messages(self) -> list[dict[str, Any]]:
        return to_context_messages(self._agent("get_messages").current_window())

    def send_message(self, extension: str, text: str) -> None:
        self._agent("send_message").steer(text, extension)

    def set_model(self, extension: str, model: str) -> None:
        loop = self._agent("set_model")
        try:
            check_model(model, loop.config.llm_params)
        except ModelError as exc:
            raise NotAvailable(f"set_model refused: {exc}") from None
        loop.set_model(model, "extension")

    def info(self) -> dict[str, str]:
        loop = self._agent("get_info")
        tree = loop.tree
        return {"session_id": tree.session_id, "session_path": str(tree.path), "cwd": self._cwd,
                "model": loop.model}

    def prompt(self, extension: str, kind: str, args: dict[str, Any]) -> dict[str, Any]:
        return ask(self.prompts, extension, kind, args)

    def set_status(self, extension: str, key: str, text: str, priority: int) -> None:
        self.status.set(extension, key, text, priority)

    # ------------------------------------------------------------------ kit's ctx API

    def agent_call(self, extension: str, method: str, args: dict[str, Any]) -> Any:
        handler = getattr(self, f"_ctx_{method}", None)
        if handler is None:
            raise NotAvailable(f"{method} is not available in the agent")
        loop = self._agent(method)
        try:
            with loop.emitter.acting_for(extension):
                return handler(loop, extension, args)
        except (AgentError, LLMCallError) as exc:  # the agent's own clear sentences
            raise NotAvailable(f"{method}: {exc}") from None

    def _when_idle(self, loop: AgentLoop, method: str, act: Callable[[], Any]) -> Any:
        """Run ``act`` with the agent idle (see the module doc)."""
        if loop.on_turn_thread():
            raise NotAvailable(f"{method}: refused while a turn runs (this handler is part of it); call it "
                               "from a command or after agent_end")
        deadline = time.monotonic() + self.idle_wait_s
        while True:
            try:
                return act()
            except AgentBusyError:
                if time.monotonic() >= deadline:
                    raise NotAvailable(f"{method}: the agent stayed busy for {self.idle_wait_s:g} s") from None
                time.sleep(0.02)

    def _ctx_get_session_usage(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> dict[str, Any]:
        return loop.usage.snapshot()

    def _ctx_get_context_stats(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> dict[str, Any]:
        window = loop.current_window()
        estimated, limit = estimate_tokens(window), loop.context_limit()
        return {"estimated_tokens": estimated, "context_limit": limit,
                "usage_percent": round(100.0 * estimated / limit, 2) if limit > 0 else 0.0,
                "message_count": len(window)}

    def _ctx_is_idle(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> bool:
        return not loop.busy

    def _ctx_abort(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> None:
        loop.cancel()

    def _ctx_cancel_and_send(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> None:
        loop.cancel()
        loop.steer(args["text"], ext)

    def _ctx_compact(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> dict[str, Any]:
        result = self._when_idle(loop, "compact", loop.compact)
        return {"compacted": result.compacted, "reason": result.reason, "summary": result.summary}

    def _ctx_new_session(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            switch = self._new_session
        if switch is None:
            raise NotAvailable("new_session is not available: this application cannot switch sessions")
        result: Switched = self._when_idle(loop, "new_session", switch)
        if result.switched and args.get("prompt"):
            loop.steer(str(args["prompt"]), ext)
        return {"switched": result.switched, "reason": result.reason, "session_path": str(result.path or "")}

    def _ctx_navigate_to(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            loop.tree.get(args["id"])
        except AgentError as exc:
            return {"success": False, "error": str(exc)}
        result = self._when_idle(loop, "navigate_to", lambda: loop.fork(args["id"]))
        return {"success": result.forked, "error": result.reason}

    def _ctx_complete(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> dict[str, Any]:
        model = str(args.get("model") or "")
        if model:
            try:
                check_model(model, loop.config.llm_params)
            except ModelError as exc:
                raise NotAvailable(f"complete refused: {exc}") from None
        return loop.complete(args["prompt"], system=str(args.get("system") or ""),
                             messages=list(args.get("messages") or ()), model=model,
                             max_tokens=args.get("max_tokens")).to_json()

    def _ctx_get_tools(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        active = set(loop.active_tools)
        return [{"name": t.name, "description": t.description,
                 "source": "extension" if getattr(t, "extension", None) else "builtin", "enabled": t.name in active}
                for t in loop.tools.tools()]

    def _ctx_set_active_tools(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> None:
        loop.set_active_tools(list(args["names"]))

    def _ctx_get_models(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        return usable_models(loop.model, loop.config.llm_params)

    def _ctx_get_model_capabilities(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> dict[str, Any]:
        return model_capabilities(str(args.get("model") or "") or loop.model)

    def _ctx_get_tree_node(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> dict[str, Any] | None:
        tree = loop.tree
        try:
            entry = tree.get(args["id"])
        except AgentError:
            return None
        return tree_node(entry, tree.children(entry.id))

    def _ctx_get_current_branch(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        tree = loop.tree
        return [tree_node(e, tree.children(e.id)) for e in tree.branch()]

    def _ctx_get_children(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> list[str]:
        tree = loop.tree
        if args["id"]:
            tree.get(args["id"])  # an unknown id is a clear error
        return tree.children(args["id"] or None)

    def _ctx_summarize_branch(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> str:
        tree = loop.tree
        branch = tree.branch(args["to_id"] or None)
        ids = [e.id for e in branch]
        start = 0
        if args["from_id"]:
            if args["from_id"] not in ids:
                raise NotAvailable(f"summarize_branch: {args['from_id']!r} is not on the branch ending at "
                                   f"{args['to_id'] or 'the leaf'!r}")
            start = ids.index(args["from_id"])
        messages = [dict(e.data["message"]) for e in branch[start:] if e.type == "message"]
        if not messages:
            return ""
        return loop.summarize(messages)

    def _ctx_spawn_subagent(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> dict[str, Any]:
        subagent_id = f"ext_{ext}_{next(self._spawn_ids)}"
        cancel = threading.Event()
        spawned = _Spawned(ext, cancel, "")
        with self._lock:
            self._spawned[subagent_id] = spawned
        task, system = str(args["task"]), str(args.get("system_prompt") or "")

        def run() -> None:
            spawned.outcome = run_subagent(loop.emitter, loop.run_child, task, subagent_id, cancel, system)

        if args.get("blocking", True) is False:
            spawned.thread = threading.Thread(target=run, name=f"kithost-subagent-{subagent_id}", daemon=True)
            spawned.thread.start()
        else:
            run()
        return self._subagent_view(subagent_id, spawned)

    def _own_subagent(self, ext: str, subagent_id: str) -> _Spawned:
        with self._lock:
            spawned = self._spawned.get(subagent_id)
        if spawned is None or spawned.extension != ext:
            raise NotAvailable(f"no subagent {subagent_id!r} spawned by {ext!r}")
        return spawned

    @staticmethod
    def _subagent_view(subagent_id: str, spawned: _Spawned) -> dict[str, Any]:
        out = spawned.outcome
        if out is None:
            return {"id": subagent_id, "status": "running", "response": "", "error_msg": ""}
        return {"id": subagent_id, "status": out.status, "response": out.response, "error_msg": out.error_msg}

    def _ctx_subagent_status(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> dict[str, Any]:
        return self._subagent_view(args["id"], self._own_subagent(ext, args["id"]))

    def _ctx_kill_subagent(self, loop: AgentLoop, ext: str, args: dict[str, Any]) -> bool:
        spawned = self._own_subagent(ext, args["id"])
        if spawned.outcome is not None:
            return False
        spawned.cancel.set()
        return True

    def join_subagents(self, timeout_s: float) -> bool:
        """Cancel background subagents and wait for them (at close); ``False`` if some still run."""
        with self._lock:
            running = [s for s in self._spawned.values() if s.thread is not None and s.outcome is None]
        for spawned in running:
            spawned.cancel.set()
        deadline = time.monotonic() + timeout_s
        for spawned in running:
            assert spawned.thread is not None
            spawned.thread.join(max(0.0, deadline - time.monotonic()))
        return all(not s.thread.is_alive() for s in running if s.thread is not None)
