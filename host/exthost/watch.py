"""Watching loaded extensions' folders: a change, then quiet for the debounce time → reload that extension.

:class:`ExtensionWatcher` polls, every ``poll_s`` (0.1 s), a fingerprint of
each loaded extension's folder — the relative path, size and modification
time of every file, skipping ``__pycache__``, ``.git``, ``node_modules``,
virtual environments and editor scratch files (``.*.swp``, ``*~``, ``4913``).
A folder whose fingerprint changed and then stayed the same for
``debounce_s`` (0.3 s, kit's value) is reloaded through the callback given
(``ExtensionHost.reload``); so is one whose last reload failed, at its next
change — nothing is cached. Each folder is compared with what it was when it
was last seen, so an extension loaded later is watched from then on, and a
change made during a reload triggers one more reload after it.

Why polling and not inotify (``watchfiles``): an extension folder is a
handful of source files (dependency folders are skipped), so a stat of each
every 100 ms costs microseconds; it needs no native dependency and no inotify
watch budget, works the same on every filesystem (network mounts, bind
mounts of containers, where inotify misses changes), and its only latency —
the poll interval — is a third of the debounce it precedes anyway.

Who turns it on: ``ExtensionHost.watch()`` — the interactive ``chat`` does
by default (an author edits and sees the change at once); ``run`` does not
(a scripted run must behave the same from start to end).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path

__all__ = ["Debouncer", "ExtensionWatcher", "fingerprint"]

log = logging.getLogger("kithost.watch")

#: Folders never looked into.
SKIP_DIRS = frozenset({"__pycache__", ".git", "node_modules", ".venv", "venv", ".mypy_cache", ".pytest_cache",
                       ".ruff_cache"})


def _scratch(name: str) -> bool:
    """Editor scratch files: vim swap/backup and its write probe, emacs lock/backup files."""
    return (name.endswith(("~", ".swp", ".swx", ".swo")) or name == "4913" or name.startswith(".#")
            or (name.startswith("#") and name.endswith("#")))


def fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """``(relative path, size, mtime ns)`` of every watched file under ``directory``, sorted; ``()`` if gone."""
    out: list[tuple[str, int, int]] = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in names:
            if _scratch(name):
                continue
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except OSError:  # removed while we looked
                continue
            out.append((os.path.relpath(path, directory), st.st_size, st.st_mtime_ns))
    out.sort()
    return tuple(out)


class Debouncer:
    """Which names changed and then stayed quiet for ``debounce_s`` (pure; the caller gives the clock)."""

    def __init__(self, debounce_s: float) -> None:
        self.debounce_s = debounce_s
        self._seen: dict[str, Hashable] = {}
        self._changed_at: dict[str, float] = {}

    def observe(self, name: str, value: Hashable, now: float) -> None:
        """``name`` looks like ``value`` at ``now``; the first look is the baseline, not a change."""
        if name in self._seen and self._seen[name] != value:
            self._changed_at[name] = now  # every further change restarts the quiet period
        self._seen[name] = value

    def due(self, now: float) -> list[str]:
        """Names whose last change is at least ``debounce_s`` old (each returned once per change)."""
        ready = [n for n, at in self._changed_at.items() if now - at >= self.debounce_s]
        for name in ready:
            del self._changed_at[name]
        return ready

    def keep_only(self, names: set[str]) -> None:
        """Forget every name not in ``names`` (an extension unloaded)."""
        for name in set(self._seen) - names:
            self._seen.pop(name, None)
            self._changed_at.pop(name, None)


class ExtensionWatcher:
    """Polls the folders of ``folders()`` (name → folder) and calls ``reload(name)`` after a change settles."""

    def __init__(self, folders: Callable[[], dict[str, Path]], reload: Callable[[str], object],
                 debounce_s: float = 0.3, poll_s: float = 0.1) -> None:
        self._folders = folders
        self._reload = reload
        self._poll_s = poll_s
        self._debouncer = Debouncer(debounce_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kithost-watch", daemon=True)

    def start(self) -> None:
        """Take the baseline of every folder now, then watch on a thread of its own."""
        self._look(time.monotonic())
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop watching; waits up to ``timeout_s`` for a reload in progress."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _look(self, now: float) -> None:
        folders = self._folders()
        self._debouncer.keep_only(set(folders))
        for name, directory in folders.items():
            self._debouncer.observe(name, fingerprint(directory), now)

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self._look(time.monotonic())
                for name in self._debouncer.due(time.monotonic()):
                    if self._stop.is_set():
                        return
                    self._reload(name)
            except Exception:  # a bad folder or callback must not end the watcher
                log.exception("extension watcher: a look at the folders failed")
