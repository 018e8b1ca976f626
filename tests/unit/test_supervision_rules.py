"""Restart decisions and the watchdog's judgements, on a fake clock (no processes, no sleeping)."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from host.config import RestartMode, Supervision
from host.exthost.supervisor import ExtState, RestartPolicy, Watchdog


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CFG = replace(Supervision(), backoff_initial_ms=100, backoff_max_ms=400, crash_limit=3, crash_window_s=60,
              stable_after_s=10, event_crash_limit=3)


def policy(mode: str = "on-failure") -> tuple[RestartPolicy, FakeClock]:
    clock = FakeClock()
    return RestartPolicy(CFG, RestartMode(mode), clock), clock


def test_first_crash_restarts_at_once_then_backoff_doubles_and_a_crash_loop_ends_dead() -> None:
    p, clock = policy()
    delays = []
    for _ in range(2):
        decision = p.after_exit(0.5, 1, "exited with status 1")
        assert decision.state is ExtState.RESTARTING
        delays.append(decision.delay_s)
        clock.now += 1
    assert delays == [0.0, 0.1]  # no crash loop yet: at once; the second crash in the window backs off
    final = p.after_exit(0.5, 1, "exited with status 1")
    assert final.state is ExtState.DEAD and "3 crashes within 60 s" in final.reason


def test_crashes_outside_the_window_are_forgotten() -> None:
    p, clock = policy()
    for _ in range(5):
        assert p.after_exit(0.5, None, "hung: no heartbeat").state is ExtState.RESTARTING
        clock.now += 61


def test_a_stable_run_resets_backoff_and_history() -> None:
    p, _ = policy()
    p.after_exit(0.5, 1, "crash")
    p.after_exit(0.5, 1, "crash")
    decision = p.after_exit(30.0, 1, "crash after a long run")
    assert decision.state is ExtState.RESTARTING and decision.delay_s == 0.0  # a stable run: back at once
    assert p.after_exit(0.5, 1, "crash again at once").delay_s == pytest.approx(0.1)  # a loop again: backoff


def test_backoff_caps_at_its_maximum() -> None:
    p, clock = policy()
    cfg = replace(CFG, crash_limit=10)
    p = RestartPolicy(cfg, RestartMode.ON_FAILURE, clock)
    delays = [p.after_exit(0.5, 1, "crash").delay_s for _ in range(5)]
    assert delays == [0.0, 0.1, 0.2, 0.4, 0.4]


@pytest.mark.parametrize(("mode", "code", "state"), [
    ("on-failure", 0, ExtState.STOPPED),
    ("always", 0, ExtState.RESTARTING),
    ("never", 0, ExtState.STOPPED),
    ("never", 1, ExtState.DEAD),
    ("never", None, ExtState.DEAD),
    ("on-failure", 3, ExtState.DEAD),   # the SDK's "broken extension": not retried
    ("always", 4, ExtState.DEAD),       # handshake refused: not retried
    ("on-failure", 1, ExtState.RESTARTING),
    ("on-failure", None, ExtState.RESTARTING),  # killed by the host (hung, over a limit)
])
def test_exit_rules(mode: str, code: int | None, state: ExtState) -> None:
    p, _ = policy(mode)
    assert p.after_exit(1.0, code, "exited").state is state


def test_watchdog_declares_a_silent_process_hung() -> None:
    clock = FakeClock()
    dog = Watchdog("x", replace(Supervision(), heartbeat_ms=1000, hang_ms=5000, watch_ms=10**9), clock)
    dog.reset()
    pings: list[int] = []
    assert dog.check(0, lambda: None, lambda: pings.append(1)) is None
    clock.now += 1.5
    assert dog.check(0, lambda: None, lambda: pings.append(1)) is None and pings == [1]
    clock.now += 1.0  # a pong arrives: alive
    assert dog.check(0, lambda: {"busy": False, "busy_ms": 0}, lambda: None) is None
    clock.now += 5.5
    reason = dog.check(0, lambda: None, lambda: None)
    assert reason is not None and reason.startswith("hung: no heartbeat for 5.5 s")


def test_watchdog_declares_a_long_busy_handler_stuck() -> None:
    clock = FakeClock()
    dog = Watchdog("x", replace(Supervision(), heartbeat_ms=100, stuck_ms=60_000, watch_ms=10**9), clock)
    dog.reset()
    clock.now += 0.2
    dog.check(0, lambda: None, lambda: None)  # sends a ping
    clock.now += 0.1
    reason = dog.check(0, lambda: {"busy": True, "current": "tool_call", "busy_ms": 61_000}, lambda: None)
    assert reason == "stuck: tool_call handler running for 61 s"


def test_slowness_degrades_after_the_limit_and_twenty_answers_recover() -> None:
    clock = FakeClock()
    dog = Watchdog("x", replace(Supervision(), slow_warn_per_min=3), clock)
    assert [dog.note_slow("t") for _ in range(3)] == [False, False, True]
    clock.now += 61
    assert dog.note_slow("t") is False  # the old ones left the one-minute window
    assert [dog.note_ok() for _ in range(20)][-2:] == [False, True]


# ---------------------------------------------------------------- event crashes (rule 4): dying on every event

def test_dying_on_every_event_at_human_pace_ends_dead_after_the_limit() -> None:
    clock = FakeClock()
    p = RestartPolicy(CFG, RestartMode.ON_FAILURE, clock)
    decisions = []
    for _ in range(3):
        clock.now += 300  # minutes apart: every run is "stable" and the crash window never fills
        decisions.append(p.after_exit(300.0, 1, "process exited with status 1", in_handler=True))
    assert [d.state for d in decisions] == [ExtState.RESTARTING, ExtState.RESTARTING, ExtState.DEAD]
    assert decisions[-1].reason == ("process exited with status 1; died during a handler 3 times in a row without "
                                    "answering any event: it crashes on every event, not restarted")
    assert decisions[0].delay_s == decisions[1].delay_s == 0.0  # the stable runs still reset backoff: at once


def test_an_answer_resets_the_event_crash_count() -> None:
    p, clock = policy()
    for answered in (False, False, True, False, False):
        clock.now += 300
        decision = p.after_exit(300.0, 1, "crash", in_handler=True, answered=answered)
        assert decision.state is ExtState.RESTARTING
    assert p.event_crashes == 2
    # an idle crash of a process that answered resets it too; one that answered nothing leaves it as it is
    p.after_exit(300.0, 1, "crash", answered=True)
    assert p.event_crashes == 0
    p.after_exit(300.0, 1, "crash", in_handler=True)
    p.after_exit(300.0, 1, "idle crash")
    assert p.event_crashes == 1


def test_crashes_outside_a_handler_are_not_event_crashes() -> None:
    p, clock = policy()
    for _ in range(10):
        clock.now += 300
        assert p.after_exit(300.0, None, "killed: memory limit 1 MiB (rss 2 MiB)").state is ExtState.RESTARTING
    assert p.event_crashes == 0


def test_event_crash_limit_zero_never_kills_and_an_operator_restart_forgets_the_count() -> None:
    off = RestartPolicy(replace(CFG, event_crash_limit=0), RestartMode.ON_FAILURE, FakeClock())
    assert all(off.after_exit(300.0, 1, "crash", in_handler=True).state is ExtState.RESTARTING for _ in range(10))
    p, _ = policy()
    p.after_exit(300.0, 1, "crash", in_handler=True)
    p.after_exit(300.0, 1, "crash", in_handler=True)
    p.reset()  # kithost ext restart NAME
    assert p.event_crashes == 0
    assert p.after_exit(300.0, 1, "crash", in_handler=True).state is ExtState.RESTARTING


def test_broken_setup_and_restart_never_keep_their_own_reasons_inside_a_handler() -> None:
    p, _ = policy()
    assert "broken setup" in p.after_exit(1.0, 3, "exited with status 3", in_handler=True).reason
    never, _ = policy("never")
    assert never.after_exit(1.0, 1, "crash", in_handler=True).reason.endswith("restart policy 'never'")


# ---- memory counted once (issue 8): where a cgroup holds the memory limit, the RSS sum is never a kill reason

MIB = 1024 * 1024


def memory_dog(limit_mb: int) -> tuple[Watchdog, FakeClock]:
    clock = FakeClock()
    cfg = replace(Supervision(), memory_mb=limit_mb, heartbeat_ms=10**6, hang_ms=10**9, watch_ms=100,
                  cpu_seconds=0, max_threads=0, max_fds=0, max_children=0)
    dog = Watchdog("x", cfg, clock)
    dog.reset()
    return dog, clock


def test_without_a_cgroup_the_summed_rss_over_the_limit_kills() -> None:
    dog, _ = memory_dog(1)  # this test process itself is far over 1 MiB of RSS
    reason = dog.check(os.getpid(), lambda: None, lambda: None)
    assert reason is not None and reason.startswith("killed: memory limit 1 MiB (rss "), reason
    assert dog.resources is not None and dog.resources.memory_source == "rss"


def test_with_a_cgroup_memory_limit_the_watchdog_reports_its_usage_and_never_kills_on_memory() -> None:
    dog, clock = memory_dog(1)
    reads: list[int] = []

    def usage() -> int:
        reads.append(1)
        return 300 * MIB  # over the limit: the kernel's business (an OOM kill the cgroup reports), not ours

    assert dog.check(os.getpid(), lambda: None, lambda: None, cgroup_memory=usage) is None
    assert dog.resources is not None
    assert (dog.resources.rss_bytes, dog.resources.memory_source) == (300 * MIB, "cgroup")
    assert dog.resources.as_dict()["memory_source"] == "cgroup"
    clock.now += 0.05  # before the next watch: no new sample, the cgroup is not read again
    assert dog.check(os.getpid(), lambda: None, lambda: None, cgroup_memory=usage) is None
    assert len(reads) == 1
    clock.now += 0.1
    assert dog.check(os.getpid(), lambda: None, lambda: None, cgroup_memory=usage) is None
    assert len(reads) == 2


def test_an_unreadable_cgroup_shows_the_rss_sum_but_still_leaves_memory_to_the_kernel() -> None:
    dog, _ = memory_dog(1)
    assert dog.check(os.getpid(), lambda: None, lambda: None, cgroup_memory=lambda: None) is None
    assert dog.resources is not None and dog.resources.memory_source == "rss" and dog.resources.rss_bytes > MIB


def test_other_limits_still_apply_under_a_cgroup() -> None:
    clock = FakeClock()
    cfg = replace(Supervision(), memory_mb=1, heartbeat_ms=10**6, hang_ms=10**9, watch_ms=100, max_threads=0,
                  max_fds=1, max_children=0, cpu_seconds=0)
    dog = Watchdog("x", cfg, clock)
    dog.reset()
    reason = dog.check(os.getpid(), lambda: None, lambda: None, cgroup_memory=lambda: 500 * MIB)
    assert reason is not None and reason.startswith("killed: file descriptor limit 1 ("), reason
