"""The warm spare's rules (host/exthost/spare.py) with fake launches: no processes."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, cast

from host.exthost.manifest import Manifest
from host.exthost.spare import SPARE_FAILURES, Spare
from host.exthost.trust import Grant


@dataclass
class FakeProcess:
    pid: int
    running: bool = True
    returncode: int | None = None

    def alive(self) -> bool:
        return self.running

    def kill(self) -> None:
        self.running = False


@dataclass
class FakeLaunch:
    slot: int
    process: Any = None
    launch: Any = None


@dataclass
class Rig:
    started: list[FakeLaunch] = field(default_factory=list)
    discarded: list[FakeLaunch] = field(default_factory=list)
    fail_with: Exception | None = None

    def start(self, manifest: Manifest, grant: Grant, slot: int) -> FakeLaunch:
        if self.fail_with is not None:
            raise self.fail_with
        launched = FakeLaunch(slot, FakeProcess(1000 + slot))
        self.started.append(launched)
        return launched

    def discard(self, launched: FakeLaunch) -> None:
        launched.process.kill()
        self.discarded.append(launched)


MANIFEST = cast(Manifest, object())
GRANT = cast(Grant, object())


def spare(rig: Rig) -> Spare[Any]:
    slots = itertools.count(10)
    return Spare("x", rig.start, rig.discard, lambda: next(slots))


def test_a_spare_is_started_only_when_wanted_and_taken_once() -> None:
    rig = Rig()
    s = spare(rig)
    s.tend(MANIFEST, GRANT, wanted=False, keep=lambda m: True)
    assert rig.started == [] and s.pid is None
    s.tend(MANIFEST, GRANT, wanted=True, keep=lambda m: True)
    s.tend(MANIFEST, GRANT, wanted=True, keep=lambda m: True)  # one is there: nothing more
    assert len(rig.started) == 1 and s.pid == 1010
    taken = s.take(MANIFEST, GRANT)
    assert taken is not None and taken[0] is rig.started[0] and taken[1] == 10
    assert s.take(MANIFEST, GRANT) is None and s.pid is None and rig.discarded == []


def test_a_spare_of_another_manifest_or_grant_is_discarded_not_taken() -> None:
    rig = Rig()
    s = spare(rig)
    s.tend(MANIFEST, GRANT, wanted=True, keep=lambda m: True)
    assert s.take(cast(Manifest, object()), GRANT) is None
    assert rig.discarded == rig.started
    s.tend(MANIFEST, GRANT, wanted=True, keep=lambda m: True)
    assert s.take(MANIFEST, cast(Grant, object())) is None
    assert len(rig.discarded) == 2


def test_a_dead_spare_is_not_taken() -> None:
    rig = Rig()
    s = spare(rig)
    s.tend(MANIFEST, GRANT, wanted=True, keep=lambda m: True)
    rig.started[0].process.running = False
    assert s.take(MANIFEST, GRANT) is None and rig.discarded == rig.started


def test_one_started_while_the_extension_stopped_is_discarded() -> None:
    rig = Rig()
    s = spare(rig)
    s.tend(MANIFEST, GRANT, wanted=True, keep=lambda m: False)
    assert s.pid is None and rig.discarded == rig.started and s.failures == 0


def test_spares_that_keep_exiting_are_given_up_and_a_drop_starts_over() -> None:
    rig = Rig()
    s = spare(rig)
    for round_ in range(SPARE_FAILURES):
        s.tend(MANIFEST, GRANT, wanted=True, keep=lambda m: True)
        assert len(rig.started) == round_ + 1
        rig.started[-1].process.running = False
        s.tend(MANIFEST, GRANT, wanted=True, keep=lambda m: True)  # noticed: discarded, counted
        assert s.failures == round_ + 1 and s.pid is None
    s.tend(MANIFEST, GRANT, wanted=True, keep=lambda m: True)
    assert len(rig.started) == SPARE_FAILURES  # given up
    s.drop()  # a reload: the new version gets spares again
    s.tend(MANIFEST, GRANT, wanted=True, keep=lambda m: True)
    assert len(rig.started) == SPARE_FAILURES + 1


def test_a_start_that_fails_counts_and_nothing_is_kept() -> None:
    rig = Rig(fail_with=OSError("no room"))
    s = spare(rig)
    for _ in range(SPARE_FAILURES + 2):
        s.tend(MANIFEST, GRANT, wanted=True, keep=lambda m: True)
    assert s.failures == SPARE_FAILURES and s.pid is None


def test_drop_discards_the_spare() -> None:
    rig = Rig()
    s = spare(rig)
    s.tend(MANIFEST, GRANT, wanted=True, keep=lambda m: True)
    s.drop()
    assert s.pid is None and rig.discarded == rig.started
