"""Starting the extension for the kit exactly as the host starts it, and ending it without leftovers.

Contract:

* :class:`KitRuntime` (one per kit run) owns what a host owns for its
  launches: a ZeroMQ context, the ZAP handler (:class:`~host.exthost.peers.PeerGate`:
  only the launched process tree may connect), the
  :class:`~host.exthost.sandbox.confine.Confiner` built from the operator's
  config, and a private 0700 directory ``h*`` under the host runtime base
  with a ``host.json`` naming this process — so if the kit dies hard, the
  next host sweeps up its extension processes like a dead host's.
* :meth:`KitRuntime.start` makes one launch the way
  :meth:`host.exthost.extension.RunningExtension.spawn` does: the private
  directory and 32-byte secret file (:func:`~host.exthost.launch.prepare_launch`),
  the kit's sockets bound before confinement, the sandbox layers the
  machine allows (:meth:`~host.exthost.sandbox.confine.Confiner.confine`, the
  manifest's permissions and access granted as asked), the process
  (:class:`~host.exthost.process.ExtensionProcess`: own session, stderr and
  stdout captured in a bounded log). ``env`` adds or replaces launch
  variables (the version-mismatch scenario names another protocol version).
  Raises :class:`~host.errors.ExtensionStartError` when it cannot start.
* :meth:`Launched.close` kills what is left of the process tree (SIGKILL to
  the group and every descendant; a process that already exited is not
  signalled again), releases the sandbox (cgroup — which kills anything left
  in it — and uid lease), and removes the sockets and the secret file.
  Idempotent.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import zmq

from ext_sdk.hostcalls import ALWAYS_GRANTED
from ext_sdk.sandbox.plan import PlanError

from ..config import HostConfig
from ..errors import ExtensionStartError
from ..exthost.host import private_runtime_dir, runtime_base
from ..exthost.launch import Launch, prepare_launch
from ..exthost.manifest import Manifest
from ..exthost.peers import PeerGate
from ..exthost.process import ExtensionProcess, LogBuffer
from ..exthost.sandbox.confine import Confined, Confiner, SandboxRefused
from .peer import Peer

__all__ = ["KitRuntime", "Launched"]

#: Launch slots, unique in this process (cgroup names and uid leases are per slot).
_SLOTS = itertools.count(1)
_SLOTS_LOCK = threading.Lock()


def _next_slot() -> int:
    with _SLOTS_LOCK:
        return next(_SLOTS)


def _private_dir(base: Path) -> Path:
    """The host's private runtime directory, marked as the kit's (a later host sweeps what a dead kit left)."""
    directory = private_runtime_dir(base)
    (directory / "host.json").write_text(json.dumps({"pid": os.getpid(), "started": time.time(),
                                                     "cwd": os.getcwd(), "conformance": True}))
    return directory


class Launched:
    """One running launch of the extension: its process, log and the kit's end of its channels."""

    def __init__(self, runtime: KitRuntime, launch: Launch, peer: Peer, confined: Confined,
                 process: ExtensionProcess, log: LogBuffer) -> None:
        self._runtime = runtime
        self.launch = launch
        self.peer = peer
        self.confined = confined
        self.process = process
        self.log = log
        self._closed = False

    def alive(self) -> bool:
        return self.process.alive()

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def wait_exit(self, timeout_s: float) -> int | None:
        """The exit status once the process has exited within ``timeout_s``, else ``None``."""
        end = time.monotonic() + timeout_s
        while self.process.alive():
            left = end - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(0.01, left))
        return self.process.returncode

    def stderr_tail(self, last: int = 3) -> str:
        """The last lines the process wrote, joined with `` | ``."""
        time.sleep(0.02)  # the reader threads may be a line behind an exit
        return " | ".join(text for _, _, text in self.log.lines(last))

    def end_process(self) -> None:
        """Kill the process tree if it still runs; reap it and read the rest of its output (idempotent)."""
        if self.process.alive():
            self.process.kill()
        else:  # already gone: never signal a reaped pid again; take leftovers and the last log lines
            self.process.stop(lambda timeout: None, 0.0)

    def close(self) -> None:
        """Kill what is left, release the sandbox, remove sockets and secret (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.end_process()
        finally:
            self.peer.close()
            self.confined.release()
            self._runtime.gate.forget(self.launch.domain)
            self.launch.cleanup()


class KitRuntime:
    """What the kit owns for all launches of one run (see the module doc)."""

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.gate = PeerGate(self.zctx)
        self.confiner = Confiner(config)
        try:
            _ = self.confiner.probe  # once, before the launches of two threads ask for it
            self.directory = _private_dir(config.runtime_dir or runtime_base())
        except BaseException:
            self.gate.close()
            self.zctx.destroy(linger=0)
            raise
        self._lock = threading.Lock()
        self._launched: list[Launched] = []
        #: Launches started so far.
        self.launches = 0

    def start(self, manifest: Manifest, env: dict[str, str] | None = None) -> Launched:
        """Start one launch of ``manifest`` (see the module doc)."""
        slot = _next_slot()
        launch: Launch | None = None
        peer: Peer | None = None
        confined: Confined | None = None
        try:
            launch = prepare_launch(manifest, self.directory, slot)
            if env:
                launch = replace(launch, spec=replace(launch.spec, env={**launch.spec.env, **env}))
            peer = Peer(self.zctx, launch, self.config.limits.max_frame)
            confined = self.confiner.confine(launch, manifest, manifest.access, slot,
                                             self.config.supervision_for(manifest.name))
            self.gate.admit(launch.domain, manifest.name, Counter())
            log = LogBuffer(self.config.limits.log_lines, self.config.limits.log_line_bytes)
            process = ExtensionProcess(confined.spec, log)
            self.gate.started(launch.domain, process.pid)
        except (OSError, zmq.ZMQError, SandboxRefused, PlanError) as exc:
            if peer is not None:
                peer.close()
            if confined is not None:
                confined.release()
            if launch is not None:
                self.gate.forget(launch.domain)
                launch.cleanup()
            raise ExtensionStartError(manifest.name, f"could not start: {exc}") from exc
        launched = Launched(self, launch, peer, confined, process, log)
        with self._lock:
            self._launched.append(launched)
            self.launches += 1
        return launched

    @staticmethod
    def granted_permissions(manifest: Manifest) -> frozenset[str]:
        """What the kit grants: the manifest's permissions as asked, plus the always-granted ones."""
        return frozenset(manifest.permissions) | ALWAYS_GRANTED

    def close(self) -> None:
        """Close every launch, the ZAP handler and the context; remove the private directory."""
        with self._lock:
            launched, self._launched = self._launched, []
        for one in launched:
            one.close()
        self.gate.close()
        self.zctx.destroy(linger=0)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> KitRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
