"""Operator configuration: frozen records with sane defaults, loadable from TOML.

Precedence for a handler's **deadline**: the handler's requested
``deadline_ms`` (or the default for its event: ``hot_ms`` for hot-path
events, else ``default_ms`` by mode) is clamped to ``[min_ms, max_ms]``; an
operator override for ``"<extension>"`` or ``"<extension>:<event>"`` replaces
it (the more specific one wins).

Precedence for a handler's **failure policy**: operator override
(``"<extension>:<event>"``, then ``"<extension>"``) > the handler's declared
policy > the event's default (``closed`` for gate events, ``open`` otherwise).

The config file (``--config FILE``, default ``~/.config/kithost/config.toml``)
mirrors these records::

    [deadlines]
    gate_ms = 1000
    event_budget_ms = 5000

    [policy]
    "permission-gate" = "closed"
    "tool-logger:tool_call" = "open"

    [deadline_overrides]
    "slow-approver:tool_call" = 30000

    [permissions]
    "usage-budget" = ["session"]        # grant exactly these (plus ui/state/events)

    [supervision]
    memory_mb = 512
    hang_ms = 5000

    [restart]
    "flaky-ext" = "never"

    [extension_limits."big-indexer"]    # over [supervision] for one extension
    memory_mb = 4096
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

__all__ = ["Deadlines", "HostConfig", "Limits", "Supervision", "load_config"]

Policy = Literal["open", "closed"]


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Handler deadlines and per-event budgets, in milliseconds."""

    #: Default for gate handlers (they usually decide quickly, but may ask a person).
    gate_ms: int = 1000
    #: Default for chain handlers.
    chain_ms: int = 1000
    #: Default for notify handlers.
    notify_ms: int = 1000
    #: Default for hot-path events (tool_call, tool_result, context_prepare, streaming).
    hot_ms: int = 250
    #: Smallest deadline a handler may ask for.
    min_ms: int = 1
    #: Largest deadline a handler may ask for (without an operator override).
    max_ms: int = 30_000
    #: Total time all handlers of one gate/chain event may take together.
    event_budget_ms: int = 10_000
    #: Largest extra wait for a notify backlog delivered in one batch.
    notify_batch_ms: int = 5_000
    #: How long an extension has from spawn to a finished handshake.
    start_ms: int = 10_000
    #: Shutdown ladder: time for the polite request, then the same for SIGTERM.
    shutdown_ms: int = 2_000
    #: How long an extension-provided tool or slash command may run.
    tool_ms: int = 120_000


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what an extension can send or queue."""

    #: Largest frame accepted from an extension (bytes).
    max_frame: int = 8 * 1024 * 1024
    #: Notify events queued per extension before new ones are dropped (and counted).
    notify_queue: int = 10_000
    #: Most notify events delivered in one batch.
    notify_batch: int = 256
    #: Lines of stderr/stdout kept per extension.
    log_lines: int = 2_000
    #: Longest kept log line (bytes); longer lines are cut and marked.
    log_line_bytes: int = 4_096


@dataclass(frozen=True, slots=True)
class Supervision:
    """Restarts, heartbeats and resource limits (see :mod:`host.exthost.supervisor`)."""

    #: ``on-failure`` (restart after a crash), ``always`` (also after a clean exit), ``never``.
    restart: str = "on-failure"
    #: First restart delay; doubles after each crash up to ``backoff_max_ms``.
    backoff_initial_ms: int = 100
    backoff_max_ms: int = 30_000
    #: This many crashes within ``crash_window_s`` make the extension ``dead`` until restarted by hand.
    crash_limit: int = 5
    crash_window_s: float = 60.0
    #: A run this long counts as stable: the crash count and backoff start over.
    stable_after_s: float = 10.0
    #: Exit statuses that mean "broken extension/config" — never retried.
    no_retry_exit_codes: tuple[int, ...] = (2, 3, 4)
    #: Heartbeat period, and how long without an answer makes a process "hung".
    heartbeat_ms: int = 1_000
    hang_ms: int = 5_000
    #: A handler still running after this long (heartbeats fine) is "stuck": killed and restarted.
    stuck_ms: int = 60_000
    #: How often RSS/CPU/threads/fds/children are sampled.
    watch_ms: int = 1_000
    #: Limits over the extension's whole process tree (``0`` = no limit).
    memory_mb: int = 1_024
    cpu_seconds: float = 0
    max_threads: int = 256
    max_fds: int = 1_024
    max_children: int = 64
    #: A handler timing out this often (per minute) marks the extension ``degraded`` and warns.
    slow_warn_per_min: int = 3


@dataclass(frozen=True, slots=True)
class HostConfig:
    """Everything the operator decides. Immutable; use :func:`dataclasses.replace` to vary."""

    deadlines: Deadlines = field(default_factory=Deadlines)
    limits: Limits = field(default_factory=Limits)
    supervision: Supervision = field(default_factory=Supervision)
    #: Restart policy per extension (``on-failure`` | ``always`` | ``never``), over the manifest's.
    restart: dict[str, str] = field(default_factory=dict)
    #: Resource limits per extension, over ``supervision``'s: name → {memory_mb, cpu_seconds,
    #: max_threads, max_fds, max_children}.
    extension_limits: dict[str, dict[str, float]] = field(default_factory=dict)

    def supervision_for(self, extension: str) -> Supervision:
        """The supervision settings of ``extension`` (its limit overrides applied)."""
        limits = self.extension_limits.get(extension)
        return replace(self.supervision, **limits) if limits else self.supervision  # type: ignore[arg-type]
    #: Failure policy overrides by ``"<ext>"`` or ``"<ext>:<event>"``.
    policy: dict[str, Policy] = field(default_factory=dict)
    #: Deadline overrides (ms) by ``"<ext>"`` or ``"<ext>:<event>"``; not clamped.
    deadline_overrides: dict[str, int] = field(default_factory=dict)
    #: Permissions granted per extension; an extension not listed gets what it asks for.
    permissions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: The state sidecar file (``<session>.ext-state.json``); ``None`` keeps state in memory.
    state_path: Path | None = None
    #: Where private socket directories are made; ``None`` picks a short runtime dir.
    runtime_dir: Path | None = None
    #: Check payloads the application emits against their event schema (only when
    #: someone subscribed, so unsubscribed events stay ~1 µs).
    validate_payloads: bool = True
    #: Also check payloads nobody subscribed to (tests of an embedding application).
    validate_all_payloads: bool = False
    #: Extension search directories, in load order (``-e`` paths come after these).
    search_dirs: tuple[Path, ...] = field(default_factory=lambda: default_search_dirs())



def default_search_dirs() -> tuple[Path, ...]:
    """``$XDG_CONFIG_HOME/kithost/extensions`` (default ``~/.config/...``), then ``./.kithost/extensions``."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return (base / "kithost" / "extensions", Path(".kithost") / "extensions")


def default_config_path() -> Path:
    """``$XDG_CONFIG_HOME/kithost/config.toml``."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "kithost" / "config.toml"


_D = Deadlines()
_L = Limits()


class _DeadlinesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gate_ms: int = Field(default=_D.gate_ms, gt=0)
    chain_ms: int = Field(default=_D.chain_ms, gt=0)
    notify_ms: int = Field(default=_D.notify_ms, gt=0)
    hot_ms: int = Field(default=_D.hot_ms, gt=0)
    min_ms: int = Field(default=_D.min_ms, gt=0)
    max_ms: int = Field(default=_D.max_ms, gt=0)
    event_budget_ms: int = Field(default=_D.event_budget_ms, gt=0)
    notify_batch_ms: int = Field(default=_D.notify_batch_ms, gt=0)
    start_ms: int = Field(default=_D.start_ms, gt=0)
    shutdown_ms: int = Field(default=_D.shutdown_ms, gt=0)
    tool_ms: int = Field(default=_D.tool_ms, gt=0)


class _LimitsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_frame: int = Field(default=_L.max_frame, ge=1024)
    notify_queue: int = Field(default=_L.notify_queue, gt=0)
    notify_batch: int = Field(default=_L.notify_batch, gt=0)
    log_lines: int = Field(default=_L.log_lines, gt=0)
    log_line_bytes: int = Field(default=_L.log_line_bytes, ge=80)


_S = Supervision()
RestartMode = Literal["on-failure", "always", "never"]


class _SupervisionFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    restart: RestartMode = "on-failure"
    backoff_initial_ms: int = Field(default=_S.backoff_initial_ms, gt=0)
    backoff_max_ms: int = Field(default=_S.backoff_max_ms, gt=0)
    crash_limit: int = Field(default=_S.crash_limit, gt=0)
    crash_window_s: float = Field(default=_S.crash_window_s, gt=0)
    stable_after_s: float = Field(default=_S.stable_after_s, gt=0)
    no_retry_exit_codes: tuple[int, ...] = _S.no_retry_exit_codes
    heartbeat_ms: int = Field(default=_S.heartbeat_ms, gt=0)
    hang_ms: int = Field(default=_S.hang_ms, gt=0)
    stuck_ms: int = Field(default=_S.stuck_ms, ge=0)
    watch_ms: int = Field(default=_S.watch_ms, gt=0)
    memory_mb: int = Field(default=_S.memory_mb, ge=0)
    cpu_seconds: float = Field(default=_S.cpu_seconds, ge=0)
    max_threads: int = Field(default=_S.max_threads, ge=0)
    max_fds: int = Field(default=_S.max_fds, ge=0)
    max_children: int = Field(default=_S.max_children, ge=0)
    slow_warn_per_min: int = Field(default=_S.slow_warn_per_min, gt=0)


class _ExtensionLimitsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    memory_mb: int | None = Field(default=None, ge=0)
    cpu_seconds: float | None = Field(default=None, ge=0)
    max_threads: int | None = Field(default=None, ge=0)
    max_fds: int | None = Field(default=None, ge=0)
    max_children: int | None = Field(default=None, ge=0)


class _ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    deadlines: _DeadlinesFile = _DeadlinesFile()
    limits: _LimitsFile = _LimitsFile()
    supervision: _SupervisionFile = _SupervisionFile()
    restart: dict[str, RestartMode] = {}
    extension_limits: dict[str, _ExtensionLimitsFile] = {}
    policy: dict[str, Policy] = {}
    deadline_overrides: dict[str, int] = {}
    permissions: dict[str, list[str]] = {}
    search_dirs: list[str] | None = None


def load_config(path: Path | None = None) -> HostConfig:
    """Read the operator config; a missing default file gives the defaults.

    Raises :class:`ConfigError` naming the file and the bad key.
    """
    explicit = path is not None
    path = path or default_config_path()
    if not path.exists():
        if explicit:
            raise ConfigError(f"{path}: no such config file")
        return HostConfig()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        parsed = _ConfigFile.model_validate(raw)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from exc
    from ext_sdk.hostcalls import PERMISSIONS

    for name, perms in parsed.permissions.items():
        bad = [p for p in perms if p not in PERMISSIONS]
        if bad:
            raise ConfigError(f"{path}: permissions.{name}: unknown {bad}; known: {', '.join(PERMISSIONS)}")
    config = HostConfig(
        deadlines=Deadlines(**parsed.deadlines.model_dump()),
        limits=Limits(**parsed.limits.model_dump()),
        supervision=Supervision(**parsed.supervision.model_dump()),
        restart=dict(parsed.restart),
        extension_limits={name: limits.model_dump(exclude_none=True)
                          for name, limits in parsed.extension_limits.items()},
        policy=dict(parsed.policy),
        deadline_overrides=dict(parsed.deadline_overrides),
        permissions={k: tuple(v) for k, v in parsed.permissions.items()},
    )
    if parsed.search_dirs is not None:
        config = replace(config, search_dirs=tuple(Path(d).expanduser() for d in parsed.search_dirs))
    return config
