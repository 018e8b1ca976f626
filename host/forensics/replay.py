"""Replay a recording against any set of extensions and say where their results differ.

Each recorded event is dispatched again, in order, to a fresh :class:`~host.exthost.host.ExtensionHost`
holding only the chosen extensions (a private state file and runtime dir: nothing of the operator's running
hosts is touched). Notify events are replayed too, so stateful extensions see the same history; the host's
per-extension FIFO delivers a notify backlog before the next gate or chain call to the same extension.

Differences are reported per event: the outcome (stopped or not, by whom, the reason, the chained payload)
and each handler's answer (result, or failure kind), matched by handler name. Timing is reported, never
compared (it differs on every run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import HostConfig
from ..errors import HostError
from .private import private_host
from .record import Collector, EventRecord, Recording

__all__ = ["Difference", "ReplayError", "ReplayReport", "diff_events", "replay"]


class ReplayError(HostError):
    """A replay that could not run (an extension did not load)."""


@dataclass(frozen=True, slots=True)
class Difference:
    """One way a replayed event differs from its recording."""

    seq: int
    event: str
    what: str

    def __str__(self) -> str:
        return f"#{self.seq} {self.event}: {self.what}"


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What one replay did."""

    extensions: tuple[str, ...]
    events: tuple[EventRecord, ...]
    differences: tuple[Difference, ...] = field(default=())


def _answers(record: EventRecord) -> dict[str, Any]:
    """Each handler's answer in a record, by handler name (``!kind`` for a failure)."""
    out: dict[str, Any] = {}
    for step in record.steps:
        failure = step.get("failure")
        out[str(step.get("handler"))] = f"!{failure.get('kind')}" if failure else step.get("result")
    return out


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def diff_events(recorded: Sequence[EventRecord], replayed: Sequence[EventRecord],
                compare_handlers: Sequence[str] | None = None) -> list[Difference]:
    """Where ``replayed`` differs from ``recorded`` (matched by position; events must be the same).

    ``compare_handlers``: compare only these handlers' answers (those present in both runs by default).
    """
    diffs: list[Difference] = []
    for old, new in zip(recorded, replayed, strict=False):
        a, b = old.outcome, new.outcome
        if bool(a.get("stopped")) != bool(b.get("stopped")):
            was = f"stopped by {a.get('by')}: {a.get('reason')}" if a.get("stopped") else "went through"
            now = f"stopped by {b.get('by')}: {b.get('reason')}" if b.get("stopped") else "goes through"
            diffs.append(Difference(old.seq, old.event, f"recorded {was}; replay {now}"))
        elif a.get("stopped") and (a.get("by"), a.get("reason")) != (b.get("by"), b.get("reason")):
            diffs.append(Difference(old.seq, old.event, f"stopped by {a.get('by')} ({a.get('reason')!r}) in the "
                                                        f"recording, by {b.get('by')} ({b.get('reason')!r}) now"))
        if "payload" in a and a.get("payload") != b.get("payload"):
            diffs.append(Difference(old.seq, old.event, f"chained payload differs: recorded "
                                                        f"{_short(a.get('payload'))}, now {_short(b.get('payload'))}"))
        old_answers, new_answers = _answers(old), _answers(new)
        names = compare_handlers if compare_handlers is not None else [n for n in old_answers if n in new_answers]
        for name in names:
            if name in old_answers and name in new_answers and old_answers[name] != new_answers[name]:
                diffs.append(Difference(old.seq, old.event, f"{name} answered {_short(old_answers[name])} in the "
                                                            f"recording, {_short(new_answers[name])} now"))
    if len(recorded) != len(replayed):
        diffs.append(Difference(len(replayed), "-", f"{len(recorded)} events recorded, {len(replayed)} replayed"))
    return diffs


def replay(recording: Recording, extension_dirs: Sequence[Path], config: HostConfig | None = None,
           progress: Callable[[int, int], None] | None = None) -> ReplayReport:
    """Replay ``recording`` against the extensions in ``extension_dirs``; raises :class:`ReplayError`.

    ``config``: the operator's config (grants, sandbox), in a private host (:func:`.private.private_host`).
    ``progress(done, total)`` is called as events are replayed.
    """
    collector = Collector()
    with private_host(config, "replay") as host:
        report = host.load_many(extension_dirs)
        if report.failed:
            why = "; ".join(f"{name}: {getattr(exc, 'reason', exc)}" for name, exc in report.failed)
            raise ReplayError(f"could not start for the replay: {why}")
        host.observe(collector)
        total = len(recording.events)
        for done, record in enumerate(recording.events, start=1):
            host.emit(record.event, record.payload)
            if progress is not None:
                progress(done, total)
        host.flush(10.0)
        names = tuple(ext.name for ext in host.extensions())
    replayed = tuple(collector.records)
    return ReplayReport(names, replayed, tuple(diff_events(recording.events, replayed)))
