"""``kithost ext reload NAME``: reload one extension in the running host that has it.

The host answers the operator channel's ``reload`` op (:mod:`.ops`) with the
:class:`~host.exthost.reload.ReloadResult` as plain data once the new version
serves (or failed to), so the command waits for up to the host's start and
shutdown deadlines. Exit status: 0 reloaded, 1 the reload failed (the old
version keeps serving; the reason and the new version's last output lines are
printed). A host or extension that cannot be found is a
:class:`~host.errors.HostError` (one line, exit 2, printed by ``cli.main``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from ..config import Deadlines
from ..errors import HostError, UnknownExtensionError
from .host import runtime_base
from .ops import OpsClient, RunningHost, find_hosts

__all__ = ["reload_extension"]


def _host_of(name: str, base: Path | None, pid: int | None) -> RunningHost:
    hosts = [h for h in find_hosts(base or runtime_base()) if pid is None or h.pid == pid]
    if not hosts:
        where = f"with pid {pid}" if pid is not None else "for this user"
        raise HostError(f"no running kithost {where} (start one with `kithost chat` or `kithost run`)")
    for host in hosts:
        try:
            status = OpsClient(host).call("status")
        except (RuntimeError, OSError):
            continue
        if any(e.get("name") == name for e in [*status.get("extensions", ()), *status.get("failed", ())]):
            return host
    raise UnknownExtensionError(f"no running kithost has an extension named {name!r} (see `kithost ext status`)")


def reload_extension(name: str, *, pid: int | None = None, as_json: bool = False, base: Path | None = None,
                     deadlines: Deadlines | None = None, out: TextIO | None = None) -> int:
    """Ask the host running ``name`` to reload it; print the result; 0 if the new version serves, else 1.

    ``deadlines``: the operator's (from the config), to know how long the host may take.
    """
    stream = out or sys.stdout
    host = _host_of(name, base, pid)
    deadlines = deadlines or Deadlines()
    wait_s = (deadlines.start_ms + deadlines.shutdown_ms) / 1000 * 2 + 10  # start, switch, stop the old one
    try:
        data: dict[str, Any] = OpsClient(host, timeout_s=wait_s).call("reload", name=name)
    except RuntimeError as exc:
        raise HostError(f"reload of {name!r} in kithost pid {host.pid}: {exc}") from None
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True), file=stream)
        return 0 if data.get("ok") else 1
    if data.get("ok"):
        changes = "; ".join(data.get("changes") or ()) or "no change in handlers, tools or commands"
        print(f"reloaded {name} in kithost pid {host.pid}: version {data.get('version') or '?'}, "
              f"pid {data.get('pid')} ({changes})", file=stream)
        return 0
    print(f"reload of {name} failed in kithost pid {host.pid}: {data.get('reason')}", file=stream)
    tail = str(data.get("log_tail") or "").rstrip()
    if tail:
        print("  its new version's output ends with:", file=stream)
        for line in tail.splitlines()[-12:]:
            print(f"    {line}", file=stream)
    return 1
