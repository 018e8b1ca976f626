"""The warm spare of one extension: a launch started in advance that waits at reading its secret.

A spare is a whole launch of its own — slot, private directory, sockets,
confinement, process — prepared with ``parked=True``
(:func:`.launch.prepare_launch`): its secret file is a named pipe, so the
process pays for its interpreter, sandbox and SDK imports and then blocks
reading the pipe, before any of the extension's code runs. A restart takes it
(:meth:`Spare.take`) and hands it the secret (:meth:`.launch.Launch.unpark`);
it then handshakes like any new process.

Rules (the extension handle decides *when* one is wanted, this class *how*):

* :meth:`Spare.tend` (supervisor thread) starts one when wanted and none is
  there, and replaces one that exited; after :data:`SPARE_FAILURES` exits or
  failed starts in a row it gives up with a warning (restarts then start
  cold). A spare taken or dropped on purpose is not a failure.
* :meth:`Spare.take` returns it only if it is alive and was started for the
  manifest and grant now in force (identity: a reload or a new trust replaces
  them); otherwise it is discarded and the restart starts cold.
* :meth:`Spare.drop` (reload, stop; any thread) discards it.

Discarding kills the process tree and releases the launch (the caller's
``discard``). Thread safety: one lock guards the slot; starting and discarding
happen outside it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Final, Generic, Protocol, TypeVar

import psutil
import zmq

from ext_sdk.sandbox.plan import PlanError

from .launch import Launch
from .manifest import Manifest
from .process import ProcessHandle, descendants, describe_exit
from .sandbox.confine import SandboxRefused
from .trust import Grant

__all__ = ["SPARE_FAILURES", "Spare"]

log = logging.getLogger("kithost.ext")

#: Spares that exit (or fail to start) this many times in a row make the extension go without one.
SPARE_FAILURES: Final = 3


class Parked(Protocol):
    """What a spare is to this module: a launch and its process."""

    launch: Launch
    process: ProcessHandle | None


_P = TypeVar("_P", bound=Parked)


class Spare(Generic[_P]):
    """At most one warm spare of one extension (see the module doc)."""

    def __init__(self, name: str, start: Callable[[Manifest, Grant, int], _P], discard: Callable[[_P], None],
                 next_slot: Callable[[], int], notice: dict[str, object] | None = None) -> None:
        """``start(manifest, grant, slot)`` starts a parked launch (raises ``OSError``, ``zmq.ZMQError``,
        :class:`SandboxRefused` or :class:`PlanError`); ``discard`` kills and releases one; ``next_slot``
        gives a launch slot unique in the host; ``notice``: ``extra`` of the give-up warning."""
        self._name = name
        self._start = start
        self._discard = discard
        self._next_slot = next_slot
        self._notice = notice or {}
        self._lock = threading.Lock()
        self._spare: _P | None = None
        self._of: tuple[int, Manifest, Grant] | None = None
        #: Exits or failed starts in a row.
        self.failures = 0

    @property
    def pid(self) -> int | None:
        """Pid of the spare's process, if there is one."""
        spare = self._spare
        return spare.process.pid if spare is not None and spare.process is not None else None

    def parked(self) -> bool:
        """Whether the spare waits at its secret (imports done): a restart now takes milliseconds.

        Read from ``/proc``: a process of the spare's tree holds the secret pipe open (the Python SDK opens
        it non-blocking and polls).
        """
        spare = self._spare
        if spare is None or spare.process is None:
            return False
        target = str(spare.launch.endpoints.secret_file)
        try:
            root = psutil.Process(spare.process.pid)
            tree = [root, *descendants(root)]
        except psutil.Error:
            return False
        for proc in tree:
            try:
                fds = os.listdir(f"/proc/{proc.pid}/fd")
                if any(os.readlink(f"/proc/{proc.pid}/fd/{fd}") == target for fd in fds):
                    return True
            except OSError:
                continue
        return False

    def take(self, manifest: Manifest, grant: Grant) -> tuple[_P, int] | None:
        """The spare and its slot, if it is alive and was started for ``manifest`` and ``grant``."""
        with self._lock:
            spare, of = self._spare, self._of
            self._spare = self._of = None
        if spare is None or of is None:
            return None
        slot, its_manifest, its_grant = of
        stale = its_manifest is not manifest or its_grant is not grant  # reloaded or re-trusted since
        if stale or spare.process is None or not spare.process.alive():
            self._discard(spare)
            return None
        return spare, slot

    def drop(self) -> None:
        """Discard the spare, if any (not counted as a failure)."""
        with self._lock:
            spare, self._spare, self._of = self._spare, None, None
        if spare is not None:
            self._discard(spare)
        self.failures = 0

    def tend(self, manifest: Manifest, grant: Grant, wanted: bool, keep: Callable[[Manifest], bool]) -> None:
        """Replace a spare that exited; start one when ``wanted`` and none is there (supervisor thread).

        ``keep(manifest)`` is asked once the new spare runs: ``False`` (the extension is stopping, or was
        reloaded meanwhile) discards it.
        """
        spare = self._spare
        if spare is not None:
            if spare.process is not None and spare.process.alive():
                return
            with self._lock:
                if self._spare is spare:
                    self._spare = self._of = None
            self._discard(spare)
            why = describe_exit(spare.process.returncode) if spare.process is not None else "gone"
            self._failed(f"its spare {why}")
            return
        if not wanted or self.failures >= SPARE_FAILURES:
            return
        slot = self._next_slot()
        try:
            started = self._start(manifest, grant, slot)
        except (OSError, zmq.ZMQError, SandboxRefused, PlanError) as exc:
            self._failed(f"could not start its spare: {exc}")
            return
        with self._lock:
            kept = keep(manifest) and self._spare is None
            if kept:
                self._spare, self._of = started, (slot, manifest, grant)
        if not kept:
            self._discard(started)

    def _failed(self, what: str) -> None:
        self.failures += 1
        if self.failures >= SPARE_FAILURES:
            log.warning("extension %s: %s, %d times in a row; it goes without one (restarts start cold)",
                        self._name, what, self.failures, extra=self._notice)
        else:
            log.info("extension %s: %s", self._name, what)
