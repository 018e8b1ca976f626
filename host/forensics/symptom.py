"""The ``--bad`` condition of ``kithost ext bisect``: what symptom to look for in a list of event records.

Grammar (one condition)::

    KIND[:EVENT][~TEXT]

* ``KIND`` — ``blocked`` (a gate event was stopped by a handler's decision), ``failed`` (a handler failed:
  timeout, error, bad result ...; also a fail-closed stop), ``changed`` (a chain event left the handlers
  with a payload other than the one it came in with), ``stopped`` (blocked or failed closed);
* ``EVENT`` — only events of this name (``tool_call``, ``context_prepare``, ``custom:deploy`` ...);
* ``TEXT`` — only when the stop reason or failure detail contains TEXT (case-insensitive).

Examples: ``blocked:tool_call~rm -rf``, ``failed``, ``changed:context_prepare``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from ext_sdk.events import spec_for

from ..errors import HostError
from .record import EventRecord

__all__ = ["Symptom", "SymptomError", "SymptomKind", "parse_symptom"]


class SymptomKind(StrEnum):
    """What kind of thing went wrong."""

    BLOCKED = "blocked"
    FAILED = "failed"
    CHANGED = "changed"
    STOPPED = "stopped"


class SymptomError(HostError):
    """A ``--bad`` condition that does not parse."""


@dataclass(frozen=True, slots=True)
class Symptom:
    """A parsed ``--bad`` condition."""

    kind: SymptomKind
    event: str | None = None
    text: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}{':' + self.event if self.event else ''}{'~' + self.text if self.text else ''}"

    def matches(self, record: EventRecord) -> bool:
        """Whether ``record`` shows this symptom."""
        if self.event is not None and record.event != self.event:
            return False
        outcome = record.outcome
        failures = outcome.get("failures") or []
        if self.kind is SymptomKind.BLOCKED:
            hit = bool(outcome.get("stopped")) and not outcome.get("failed_closed")
            words = [str(outcome.get("reason", ""))]
        elif self.kind is SymptomKind.STOPPED:
            hit = bool(outcome.get("stopped"))
            words = [str(outcome.get("reason", ""))]
        elif self.kind is SymptomKind.FAILED:
            hit = bool(failures)
            words = [f"{f.get('handler')}: {f.get('kind')}: {f.get('detail')}" for f in failures]
        else:
            hit = "payload" in outcome and outcome["payload"] != record.payload
            words = [str(step.get("handler")) for step in record.steps if step.get("result")]  # who changed it
        if not hit:
            return False
        return self.text is None or any(self.text.lower() in w.lower() for w in words)

    def where(self, records: Iterable[EventRecord]) -> list[int]:
        """The ``seq`` of every record that shows it."""
        return [r.seq for r in records if self.matches(r)]


def parse_symptom(text: str) -> Symptom:
    """Parse ``KIND[:EVENT][~TEXT]``; raises :class:`SymptomError` saying what is accepted."""
    spec, _, needle = text.strip().partition("~")
    kind_text, _, event = spec.strip().partition(":")
    kinds = ", ".join(k.value for k in SymptomKind)
    try:
        kind = SymptomKind(kind_text.strip().lower())
    except ValueError:
        raise SymptomError(f"--bad {text!r}: the condition starts with one of {kinds} (e.g. "
                           f"'blocked:tool_call~rm -rf')") from None
    event = event.strip()
    if event and spec_for(event) is None:
        raise SymptomError(f"--bad {text!r}: unknown event {event!r}")
    if kind is SymptomKind.CHANGED and event:
        found = spec_for(event)
        if found is not None and found.chain is None:
            raise SymptomError(f"--bad {text!r}: {event!r} is not a chain event, so no handler changes it")
    return Symptom(kind, event or None, needle.strip() or None)
