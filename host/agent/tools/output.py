"""Keeping tool output within a size the model (and memory) can take.

:class:`CappedText` accumulates text of any length in bounded memory: it keeps
the first and the last ``limit // 2`` characters and counts what it dropped,
so a command that prints gigabytes costs at most ``limit`` characters.
"""

from __future__ import annotations

__all__ = ["CappedText", "truncate"]


def truncate(text: str, limit: int, hint: str = "") -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters with a note (and ``hint``) appended; ``(text, was_cut)``."""
    if len(text) <= limit:
        return text, False
    note = f"\n[... truncated: {len(text) - limit} more characters{'; ' + hint if hint else ''}]"
    return text[:limit] + note, True


class CappedText:
    """Text appended in chunks; keeps its head and tail within ``limit`` characters."""

    def __init__(self, limit: int) -> None:
        self.limit = max(2, limit)
        self._head: list[str] = []
        self._head_len = 0
        self._tail = ""
        #: Characters appended in total.
        self.total = 0

    def append(self, chunk: str) -> None:
        """Add ``chunk``."""
        self.total += len(chunk)
        half = self.limit // 2
        room = half - self._head_len
        if room > 0:
            self._head.append(chunk[:room])
            self._head_len += min(room, len(chunk))
            chunk = chunk[room:]
        if chunk:
            self._tail = (self._tail + chunk)[-(self.limit - half):]

    @property
    def truncated(self) -> bool:
        """Whether characters were dropped."""
        return self.total > self.limit

    def text(self) -> str:
        """The kept text; a note marks where characters were dropped."""
        head = "".join(self._head)
        if not self.truncated:
            return head + self._tail
        dropped = self.total - len(head) - len(self._tail)
        return f"{head}\n[... {dropped} characters omitted ...]\n{self._tail}"
