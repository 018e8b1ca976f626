"""Unit-test an extension in-process, without a host (kit's public test harness, ported).

``FakeHost`` runs an extension's handlers directly — no process, no socket —
with the same rules the real host applies to one extension:

* the payload you pass is checked against the event's schema first;
* handlers run in priority, then registration order; for gate and chain
  events each sees the payload as the previous one left it and the first
  stop result ends the chain; notify events run every handler;
* results are checked against the event's result schema;
* ``ctx`` calls are answered from in-memory state, recorded for assertions,
  and refused (``HostCallError``) if the extension did not ask for the
  permission they need.

Example::

    from ext_sdk.testing import FakeHost

    host = FakeHost.load("extensions/permission_gate/permission_gate.py")
    out = host.emit("tool_call", FakeHost.tool_call("bash", {"command": "rm -rf /"}))
    assert out.stopped and "rm -rf" in out.reason
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .context import HostCallError
from .events import custom_event_name, spec_for
from .extension import Extension
from .handling import HandlerRunner
from .hostcalls import ALWAYS_GRANTED, HOST_CALLS
from .runtime import load_extension

__all__ = ["FakeHost", "FakeOutcome"]


@dataclass
class FakeOutcome:
    """What one :meth:`FakeHost.emit` produced."""

    #: The payload after chaining.
    payload: dict[str, Any]
    #: The result that stopped the chain (gate events), else ``None``.
    stop: dict[str, Any] | None = None
    #: Handler errors, as the wire reports them.
    errors: list[str] = field(default_factory=list)

    @property
    def stopped(self) -> bool:
        """Whether a handler blocked/cancelled/handled."""
        return self.stop is not None

    @property
    def reason(self) -> str:
        """The stop reason ('' if none)."""
        return str((self.stop or {}).get("reason") or "")


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
        self._ids = itertools.count(1)
        self._runner = HandlerRunner(extension, self._call)

    @classmethod
    def load(cls, path: str | Path) -> FakeHost:
        """A fake host for the extension file at ``path``."""
        return cls(load_extension(path))

    def printed_text(self) -> str:
        """Everything printed, one line per call."""
        return "\n".join(text for _, text in self.printed)

    def emit(self, event: str, payload: dict[str, Any]) -> FakeOutcome:
        """Deliver ``event`` to the extension's handlers with the host's combination rules."""
        spec = spec_for(event)
        if spec is None:
            raise ValueError(f"unknown event {event!r}")
        spec.payload.check(payload, "payload")
        current = json.loads(json.dumps(payload))  # a deep copy, as if it crossed the wire
        outcome = FakeOutcome(current)
        for index in self._order(event):
            item = self._runner.run_item(event, index, current)
            if not item["ok"]:
                outcome.errors.append(item["error"])
                continue
            result = item.get("result")
            if result is None:
                continue
            if spec.chain is not None:
                spec.chain.apply(current, result)
            if spec.stop is not None and spec.stop.matches(result):
                outcome.stop = result
                break
        return outcome

    def emit_custom(self, name: str, data: Any = None, source: str = "test") -> FakeOutcome:
        """Deliver custom event ``name``."""
        return self.emit(custom_event_name(name), {"name": name, "data": data, "source": source})

    def _order(self, event: str) -> list[int]:
        subs = self.extension.subscriptions
        return sorted((i for i, s in enumerate(subs) if s.event == event), key=lambda i: (subs[i].priority, i))

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
        out = self._runner.invoke("tool", name, args)
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
        return None
