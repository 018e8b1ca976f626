"""The status view of one extension: plain data for ``ext status --json``, the status table and tests.

:func:`extension_status` reads an extension handle's records and never
changes them. Keys (stable; ``kithost ext status --json`` prints them):
``name, version, state, pid, uptime_s, last_exit, restarts, restart_policy,
resources, busy, spare, last_reason, restart_cause, reason, protocol, sdk, granted,
grant_source, sandbox ({level, layers, reasons}), subscriptions, tools, commands,
queued, frame_errors, call_errors, stats, manifest, remote`` (``remote``: ``None``
for a local extension, else ``{worker, extension, reachable, link_rtt_ms,
sandbox}``; its ``sandbox`` has ``where: "worker"``, no layers and no reasons).

``spare``: the warm spare a restart would start from (:mod:`.spare`):
``{pid, waiting}`` (``waiting``: at its secret, imports done), or ``None``.

``sandbox.reasons``: the host probe's reasons, one per missing layer that keeps
the level from the next one up (``bwrap: forced off by config``), then its
caveats (what is missing without lowering the level: no cgroup, no dedicated
uid), and — for this launch — what its layers leave open (a non-Python
runtime without Landlock may start programs: see :attr:`Confined.notes`).

Reasons: ``last_reason`` is the reason of the last state change, which after a
restart is routine ("handshake done"); ``restart_cause`` is why the process was
last replaced ("killed: memory limit 512 MiB (rss 530 MiB)", "restarted by the
operator"; empty if never); ``reason`` is the most informative of the two, for
tables: ``restarted after: <restart_cause>`` while the restarted process runs,
else ``last_reason``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .supervisor import ExtState, restart_cause

if TYPE_CHECKING:
    from .extension import RunningExtension

__all__ = ["extension_status"]


def extension_status(ext: RunningExtension) -> dict[str, Any]:
    """Plain-data status of ``ext`` (see the module doc)."""
    proc = ext.process
    running = proc is not None and proc.alive()
    busy, current, busy_ms = ext.last_pong_info
    declared = ext.declared
    channel = ext.channel
    last_reason = ext.transitions[-1].reason if ext.transitions else ""
    cause = next((restart_cause(t.reason) for t in reversed(ext.transitions) if t.new == ExtState.RESTARTING.value),
                 "")
    return {
        "name": ext.name,
        "version": declared.version or ext.manifest.version,
        "state": ext.state.value,
        "pid": proc.pid if running and proc is not None else None,
        "uptime_s": round(time.monotonic() - proc.started, 3) if running and proc is not None else 0.0,
        "last_exit": ext.last_exit,
        "restarts": ext.restarts,
        "restart_policy": ext.restart_policy.mode,
        "resources": ext.resources.as_dict() if ext.resources is not None else None,
        "busy": {"event": current, "ms": busy_ms} if busy else None,
        "spare": {"pid": spare, "waiting": ext.spare_parked()} if (spare := ext.spare_pid) is not None else None,
        "last_reason": last_reason,
        "restart_cause": cause,
        "reason": _reason(ext.state, last_reason, cause),
        "protocol": declared.protocol,
        "sdk": declared.sdk,
        "granted": sorted(declared.granted),
        "grant_source": ext.grant.source,
        "sandbox": _sandbox(ext),
        "subscriptions": [
            {"event": h.event, "priority": h.priority, "deadline_ms": round((h.deadline_s or 0.0) * 1000),
             "policy": str(h.policy)} for h in declared.handlers
        ],
        "tools": [t["name"] for t in declared.tools],
        "commands": [c["name"] for c in declared.commands],
        "queued": ext.queued(),
        "frame_errors": dict(channel.frame_errors) if channel is not None else {},
        "call_errors": channel.call_errors if channel is not None else 0,
        "stats": ext.stats.snapshot(),
        "manifest": str(ext.manifest.path) if ext.remote is None else "(on its worker)",
        "remote": ext.remote.info() if ext.remote is not None else None,
    }


def _sandbox(ext: RunningExtension) -> dict[str, Any]:
    """The isolation of its process: here (level, layers in force, why not stronger), or as its worker reports it."""
    if ext.remote is not None:
        return {"level": str(ext.remote.info().get("sandbox") or "unknown"), "layers": [], "reasons": [],
                "where": "worker"}
    found = ext.confiner_probe()
    reasons = found.why
    if ext.confined is None:
        return {"level": str(found.level), "layers": [], "reasons": reasons}
    return {"level": str(ext.confined.level), "layers": list(ext.confined.layers),
            "reasons": [*reasons, *ext.confined.notes]}


def _reason(state: ExtState, last_reason: str, cause: str) -> str:
    """The reason a status table shows (see the module doc)."""
    if not cause or not (state.running or state is ExtState.STARTING):
        return last_reason  # never restarted, or the last change is itself the news (restarting, dead, stopped)
    since = cause if cause.startswith("restarted") else f"restarted after: {cause}"
    return f"{last_reason}; {since}" if state is ExtState.DEGRADED else since
