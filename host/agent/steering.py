"""``SteeringQueue``: user messages queued by ``ctx.send_message`` (or the application) for the agent.

Contract:

* :meth:`put` may be called from any thread (an extension's handler runs on
  the dispatching thread or the notify delivery thread).
* While a turn runs, the loop drains the queue before every model call and
  injects each message as a ``user`` message (oldest first); ``prepare_step``
  then sees the window with them (injection first, then ``prepare_step``).
  A message queued during the last step of a turn makes the turn take one
  more step instead of ending.
* When no turn runs, queued messages wait; the session starts one follow-up
  turn per message (source ``queue``) after the current turn, up to
  ``AgentConfig.max_followup_turns``.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

__all__ = ["Steer", "SteeringQueue"]


@dataclass(frozen=True, slots=True)
class Steer:
    """One queued message."""

    text: str
    #: Who queued it: an extension's name, or ``"user"``.
    source: str


class SteeringQueue:
    """Thread-safe FIFO of :class:`Steer` messages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: deque[Steer] = deque()

    def put(self, text: str, source: str) -> None:
        """Queue ``text``."""
        with self._lock:
            self._items.append(Steer(text, source))

    def drain(self) -> list[Steer]:
        """Everything queued, oldest first; the queue is then empty."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items

    def pop(self) -> Steer | None:
        """The oldest message, or ``None``."""
        with self._lock:
            return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
