"""Retrying a streamed call with tenacity: :func:`retry_stream`.

The policy is tenacity's (:func:`retrying`):

* retry only when ``should_retry(error)`` says so (the caller's rule: a
  transient error, and nothing streamed yet);
* stop after ``num_retries + 1`` attempts;
* wait ``base_delay_s * 2**(n-1)`` seconds before retry ``n``, at most
  ``max_delay_s`` (``wait_exponential``);
* the wait ends early when ``cancel`` is set (``sleep_using_event``);
* before each wait, ``on_retry(n, error, delay)`` makes the retry event;
* when it gives up, the last error is raised as it was (not a ``RetryError``).

Why not ``for attempt in Retrying(...)``: tenacity sleeps inside that
iterator, where a generator cannot yield, so the retry event would reach the
consumer only after the wait (and a consumer that cancels on it would wait
the whole delay). :func:`retry_stream` drives the same state machine one step
at a time (``Retrying.iter``, as tenacity's own iterator does) and yields the
retry event between tenacity's decision and its sleep.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import TypeVar

from tenacity import (
    DoAttempt,
    DoSleep,
    RetryCallState,
    Retrying,
    retry_if_exception,
    sleep_using_event,
    stop_after_attempt,
    wait_exponential,
)

__all__ = ["retry_stream", "retrying"]

T = TypeVar("T")


def retrying(*, num_retries: int, base_delay_s: float, max_delay_s: float,
             should_retry: Callable[[BaseException], bool], cancel: threading.Event | None,
             before_sleep: Callable[[RetryCallState], None] | None = None) -> Retrying:
    """The tenacity policy of the module doc (a fresh object per call)."""
    return Retrying(stop=stop_after_attempt(num_retries + 1),
                    wait=wait_exponential(multiplier=base_delay_s, exp_base=2, max=max_delay_s),
                    retry=retry_if_exception(should_retry), before_sleep=before_sleep,
                    sleep=time.sleep if cancel is None else sleep_using_event(cancel), reraise=True)


def retry_stream(attempt: Callable[[], Iterator[T]], *, num_retries: int, base_delay_s: float, max_delay_s: float,
                 should_retry: Callable[[BaseException], bool], on_retry: Callable[[int, BaseException, float], T],
                 cancel: threading.Event | None = None) -> Generator[T, None, bool]:
    """Yield what ``attempt()`` yields, calling it again after a failure the policy retries.

    Between two attempts it yields ``on_retry(failed attempts so far, error,
    delay)``, then waits. Returns ``True`` once an attempt ran to its end,
    ``False`` when ``cancel`` was set during a wait (no further attempt is
    made). Raises the last error when it is not retried or the attempts ran out.
    """
    pending: list[T] = []

    def before_sleep(state: RetryCallState) -> None:
        assert state.outcome is not None
        error = state.outcome.exception()
        assert error is not None
        pending.append(on_retry(state.attempt_number, error, state.upcoming_sleep))

    policy = retrying(num_retries=num_retries, base_delay_s=base_delay_s, max_delay_s=max_delay_s,
                      should_retry=should_retry, cancel=cancel, before_sleep=before_sleep)
    policy.begin()
    state = RetryCallState(policy, fn=None, args=(), kwargs={})
    while True:
        action = policy.iter(state)  # raises the last error when tenacity gives up
        if isinstance(action, DoAttempt):
            try:
                yield from attempt()
            except Exception as exc:  # noqa: BLE001 - the attempt's outcome: tenacity retries or re-raises it
                state.set_exception((type(exc), exc, exc.__traceback__))
            else:
                state.set_result(None)
        elif isinstance(action, DoSleep):
            yield from pending
            pending.clear()
            state.prepare_for_next_attempt()
            policy.sleep(action)
            if cancel is not None and cancel.is_set():
                return False
        else:
            return True
