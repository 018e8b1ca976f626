"""What ``kithost ext status|logs|restart`` show: running hosts' extensions as rich tables or JSON.

The data comes from each running host's ops channel (:mod:`host.exthost.ops`);
this module only selects and formats it. Columns of ``status``: state, pid,
uptime, restarts and the last reason, memory (RSS summed over its processes,
or ``N MiB (cgroup)``: its cgroup's usage, every page once), CPU, handler calls answered
(``handled``) and notify events delivered (``notified``) in columns of their
own, p50/p99 handler latency and its p50 split (``host/transit/ext``: time in
the host, in transit, in the extension; ``-`` for an SDK that does not report
its own time), timeouts, fail-open/closed counts, rejected frames
(``bad frames``: every reason, a frame over the size limit included as
``dropped``) and host calls answered with an error (``call errors``), and
what it is busy with. Below each host's table: the isolation level of its
extensions and, for a level below strong or a layer missing, the exact reason
each missing layer is missing (``sandbox reduced (a, b): bwrap: forced off by
config``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .errors import HostError, UnknownExtensionError
from .exthost.host import runtime_base
from .exthost.ops import OpsClient, RunningHost, find_hosts
from .exthost.stats import SPLIT_PARTS
from .exthost.supervisor import ExtState

__all__ = ["follow_logs", "restart_extension", "running_states", "show_logs", "show_status"]

_NO_HOST = "no running kithost found (start one with `kithost chat` or `kithost run`, or embed ExtensionHost)"


def _hosts(base: Path | None, pid: int | None) -> list[RunningHost]:
    hosts = find_hosts(base or runtime_base())
    if pid is not None:
        hosts = [h for h in hosts if h.pid == pid]
    return hosts


def _collect(base: Path | None, pid: int | None) -> list[tuple[RunningHost, list[dict[str, Any]]]]:
    out = []
    for host in _hosts(base, pid):
        try:
            data = OpsClient(host).call("status")
        except (RuntimeError, OSError):
            continue
        out.append((host, list(data["extensions"]) + list(data.get("failed", []))))
    return out


def _find(name: str, base: Path | None, pid: int | None) -> RunningHost:
    for host, exts in _collect(base, pid):
        if any(e["name"] == name for e in exts):
            return host
    if not _hosts(base, pid):
        raise HostError(_NO_HOST)
    raise UnknownExtensionError(f"no running kithost has an extension named {name!r} (see `kithost ext status`)")


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.1f} ms" if value >= 1000 else f"{value:.0f} µs"


def _uptime(seconds: float) -> str:
    if not seconds:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"


def running_states(base: Path | None = None) -> dict[str, list[str]]:
    """Manifest path → ``["ready in kithost 1234", ...]`` for every running host (for ``ext list``).

    Keyed by the manifest file, not the name: an extension of the same name loaded
    from another checkout or directory is another extension.
    """
    out: dict[str, list[str]] = {}
    for host, exts in _collect(base, None):
        for e in exts:
            out.setdefault(str(e["manifest"]), []).append(f"{e['state']} in kithost {host.pid}")
    return out


def _bad_frames(ext: dict[str, Any]) -> str:
    """Frames refused from the extension, all reasons (``dropped``: cut by libzmq, e.g. over the size limit)."""
    frames = sum(ext.get("frame_errors", {}).values())
    return str(frames) if frames else "-"


def _call_errors(ext: dict[str, Any]) -> str:
    """Host calls answered with an error (refused, stale, malformed)."""
    calls = ext.get("call_errors", 0)
    return str(calls) if calls else "-"


def _memory(res: dict[str, Any]) -> str:
    """Its memory: the RSS summed over its processes, or ``(cgroup)`` its cgroup's usage, each page once."""
    if not res:
        return "-"
    return f"{res['rss_bytes'] / 2**20:.0f} MiB" + (" (cgroup)" if res.get("memory_source") == "cgroup" else "")


def _split(stats: dict[str, Any]) -> str:
    """p50 of the latency split, ``host/transit/ext`` (``-`` when the extension reports no handler time)."""
    split = stats.get("latency_split")
    if not split:
        return "-"
    return "/".join(f"{split[part]['p50_us']:.0f}" for part in SPLIT_PARTS) + " µs"


def show_status(name: str | None, as_json: bool, base: Path | None = None, pid: int | None = None) -> int:
    """Print the status of every extension of every running host (or just ``name``)."""
    found = _collect(base, pid)
    if name is not None:
        found = [(h, [e for e in exts if e["name"] == name]) for h, exts in found]
        found = [(h, exts) for h, exts in found if exts]
        if not found:
            raise UnknownExtensionError(f"no running kithost has an extension named {name!r}")
    if as_json:
        print(json.dumps([{"host_pid": h.pid, "cwd": h.cwd, "extensions": exts} for h, exts in found], indent=2))
        return 0
    if not found:
        print(_NO_HOST)
        return 0
    console = Console() if sys.stdout.isatty() else Console(width=220)  # pipes and files get full rows
    for host, exts in found:
        levels = sorted({e["sandbox"]["level"] for e in exts if e.get("sandbox")})
        sandbox = f" — sandbox {'/'.join(levels)}" if levels else ""
        table = Table(title=f"kithost pid {host.pid} — {host.cwd}{sandbox}", title_justify="left")
        for column in ("extension", "state", "pid", "up", "restarts", "rss", "cpu", "handled", "notified", "p50",
                       "p99", "host/transit/ext", "timeouts", "open/closed", "bad frames", "call errors"):
            table.add_column(column, no_wrap=True)
        table.add_column("last reason", overflow="fold", min_width=20)
        for e in exts:
            if e["state"] == "failed":  # left out at start: its error is all there is
                table.add_row(e["name"], "[red]failed[/]", *["-"] * 14, f"failed to load: {e['error']}")
                continue
            stats, res = e["stats"], e.get("resources") or {}
            busy = e.get("busy")
            # "reason": why it was last restarted while the new process runs ("last_reason" is then routine);
            # hosts older than that field send only "last_reason".
            reason = (e.get("reason") or e["last_reason"]) + (f" (busy in {busy['event']} for {busy['ms']} ms)"
                                                             if busy else "")
            state_style = {ExtState.READY: "green", ExtState.DEGRADED: "yellow", ExtState.RESTARTING: "yellow",
                           ExtState.DEAD: "red"}
            remote = e.get("remote")
            if remote:  # where it runs and the link's last round trip (its p50/p99 above include the network)
                rtt = remote.get("link_rtt_ms")
                where = "" if remote.get("reachable") else " [red]unreachable[/]"
                reason = (f"on {remote['worker']}{where}, link rtt {rtt if rtt is not None else '-'} ms; "
                          f"{reason}")
            table.add_row(
                e["name"], f"[{state_style.get(e['state'], 'white')}]{e['state']}[/]", str(e["pid"] or "-"),
                _uptime(e["uptime_s"]), str(e["restarts"]),
                _memory(res), f"{res['cpu_percent']:.0f}%" if res else "-",
                str(stats["handled"]), str(stats["notified"]),
                _us(stats["latency_p50_us"]), _us(stats["latency_p99_us"]), _split(stats),
                str(stats["timeouts"]), f"{stats['fail_open']}/{stats['fail_closed']}", _bad_frames(e),
                _call_errors(e), reason,
            )
        console.print(table)
        for line in _sandbox_lines(exts):
            console.print(line, markup=False, highlight=False)
    return 0


def _sandbox_lines(exts: list[dict[str, Any]]) -> list[str]:
    """Below a host's table: per isolation level, the extensions at it and why it is not stronger.

    One line per distinct (level, reasons): the reasons are the host probe's (the same for every local
    extension) plus what a launch leaves open (a Node extension without Landlock), so they rarely differ.
    """
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for e in exts:
        sandbox = e.get("sandbox")
        if not sandbox or sandbox.get("where") == "worker":
            continue
        groups.setdefault((sandbox["level"], tuple(sandbox.get("reasons", ()))), []).append(e["name"])
    lines = []
    for (level, reasons), names in groups.items():
        lines.append(f"sandbox {level} ({', '.join(names)})" + (": " + "; ".join(reasons) if reasons else ""))
    return lines


def show_logs(name: str, last: int, as_json: bool, base: Path | None = None, pid: int | None = None) -> int:
    """Print the last ``last`` captured lines of ``name``."""
    host = _find(name, base, pid)
    data = OpsClient(host).call("logs", name=name, last=last)
    if as_json:
        print(json.dumps(data, indent=2))
        return 0
    if not data["lines"]:
        print(_no_output(name, data))
    for _seq, stamp, stream, text in data["lines"]:
        print(f"{time.strftime('%H:%M:%S', time.localtime(stamp))} {name} {stream}: {text}")
    return 0


def _no_output(name: str, data: dict[str, Any]) -> str:
    state = f" ({data['state']})" if data.get("state") else ""
    return f"no output from {name} yet{state}"


def follow_logs(name: str, last: int, base: Path | None = None, pid: int | None = None,
                poll_s: float = 0.5) -> int:
    """Print the last lines, then new ones as they arrive, until Ctrl-C or the host exits."""
    host = _find(name, base, pid)
    client = OpsClient(host)
    after = 0
    first = True
    while True:
        try:
            data = client.call("logs", name=name, after=after, last=last if first else None)
        except RuntimeError:
            print(f"kithost pid {host.pid} is gone", file=sys.stderr)
            return 0
        if first and not data["lines"]:  # on stderr: stdout carries only the extension's lines
            print(f"{_no_output(name, data)}; waiting for it (Ctrl-C to stop)", file=sys.stderr, flush=True)
        first = False
        for seq, stamp, stream, text in data["lines"]:
            after = max(after, seq)
            print(f"{time.strftime('%H:%M:%S', time.localtime(stamp))} {name} {stream}: {text}", flush=True)
        time.sleep(poll_s)


def restart_extension(name: str, base: Path | None = None, pid: int | None = None) -> int:
    """Ask the host running ``name`` to restart it (also revives a ``dead`` extension)."""
    host = _find(name, base, pid)
    OpsClient(host).call("restart", name=name)
    print(f"restarting {name} in kithost pid {host.pid}")
    return 0
