"""Sweeping up after a host that died without cleaning up (``kill -9``, power cut of the terminal...).

While a host lives, its shutdown ladder kills every descendant of every
extension. When the host itself is SIGKILLed, each extension dies with it
(parent-death signal) — but a process an extension started that left its
process group is re-parented to init and would live on. Every extension
process carries ``KITHOST_RUNTIME=<its host's private directory>`` in its
environment, and children inherit it; so the next kithost to start (any
host of the same user) finds such processes and kills them:

* a host directory is *stale* when its ``host.json`` names a pid that no
  longer exists (or it has no ``host.json`` and is older than a minute);
* every process of this user whose environment has ``KITHOST_RUNTIME`` set
  to a stale directory is killed (SIGKILL), then the directory is removed.

A process that scrubbed its own environment escapes this net; the sandbox's
pid namespace (a later layer) closes that gap.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import psutil

__all__ = ["ENV_RUNTIME", "stale_host_dirs", "sweep_orphans"]

log = logging.getLogger("kithost.orphans")

#: Environment variable naming the host directory an extension process belongs to.
ENV_RUNTIME = "KITHOST_RUNTIME"


def stale_host_dirs(base: Path) -> list[Path]:
    """Host directories under ``base`` whose host is gone."""
    stale = []
    for directory in base.glob("h*"):
        meta = directory / "host.json"
        try:
            pid = int(json.loads(meta.read_text())["pid"])
            if not psutil.pid_exists(pid):
                stale.append(directory)
        except (OSError, ValueError, KeyError, TypeError):
            try:
                if time.time() - directory.stat().st_mtime > 60:
                    stale.append(directory)
            except OSError:
                continue
    return stale


def sweep_orphans(base: Path) -> list[int]:
    """Kill processes left behind by dead hosts under ``base``; remove their directories. Returns the pids."""
    stale = {str(d) for d in stale_host_dirs(base)}
    if not stale:
        return []
    uid = os.getuid()
    killed = []
    for proc in psutil.process_iter(["uids"]):
        try:
            if proc.info["uids"] is None or proc.info["uids"].real != uid or proc.pid == os.getpid():
                continue
            if proc.environ().get(ENV_RUNTIME) in stale:
                proc.kill()
                killed.append(proc.pid)
        except psutil.Error:
            continue
    for directory in stale:
        shutil.rmtree(directory, ignore_errors=True)
    if killed:
        log.warning("killed %d process(es) left behind by kithost hosts that died: %s", len(killed), killed)
    return killed
