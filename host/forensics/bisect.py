"""Search for the extension (or the smallest set of extensions) that causes a symptom.

The search knows nothing about processes: it calls ``reproduces(subset)`` — "does a replay with only these
extensions (in their load order) show the symptom?" — and counts the calls (each is one replay).

Strategy: the recording itself shows the symptom with every extension, so no replay is spent on the whole
set. Halve the candidates: if the first half reproduces, keep it; otherwise keep the second half *without
replaying it* (one culprit must be there). When one extension is left, replay it alone to confirm. For one
culprit among ``n`` that is ``ceil(log2 n) + 1`` replays at most (4 for 8 extensions). When the
confirmation fails (the symptom needs two extensions together, or the assumption about the untested half
was wrong), fall back to Zeller's ddmin over all candidates, which finds a 1-minimal set (removing any one
member makes the symptom go away) at the price of more replays; the result says which path was taken.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["BisectResult", "Probe", "bisect_culprits"]

#: ``reproduces(subset) -> bool``: replay with only ``subset``; whether the symptom shows.
Reproduces = Callable[[tuple[str, ...]], bool]


@dataclass(frozen=True, slots=True)
class Probe:
    """One replay made by the search."""

    subset: tuple[str, ...]
    reproduced: bool


@dataclass(frozen=True, slots=True)
class BisectResult:
    """What the search found."""

    #: The culprit (one name) or the smallest set found; empty if the symptom never reproduced.
    culprits: tuple[str, ...]
    #: Every replay, in order.
    probes: tuple[Probe, ...] = field(default=())
    #: ``halving`` (one culprit, confirmed alone) or ``ddmin`` (a set; the halving's guess failed).
    method: str = "halving"

    @property
    def replays(self) -> int:
        """How many replays the search used."""
        return len(self.probes)


class _Counted:
    def __init__(self, reproduces: Reproduces, order: Sequence[str]) -> None:
        self._reproduces = reproduces
        self._rank = {name: i for i, name in enumerate(order)}
        self.probes: list[Probe] = []
        self._seen: dict[tuple[str, ...], bool] = {}

    def __call__(self, subset: Sequence[str]) -> bool:
        key = tuple(sorted(subset, key=self._rank.__getitem__))
        if key not in self._seen:
            self._seen[key] = bool(self._reproduces(key))
            self.probes.append(Probe(key, self._seen[key]))
        return self._seen[key]


def _ddmin(names: list[str], test: _Counted) -> list[str]:
    """Zeller's ddmin: a 1-minimal subset of ``names`` for which ``test`` holds (``test(names)`` assumed)."""
    granularity = 2
    while len(names) >= 2:
        size = max(1, len(names) // granularity)
        chunks = [names[i:i + size] for i in range(0, len(names), size)]
        for chunk in chunks:
            if test(chunk):
                names, granularity = chunk, 2
                break
        else:
            for chunk in chunks:
                rest = [n for n in names if n not in chunk]
                if len(chunks) > 2 and rest and test(rest):
                    names, granularity = rest, max(granularity - 1, 2)
                    break
            else:
                if granularity >= len(names):
                    break
                granularity = min(len(names), granularity * 2)
    return names


def bisect_culprits(names: Sequence[str], reproduces: Reproduces) -> BisectResult:
    """Find who in ``names`` (load order; the full set is known to show the symptom) causes it."""
    test = _Counted(reproduces, names)
    if not names:
        return BisectResult((), ())
    candidates = list(names)
    while len(candidates) > 1:
        half = candidates[:len(candidates) // 2]
        candidates = half if test(half) else candidates[len(half):]
    if test(candidates):
        return BisectResult(tuple(candidates), tuple(test.probes), "halving")
    everyone = list(names)
    if not test(everyone):  # the symptom does not reproduce at all (not deterministic, or needs the agent)
        return BisectResult((), tuple(test.probes), "ddmin")
    return BisectResult(tuple(_ddmin(everyone, test)), tuple(test.probes), "ddmin")
