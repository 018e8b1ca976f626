"""The bisect search and the ``--bad`` symptom grammar (pure logic; replays are stand-in predicates)."""

from __future__ import annotations

import math

import pytest

from host.forensics.bisect import bisect_culprits
from host.forensics.record import EventRecord
from host.forensics.symptom import SymptomError, SymptomKind, parse_symptom

NAMES = tuple(f"ext{i}" for i in range(8))


@pytest.mark.parametrize("culprit", NAMES)
def test_one_culprit_among_eight_is_found_in_at_most_four_replays(culprit: str) -> None:
    result = bisect_culprits(NAMES, lambda subset: culprit in subset)
    assert result.culprits == (culprit,)
    assert result.replays <= 4 and result.method == "halving"
    assert result.probes[-1].subset == (culprit,) and result.probes[-1].reproduced  # confirmed alone


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 32])
def test_one_culprit_costs_log2_plus_one_replays(n: int) -> None:
    names = tuple(f"e{i}" for i in range(n))
    for culprit in names:
        result = bisect_culprits(names, lambda subset, c=culprit: c in subset)
        assert result.culprits == (culprit,)
        assert result.replays <= math.ceil(math.log2(n)) + 1


def test_a_pair_that_only_fails_together_is_found_by_ddmin() -> None:
    pair = {"ext1", "ext6"}
    result = bisect_culprits(NAMES, lambda subset: pair <= set(subset))
    assert set(result.culprits) == pair and result.method == "ddmin"
    for probe in result.probes:  # every probe's answer is the real one
        assert probe.reproduced == (pair <= set(probe.subset))


def test_subsets_keep_load_order_and_are_never_replayed_twice() -> None:
    seen: list[tuple[str, ...]] = []

    def reproduces(subset: tuple[str, ...]) -> bool:
        seen.append(subset)
        return {"ext2", "ext5"} <= set(subset)

    bisect_culprits(NAMES, reproduces)
    assert len(seen) == len(set(seen))
    for subset in seen:
        assert list(subset) == sorted(subset, key=NAMES.index)


def test_a_symptom_that_never_reproduces_names_nobody() -> None:
    result = bisect_culprits(NAMES, lambda subset: False)
    assert result.culprits == ()


def _record(event: str, given: dict, steps: tuple = (), **outcome: object) -> EventRecord:
    base: dict[str, object] = {"stopped": False, "by": None, "reason": "", "failed_closed": False, "failures": []}
    base.update(outcome)
    return EventRecord(0, event, given, base, steps)


def test_symptom_grammar_and_matching() -> None:
    blocked = _record("tool_call", {}, stopped=True, by="gate", reason="rm -rf is not allowed")
    closed = _record("tool_call", {}, stopped=True, by="slow", reason="slow failed", failed_closed=True,
                     failures=[{"handler": "slow", "kind": "timeout", "detail": "no reply in 250 ms"}])
    changed = _record("context_prepare", {"messages": [1]}, payload={"messages": []},
                      steps=({"handler": "pruner", "result": {"messages": []}},))
    same = _record("context_prepare", {"messages": [1]}, payload={"messages": [1]})
    assert parse_symptom("blocked:tool_call~RM -RF").matches(blocked)
    assert not parse_symptom("blocked").matches(closed)  # a failure is not a decision
    assert parse_symptom("stopped").matches(closed)
    assert parse_symptom("failed~timeout").matches(closed) and not parse_symptom("failed").matches(blocked)
    assert parse_symptom("changed:context_prepare~prun").matches(changed)
    assert not parse_symptom("changed").matches(same)
    assert not parse_symptom("blocked:tool_result").matches(blocked)
    assert parse_symptom(" Blocked : tool_call ").kind is SymptomKind.BLOCKED


@pytest.mark.parametrize(("text", "words"), [
    ("broken", "starts with one of"),
    ("blocked:no_such_event", "unknown event"),
    ("changed:tool_call", "not a chain event"),
])
def test_bad_symptoms_are_refused_in_words(text: str, words: str) -> None:
    with pytest.raises(SymptomError, match=words):
        parse_symptom(text)
