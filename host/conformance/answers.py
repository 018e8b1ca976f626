"""Answering host calls as the host would, in memory, and recording each one for the ``calls.*`` checks.

Contract:

* Every ``call`` is answered by the host's own router
  (:class:`host.exthost.hostcalls.HostCallRouter`: ``event_id`` check,
  permission check, argument schema), over an in-memory state store and
  :class:`KitServices` — so a call the host would refuse gets the host's
  error answer, and one it would accept gets a plausible value.
* :class:`KitServices` keeps prints, entries, queued messages and model
  switches in memory (nothing reaches a terminal or a session); the context
  window it reports is empty.
* Each call is recorded as a :class:`CallRecord`: what was asked, which
  request was in flight, and — for a call the host would refuse — which
  check it breaks (``calls.event-id`` or ``calls.valid``) and why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ext_sdk.hostcalls import HOST_CALLS
from ext_sdk.schema import SchemaError

from ..exthost.hostcalls import HostCallRefused, HostCallRouter
from ..exthost.services import LocalServices
from ..exthost.state_store import StateStore

__all__ = ["CallRecord", "HostAnswers", "KitServices"]


class KitServices(LocalServices):
    """The application side of ``ctx``, in memory (see the module doc): the host's default services
    (entries kept in memory, no agent), with prints, messages and model switches recorded, not shown."""

    def __init__(self) -> None:
        super().__init__()
        #: ``(extension, text)`` of every queued user message.
        self.messages: list[tuple[str, str]] = []
        #: ``(extension, model)`` of every model switch.
        self.models: list[tuple[str, str]] = []

    def print(self, extension: str, level: str, text: str) -> None:
        with self._lock:
            self.printed.append((extension, level, text))

    def send_message(self, extension: str, text: str) -> None:
        with self._lock:
            self.messages.append((extension, text))

    def set_model(self, extension: str, model: str) -> None:
        with self._lock:
            self.models.append((extension, model))

    def info(self) -> dict[str, str]:
        return {"session_id": "conformance", "session_path": "", "cwd": os.getcwd(), "model": "scripted/conformance"}


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One host call the extension made."""

    method: str
    call_id: int
    #: The ``event_id`` it carried.
    event_id: int | None
    #: The events request in flight when it arrived (``None``: none).
    in_flight: int | None
    #: The check it breaks (``calls.event-id`` / ``calls.valid``), or ``None``.
    breaks: str | None = None
    #: Why, for the author.
    problem: str = ""


class _Caller:
    """What the router asks of the calling extension."""

    def __init__(self, name: str, granted: frozenset[str], in_flight: int | None) -> None:
        self._name = name
        self._granted = granted
        self._in_flight = in_flight

    @property
    def name(self) -> str:
        return self._name

    @property
    def granted(self) -> frozenset[str]:
        return self._granted

    def channel_in_flight(self) -> int | None:
        return self._in_flight


class HostAnswers:
    """Answers and records the host calls of one extension (across all its launches)."""

    def __init__(self) -> None:
        self.services = KitServices()
        self._router = HostCallRouter(StateStore(None), self.services, lambda source, name, data: 0)
        #: Every call, in arrival order.
        self.records: list[CallRecord] = []

    def attribute(self, records: list[CallRecord]) -> None:
        """Forget ``records``: a bad-frame check explains them (calls made while handling a bad frame)."""
        gone = {id(r) for r in records}
        self.records = [r for r in self.records if id(r) not in gone]

    def record_bad_frame(self, detail: str, in_flight: int | None) -> None:
        """A frame on the calls channel that was rejected (it is answered with an error by the caller)."""
        self.records.append(CallRecord("?", 0, None, in_flight, "calls.valid",
                                       f"a frame on the calls channel was rejected ({detail})"))

    def answer(self, msg: dict[str, Any], extension: str, granted: frozenset[str],
               in_flight: int | None) -> dict[str, Any]:
        """The ``answer`` fields for ``call`` envelope ``msg`` (recorded)."""
        method = str(msg.get("method"))
        call_id = int(msg.get("id") or 0)
        event_id = msg.get("event_id")
        args: dict[str, Any] = dict(msg.get("args") or {})
        self.records.append(self._judge(method, call_id, event_id, args, granted, in_flight))
        try:
            value = self._router.handle(_Caller(extension, granted, in_flight), method, args, event_id)
        except HostCallRefused as exc:
            return {"id": call_id, "ok": False, "error": str(exc)}
        return {"id": call_id, "ok": True, "value": value}

    @staticmethod
    def _judge(method: str, call_id: int, event_id: Any, args: dict[str, Any], granted: frozenset[str],
               in_flight: int | None) -> CallRecord:
        def broken(check: str, problem: str) -> CallRecord:
            return CallRecord(method, call_id, event_id, in_flight, check, problem)

        if in_flight is None:
            return broken("calls.event-id", f"call {method!r} (id {call_id}) arrived while no events request was "
                                            "being handled: make host calls only from inside a handler")
        if event_id != in_flight:
            carried = "no event_id" if event_id is None else f"event_id {event_id}"
            return broken("calls.event-id", f"call {method!r} (id {call_id}) carried {carried} while request "
                                            f"{in_flight} was being handled: set event_id to the id of the "
                                            "events request being handled")
        spec = HOST_CALLS.get(method)
        if spec is None:
            return broken("calls.valid", f"call {method!r} names no host method (known: "
                                         f"{', '.join(sorted(HOST_CALLS))})")
        if spec.permission not in granted:
            return broken("calls.valid", f"call {method!r} needs permission {spec.permission!r}, which was not "
                                         "granted: declare it in the manifest's permissions and ask for it in "
                                         "hello")
        try:
            spec.args.check(args, "args")
        except SchemaError as exc:
            return broken("calls.valid", f"call {method!r} has bad arguments: {exc}")
        return CallRecord(method, call_id, event_id, in_flight)
