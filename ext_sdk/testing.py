"""Unit-test an extension in-process, without a host (kit's public test harness, ported).

``FakeHost`` runs an extension's handlers directly — no process, no socket —
through the same combination loop the real host uses
(:func:`ext_sdk.combine.combine`: order, stop rule, chaining, result check,
failure policy). What differs from a real host is only what a process adds:

* the payload you pass is checked against the event's schema, then
  deep-copied as if it crossed the wire;
* each handler is reached through an in-process transport (no deadline:
  a handler that hangs hangs your test);
* ``ctx`` calls are answered from in-memory state, recorded for assertions,
  and refused (``HostCallError``) if the extension did not ask for the
  permission they need. Options, the status line and prompts work in memory
  (prompts answer :attr:`FakeHost.prompt_answers` in order, else cancelled,
  as headless); the agent calls of kit's ctx API (``complete``,
  ``spawn_subagent``, ``get_tools``...) answer :attr:`FakeHost.answers`
  ``[method]`` (a value, or a function of the arguments) and are refused when
  none is set. Every call is in :attr:`FakeHost.calls`.

:class:`FakeTransport` is the public stand-in for one handler (httpx's
``MockTransport``): wrap a function ``fn(payload) -> result | None``, or make
it fail with a :class:`~ext_sdk.combine.HandlerFailure`, to drive
:func:`~ext_sdk.combine.combine` in tests of the combination rules themselves.

Example::

    from ext_sdk.testing import FakeHost

    host = FakeHost.load("extensions/permission_gate/permission_gate.py")
    out = host.emit("tool_call", FakeHost.tool_call("bash", {"command": "rm -rf /"}))
    assert out.stopped and "rm -rf" in out.reason
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .combine import FailureKind, Handler, HandlerDecl, HandlerFailure, Outcome, combine, in_order
from .context import HostCallError
from .events import Policy, custom_event_name, spec_for
from .extension import Extension
from .handling import HandlerRunner
from .hostcalls import ALWAYS_GRANTED, HOST_CALLS
from .runtime import load_extension

__all__ = ["FakeHost", "FakeTransport"]


class FakeTransport:
    """A handler transport backed by a plain function (see the module doc).

    ``fn(payload)`` returns the result map (or ``None``); raising
    :class:`HandlerFailure` simulates a timeout, crash or bad reply. Every
    call's payload (a copy) and timeout are kept in :attr:`calls`.
    """

    def __init__(self, fn: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        self._fn = fn
        #: ``(payload copy, timeout_s)`` of every call, in order.
        self.calls: list[tuple[dict[str, Any], float | None]] = []

    def __call__(self, payload: dict[str, Any], timeout_s: float | None, /) -> dict[str, Any] | None:
        self.calls.append((dict(payload), timeout_s))
        return self._fn(payload)


class FakeHost:
    """An in-memory host for one extension."""

    def __init__(self, extension: Extension) -> None:
        self.extension = extension
        self.granted = ALWAYS_GRANTED | set(extension.permissions)
        #: ``(level, text)`` of every ctx.print/info/error.
        self.printed: list[tuple[str, str]] = []
        #: The extension's state namespace.
        self.state: dict[str, Any] = {}
        #: Session entries appended by the extension.
        self.entries: list[dict[str, Any]] = []
        #: ``(name, data)`` of every ctx.emit.
        self.emitted: list[tuple[str, Any]] = []
        #: Messages queued with ctx.send_message.
        self.sent: list[str] = []
        #: What ctx.get_messages returns.
        self.messages: list[dict[str, Any]] = []
        #: Model name reported by ctx.get_info; changed by ctx.set_model.
        self.model = "scripted/test"
        #: ``method -> value or fn(args)`` for the agent calls of kit's ctx API.
        self.answers: dict[str, Any] = {}
        #: Answers to ctx.prompt_* in order (each the call's value); empty: cancelled.
        self.prompt_answers: list[dict[str, Any]] = []
        #: ``key -> text`` set with ctx.set_status.
        self.status: dict[str, str] = {}
        #: Options: ``name -> value`` (registered defaults and set values).
        self.options: dict[str, str] = {}
        #: ``(method, args)`` of every ctx call, in order.
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._ids = itertools.count(1)
        self._runner = HandlerRunner(extension, self._call)
        self._handlers: dict[str, tuple[Handler, ...]] = {}
        for index, sub in enumerate(extension.subscriptions):
            spec = spec_for(sub.event)
            if spec is None:
                raise ValueError(f"unknown event {sub.event!r}")
            policy = Policy(sub.policy) if sub.policy is not None else spec.default_policy
            decl = HandlerDecl(index, sub.event, sub.priority, None, policy)
            handler = Handler(decl, 0, extension.name, self._transport(sub.event, index))
            self._handlers[sub.event] = in_order((*self._handlers.get(sub.event, ()), handler))

    @classmethod
    def load(cls, path: str | Path) -> FakeHost:
        """A fake host for the extension file at ``path``."""
        return cls(load_extension(path))

    def printed_text(self) -> str:
        """Everything printed, one line per call."""
        return "\n".join(text for _, text in self.printed)

    def emit(self, event: str, payload: dict[str, Any]) -> Outcome:
        """Deliver ``event`` to the extension's handlers with the host's combination rules."""
        spec = spec_for(event)
        if spec is None:
            raise ValueError(f"unknown event {event!r}")
        spec.payload.check(payload, "payload")
        current = json.loads(json.dumps(payload))  # a deep copy, as if it crossed the wire
        return combine(event, spec, self._handlers.get(event, ()), current, budget_s=0.0)

    def emit_custom(self, name: str, data: Any = None, source: str = "test") -> Outcome:
        """Deliver custom event ``name``."""
        return self.emit(custom_event_name(name), {"name": name, "data": data, "source": source})

    def _transport(self, event: str, index: int) -> FakeTransport:
        def run(payload: dict[str, Any]) -> dict[str, Any] | None:
            item = self._runner.run_item(event, index, payload)
            if not item["ok"]:
                raise HandlerFailure(FailureKind.ERROR, str(item["error"]))
            result: dict[str, Any] | None = item.get("result")
            return result

        return FakeTransport(run)

    @staticmethod
    def tool_call(tool: str, args: dict[str, Any], call_id: str = "call_1") -> dict[str, Any]:
        """A ``tool_call`` payload for ``tool`` with ``args``."""
        return {"tool_call_id": call_id, "tool_name": tool, "tool_kind": "execute", "input": json.dumps(args),
                "parsed_args": args, "source": "llm"}

    @staticmethod
    def tool_result(tool: str, content: str, args: dict[str, Any] | None = None, is_error: bool = False,
                    call_id: str = "call_1") -> dict[str, Any]:
        """A ``tool_result`` payload."""
        return {"tool_call_id": call_id, "tool_name": tool, "tool_kind": "execute",
                "input": json.dumps(args or {}), "content": content, "is_error": is_error, "metadata": "{}"}

    def invoke_tool(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run one of the extension's tools; returns ``{content, is_error}``."""
        return self._invoke("tool", name, args)

    def run_command(self, name: str, args: str = "") -> dict[str, Any]:
        """Run one of the extension's slash commands; returns ``{content, is_error}``."""
        return self._invoke("command", name, args)

    def _invoke(self, target: str, name: str, args: Any) -> dict[str, Any]:
        out = self._runner.invoke(target, name, args)
        if not out["ok"]:
            raise LookupError(out["error"])
        return out["result"]  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- host calls

    def _call(self, method: str, args: dict[str, Any]) -> Any:
        spec = HOST_CALLS.get(method)
        if spec is None:
            raise HostCallError(f"unknown host call {method!r}")
        if spec.permission not in self.granted:
            raise HostCallError(f"permission denied: {method} needs '{spec.permission}'")
        spec.args.check(args, "args")
        json.dumps(args)  # must be plain data
        self.calls.append((method, json.loads(json.dumps(args))))
        if method == "print":
            self.printed.append((args["level"], args["text"]))
        elif method == "get_state":
            return self.state.get(args["key"])
        elif method == "set_state":
            self.state[args["key"]] = json.loads(json.dumps(args["value"]))
        elif method == "delete_state":
            self.state.pop(args["key"], None)
        elif method == "list_state":
            return sorted(self.state)
        elif method == "append_entry":
            entry_id = f"e{next(self._ids)}"
            stamp = datetime.now(UTC).isoformat()
            self.entries.append({"id": entry_id, "type": args["type"], "data": args["data"], "timestamp": stamp})
            return entry_id
        elif method == "get_entries":
            return [e for e in self.entries if e["type"] == args["type"]]
        elif method == "emit":
            self.emitted.append((args["name"], args["data"]))
            return 0
        elif method == "get_messages":
            return list(self.messages)
        elif method == "send_message":
            self.sent.append(args["text"])
        elif method == "set_model":
            self.model = args["model"]
        elif method == "get_info":
            return {"session_id": "test", "session_path": "", "cwd": str(Path.cwd()), "model": self.model}
        elif method == "register_option":
            return self.options.setdefault(args["name"], args["default"])
        elif method == "get_option":
            return self.options.get(args["name"])
        elif method == "set_option":
            self.options[args["name"]] = args["value"]
        elif method == "set_status":
            if args["text"]:
                self.status[args["key"]] = args["text"]
            else:
                self.status.pop(args["key"], None)
        elif method.startswith("prompt_"):
            if self.prompt_answers:
                return self.prompt_answers.pop(0)
            default = args.get("default")
            if method == "prompt_select":
                return {"value": "", "index": -1, "cancelled": True}
            return {"value": bool(default) if method == "prompt_confirm" else (default or ""), "cancelled": True}
        elif method in self.answers:
            answer = self.answers[method]
            return answer(args) if callable(answer) else answer
        elif spec.result.describe() != "nil":
            raise HostCallError(f"{method}: FakeHost has no answer; set host.answers[{method!r}]")
        return None
