"""Running an extension's handlers for one request; shared by the process runtime and ``testing``.

Contract of :meth:`HandlerRunner.run_item` (one event item of an ``event`` or
``batch`` request):

* ``handler`` set → run that subscription only; ``handler`` null → run every
  subscription of the extension for that event, in priority then
  registration order (notify items), and report the first failure.
* The return value is the wire result item ``{ok: true, result}`` or
  ``{ok: false, error}``; exceptions never escape. A handler's traceback is
  written to stderr (the host keeps it in the extension's log).
* A result is normalised with :func:`ext_sdk.results.to_plain` and checked
  against the event's result schema here, so a wrong result is reported with
  the handler's name.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from .combine import check_result, order_key
from .context import Caller, Context, EventData
from .events import spec_for
from .extension import Extension, Subscription
from .schema import SchemaError

TYPE_CHECKING = False  # not typing's: ``import typing`` is ~3 ms of an extension's start-up
if TYPE_CHECKING:
    from typing import Any

__all__ = ["HandlerRunner"]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _to_plain(event: str, value: object) -> dict[str, Any] | None:
    """:func:`ext_sdk.results.to_plain`, imported when a handler first returns something (not at start-up)."""
    global _to_plain
    from .results import to_plain

    _to_plain = to_plain  # later calls go straight to it
    return to_plain(event, value)


def _print_traceback() -> None:
    """The current exception's traceback on stderr (``traceback`` imported only when a handler fails)."""
    import traceback

    traceback.print_exc(file=sys.stderr)


class HandlerRunner:
    """Runs one extension's handlers, tools and commands."""

    def __init__(self, extension: Extension, caller: Caller) -> None:
        self.extension = extension
        self._caller = caller
        self._by_event: dict[str, list[Subscription]] = {}
        subs = extension.subscriptions
        for index in sorted(range(len(subs)), key=lambda i: order_key(subs[i].priority, 0, i)):
            self._by_event.setdefault(subs[index].event, []).append(subs[index])
        #: Name of the event currently being handled (read by the heartbeat thread).
        self.current: str | None = None

    def run_item(self, event: str, handler: int | None, data: dict[str, Any]) -> dict[str, Any]:
        """Run one event item; never raises."""
        subs = self.extension.subscriptions
        if handler is not None:
            if not 0 <= handler < len(subs) or subs[handler].event != event:
                return {"ok": False, "error": f"no handler #{handler} for {event!r}"}
            return self._run(subs[handler], data)
        first_error: dict[str, Any] | None = None
        for sub in self._by_event.get(event, ()):
            out = self._run(sub, data)
            if not out["ok"] and first_error is None:
                first_error = out
        return first_error or {"ok": True, "result": None}

    def _run(self, sub: Subscription, data: dict[str, Any]) -> dict[str, Any]:
        spec = spec_for(sub.event)
        self.current = sub.event
        try:
            event = EventData(data)
            if spec is not None:  # an absent optional field reads as null (PROTOCOL §4.2): event.cost is None
                for name in _optional_fields(spec.name, spec.payload.fields):
                    event.setdefault(name, None)
            value = sub.fn(event, Context(self._caller, sub.event))
            result = None if value is None else _to_plain(sub.event, value)
            if result is not None:
                if spec is None:
                    return {"ok": False, "error": f"{sub.event!r} takes no result (returned {result!r})"}
                check_result(spec, result)
            return {"ok": True, "result": result}
        except SchemaError as exc:
            return {"ok": False, "error": f"{_name(sub.fn)} returned a bad result for {sub.event!r}: {exc}"}
        except Exception as exc:  # noqa: BLE001 - a handler's failure is reported, not raised
            _print_traceback()
            return {"ok": False, "error": f"{_name(sub.fn)} raised {_describe(exc)}"}
        finally:
            self.current = None

    def invoke(self, target: str, name: str, args: Any) -> dict[str, Any]:
        """Run a tool (``args``: map) or a command (``args``: string); never raises."""
        self.current = f"{target}:{name}"
        try:
            if target == "tool":
                tool = next((t for t in self.extension.tools if t.name == name), None)
                if tool is None:
                    return {"ok": False, "error": f"no tool {name!r}"}
                out = tool.fn(dict(args or {}), Context(self._caller, f"tool:{name}"))
                if isinstance(out, dict):
                    return {"ok": True, "result": {"content": str(out.get("content", "")),
                                                   "is_error": bool(out.get("is_error", False))}}
                return {"ok": True, "result": {"content": "" if out is None else str(out), "is_error": False}}
            command = next((c for c in self.extension.commands if c.name == name), None)
            if command is None:
                return {"ok": False, "error": f"no command {name!r}"}
            out = command.fn(str(args or ""), Context(self._caller, f"command:{name}"))
            return {"ok": True, "result": {"content": "" if out is None else str(out), "is_error": False}}
        except Exception as exc:  # noqa: BLE001
            _print_traceback()
            return {"ok": True, "result": {"content": f"Error: {_describe(exc)}", "is_error": True}}
        finally:
            self.current = None


_OPTIONAL: dict[str, tuple[str, ...]] = {}


def _optional_fields(event: str, fields: dict[str, Any]) -> tuple[str, ...]:
    """The optional payload fields of ``event`` (cached: this runs for every handler call)."""
    found = _OPTIONAL.get(event)
    if found is None:
        found = _OPTIONAL[event] = tuple(name for name, f in fields.items() if not f.required)
    return found


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
