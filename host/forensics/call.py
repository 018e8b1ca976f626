"""``kithost ext call``: send one event to one freshly started extension; its result, timing and host calls.

The extension starts in its own confined process exactly as an agent would start it (the operator's config
and grants), alone in a private host (private state and runtime dir), and receives one event with the given
payload. For a notify event the host waits for the delivery. Every host call the extension makes while
handling it (``ctx.get_state``, ``ctx.notify`` ...) is listed with whether it was answered.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ext_sdk.events import Mode, spec_for

from ..config import HostConfig
from ..errors import HostError
from .private import private_host
from .record import Collector, EventRecord, HostCall

__all__ = ["CallError", "CallReport", "call_extension", "read_payload"]


class CallError(HostError):
    """The call could not be made (bad event or payload, the extension did not start)."""


@dataclass(frozen=True, slots=True)
class CallReport:
    """What one call produced."""

    extension: str
    event: str
    record: EventRecord
    #: Wall time of the dispatch, milliseconds (for notify: until delivered).
    ms: float
    #: Spawn to handshake done, milliseconds.
    start_ms: float
    host_calls: tuple[HostCall, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {"extension": self.extension, "event": self.event, "ms": round(self.ms, 3),
                "start_ms": round(self.start_ms, 1), "outcome": self.record.outcome,
                "steps": list(self.record.steps),
                "host_calls": [{"method": c.method, "args": c.args, "ok": c.ok, "ms": round(c.ms, 3)}
                               for c in self.host_calls]}


def read_payload(text: str, source: str) -> dict[str, Any]:
    """Parse a payload given as JSON text; raises :class:`CallError` in words."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CallError(f"{source}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(value, dict):
        raise CallError(f"{source}: the payload must be a JSON object, not {type(value).__name__}")
    return value


def call_extension(path: Path, event: str, payload: dict[str, Any], config: HostConfig | None = None,
                   wait_s: float = 10.0) -> CallReport:
    """Start the extension at ``path``, send it ``event`` with ``payload``, stop it; raises :class:`CallError`."""
    spec = spec_for(event)
    if spec is None:
        raise CallError(f"unknown event {event!r} (`kithost schema` lists them)")
    try:
        spec.payload.check(payload, "payload")
    except Exception as exc:  # noqa: BLE001 - SchemaError and friends: said in words
        raise CallError(f"bad payload for {event!r}: {exc}") from None
    watch = Collector()
    with private_host(config, "call") as host:
        started = time.perf_counter()
        try:
            ext = host.load(path)
        except HostError as exc:
            raise CallError(str(exc)) from None
        start_ms = (time.perf_counter() - started) * 1000
        events = sorted({h.event for h in ext.declared.handlers})
        if event not in events:
            raise CallError(f"{ext.name} does not subscribe to {event!r} (it subscribes to "
                            f"{', '.join(events) or 'nothing'})")
        host.observe(watch)
        began = time.perf_counter()
        host.emit(event, payload)
        if spec.mode is Mode.NOTIFY:
            host.flush(wait_s)
        ms = (time.perf_counter() - began) * 1000
        name = ext.name
    with watch.lock:
        record = watch.records[0]
        calls = tuple(watch.calls)
    return CallReport(name, event, record, ms, start_ms, calls)
