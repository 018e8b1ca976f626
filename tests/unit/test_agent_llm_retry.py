"""``retry_stream``: tenacity's policy around a streamed call (no litellm, no processes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from host.agent.llm.retry import retry_stream


class Flaky:
    """Attempts that fail ``failures`` times (after yielding ``before_failure``), then stream ``answer``."""

    def __init__(self, failures: int, before_failure: tuple[str, ...] = (), answer: tuple[str, ...] = ("ok",)) -> None:
        self.failures = failures
        self.before_failure = before_failure
        self.answer = answer
        self.calls = 0

    def __call__(self) -> Iterator[str]:
        self.calls += 1
        if self.calls <= self.failures:
            yield from self.before_failure
            raise ConnectionError(f"failure {self.calls}")
        yield from self.answer


def drain(gen: Iterator[str]) -> tuple[list[str], bool]:
    out: list[str] = []
    while True:
        try:
            out.append(next(gen))
        except StopIteration as stop:
            return out, bool(stop.value)


def run(attempt: Flaky, *, num_retries: int = 3, base: float = 0.001, cap: float = 30.0,
        should_retry: bool = True, cancel: threading.Event | None = None) -> Iterator[str]:
    return retry_stream(attempt, num_retries=num_retries, base_delay_s=base, max_delay_s=cap,
                        should_retry=lambda exc: should_retry, cancel=cancel,
                        on_retry=lambda n, exc, delay: f"retry {n} after {exc} in {delay}")


def test_a_retry_event_per_failed_attempt_with_exponential_capped_delays() -> None:
    attempt = Flaky(3)
    events, finished = drain(run(attempt, base=0.001, cap=0.003))
    assert finished and attempt.calls == 4
    assert events == ["retry 1 after failure 1 in 0.001", "retry 2 after failure 2 in 0.002",
                      "retry 3 after failure 3 in 0.003", "ok"]


def test_the_last_error_is_raised_when_attempts_run_out() -> None:
    attempt = Flaky(5)
    events: list[str] = []
    with pytest.raises(ConnectionError, match="failure 3"):
        for event in run(attempt, num_retries=2):
            events.append(event)
    assert attempt.calls == 3 and len(events) == 2


def test_an_error_the_caller_does_not_retry_is_raised_at_once() -> None:
    attempt = Flaky(1, before_failure=("partial",))
    with pytest.raises(ConnectionError, match="failure 1"):
        drain(run(attempt, should_retry=False))
    assert attempt.calls == 1


def test_no_retries_means_one_attempt() -> None:
    attempt = Flaky(1)
    with pytest.raises(ConnectionError):
        drain(run(attempt, num_retries=0))
    assert attempt.calls == 1


def test_the_retry_event_comes_before_the_wait_and_cancel_ends_the_wait() -> None:
    cancel = threading.Event()
    attempt = Flaky(1)
    gen = run(attempt, base=60.0, cap=120.0, cancel=cancel)
    assert next(gen).startswith("retry 1 after failure 1 in 60.0")  # delivered before the 60 s wait
    started = time.monotonic()
    threading.Timer(0.05, cancel.set).start()
    events, finished = drain(gen)
    assert time.monotonic() - started < 5
    assert not finished and events == [] and attempt.calls == 1  # no attempt after a cancelled wait


def test_without_a_cancel_event_the_wait_is_a_plain_sleep() -> None:
    attempt = Flaky(1)
    started = time.monotonic()
    events, finished = drain(run(attempt, base=0.05))
    assert finished and events == ["retry 1 after failure 1 in 0.05", "ok"]
    assert time.monotonic() - started >= 0.05
