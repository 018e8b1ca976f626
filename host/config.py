"""Operator configuration: one typed definition per setting, loadable from TOML.

Each setting is written once, below: its type, default, bounds and ``#:``
comment. The records are frozen pydantic dataclasses: built in code
(``HostConfig(deadlines=replace(Deadlines(), gate_ms=500))``) or read from the
config file by ``load_config``, both checked the same way. The reference of
every key (``docs/configuration.md``) is generated from ``host/config.py`` by
``make docs``; a test keeps the two in sync.

Precedence for a handler's **deadline**: the handler's requested
``deadline_ms`` (or the default for its event: ``[deadlines] hot`` for hot-path
events, else ``gate``/``chain``/``notify`` by mode) is clamped to ``[min, max]``; an
operator override for ``"<extension>"`` or ``"<extension>:<event>"`` replaces
it (the more specific one wins).

Precedence for a handler's **failure policy**: operator override
(``"<extension>:<event>"``, then ``"<extension>"``) > the handler's declared
policy > the event's default (``closed`` for gate events, ``open`` otherwise).

Precedence for an extension's **restart mode** (``HostConfig.restart_mode``):
``[restart]."<extension>"`` > ``[supervision] restart`` (when set) > the
``restart`` key of the extension's manifest > ``on-failure``.

Precedence for what an extension is **granted** (``host.exthost.trust.decide``):
the operator's ``[permissions]."<extension>"`` and ``[access]."<extension>"``
tables, when present, are the grant; otherwise what ``kithost ext trust``
recorded for exactly this content of the extension (its hash); otherwise, with
``[sandbox] trust = "all"``, what the manifest asks; otherwise nothing beyond
the always-granted host calls, and an extension that asks for more does not
start (its error says how to trust it).

In the config file every time is a **duration with a unit** (``"500ms"``,
``"2s"``, ``"1.5m"``, ``"1h"``; also ``us``) under the setting's name without
its unit suffix (``gate_ms`` is ``gate``, ``crash_window_s`` is
``crash_window``, ``cpu_seconds`` is ``cpu_time``); a bare number, or the old
name, is refused with a message naming the key and the unit to write.

The config file (``--config FILE``, default ``~/.config/kithost/config.toml``)
mirrors these records::

    [deadlines]
    gate = "1s"
    event_budget = "5s"

    [policy]
    "permission-gate" = "closed"
    "tool-logger:tool_call" = "open"

    [deadline_overrides]
    "slow-approver:tool_call" = "30s"

    [permissions]
    "usage-budget" = ["session"]        # grant exactly these (plus ui/state/events)

    [supervision]
    memory_mb = 512
    hang = "5s"
    restart = "on-failure"              # every extension, over its manifest

    [restart]
    "flaky-ext" = "never"               # one extension, over everything else

    [extension_limits."big-indexer"]    # over [supervision] for one extension
    memory_mb = 4096

    [access."notes-indexer"]            # what its process may reach (grant; see docs/sandbox.md)
    read = ["~/notes"]
    network = ["api.example.com:443"]

    [remote."gate-on-box2"]             # an extension run by `kithost worker` elsewhere (docs/remote.md)
    worker = "tcp://10.0.0.5:7600"
    key = "~/.config/kithost/keys/box2.key"
    host_key = "~/.config/kithost/keys/agent.key_secret"
    extension = "permission-gate"

    [sandbox]
    allow_weak = false                  # start extensions even when only weak isolation is possible
    disable = []                        # layers to force off: bwrap, landlock, seccomp, cgroup, uid

"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import tomllib
import types
from collections.abc import Mapping, Sequence
from dataclasses import field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin, get_type_hints

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass
from pydantic_core import ErrorDetails

from ext_sdk.events import Mode, Policy, spec_for
from ext_sdk.hooks import DurationError, duration_ms, format_duration
from ext_sdk.hostcalls import PERMISSIONS
from ext_sdk.wire import DEFAULT_MAX_FRAME

from .errors import ConfigError

__all__ = [
    "Access",
    "Deadlines",
    "ExtensionLimits",
    "HostConfig",
    "Limits",
    "Remote",
    "RestartMode",
    "Sandbox",
    "SandboxLayer",
    "Supervision",
    "TrustMode",
    "load_config",
]


class RestartMode(StrEnum):
    """When an extension whose process ended is started again."""

    #: After a crash (an exit status other than 0, a signal, a hang, a broken limit); not after a clean exit.
    ON_FAILURE = "on-failure"
    #: After any exit, a clean one too.
    ALWAYS = "always"
    #: Never: a crashed extension stays ``dead`` until ``kithost ext restart NAME``.
    NEVER = "never"


class SandboxLayer(StrEnum):
    """A confinement layer the host can put around an extension process (see ``docs/sandbox.md``)."""

    #: bubblewrap namespaces: allow-list filesystem, private /tmp, no network, own pid namespace.
    BWRAP = "bwrap"
    #: Landlock: filesystem allow-list, TCP ports, abstract-socket and signal scoping.
    LANDLOCK = "landlock"
    #: seccomp: only unix/netlink sockets, no ptrace, io_uring, mount, namespaces, keyrings.
    SECCOMP = "seccomp"
    #: cgroup memory and pids limits over the whole process tree.
    CGROUP = "cgroup"
    #: A dedicated uid per extension (a root host only).
    UID = "uid"


class TrustMode(StrEnum):
    """What happens to an extension that asks for more than it was granted."""

    #: It does not start until the operator trusts it (``kithost ext trust NAME``, the config, or a prompt).
    ASK = "ask"
    #: Every extension gets what its manifest asks for (development only: says so at start-up).
    ALL = "all"


_NETWORK_TARGET = re.compile(r"^(\*|[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):([1-9][0-9]{0,4})$")


def _network_target(target: str) -> str:
    match = _NETWORK_TARGET.match(target)
    if match is None or int(match.group(2)) > 65535:
        raise ValueError(f"network target {target!r} must be host:port (or *:port), port 1-65535")
    return target


def _known_permission(name: str) -> str:
    if name not in PERMISSIONS:
        close = difflib.get_close_matches(name, PERMISSIONS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown permission {name!r} ({hint}known: {', '.join(PERMISSIONS)})")
    return name


# Bounds, each written once and shared by the settings they apply to.
_Positive = Annotated[int, Field(gt=0)]
_PositiveSeconds = Annotated[float, Field(gt=0)]
#: A resource limit; ``0`` means none.
_Limit = Annotated[int, Field(ge=0)]
_LimitSeconds = Annotated[float, Field(ge=0)]
_Permission = Annotated[str, AfterValidator(_known_permission)]
_UserPath = Annotated[Path, AfterValidator(Path.expanduser)]
_NetworkTarget = Annotated[str, AfterValidator(_network_target)]


def _tcp_endpoint(address: str) -> str:
    host, sep, port = address.removeprefix("tcp://").rpartition(":")
    if not address.startswith("tcp://") or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"worker address {address!r} must be tcp://HOST:PORT, e.g. tcp://10.0.0.5:7600")
    return address


_TcpEndpoint = Annotated[str, AfterValidator(_tcp_endpoint)]

#: Field metadata: set by the program (CLI, session, embedding code), not in the config file.
PROGRAM_ONLY: Final[Mapping[str, bool]] = {"in_file": False}

_RECORD = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True, config=_RECORD)
class Deadlines:
    """Handler deadlines and per-event budgets (``[deadlines]``; attributes in milliseconds)."""

    #: Default for gate handlers (they usually decide quickly, but may ask a person).
    gate_ms: _Positive = 1000
    #: Default for chain handlers.
    chain_ms: _Positive = 1000
    #: Default for notify handlers.
    notify_ms: _Positive = 1000
    #: Default for hot-path events (tool_call, tool_result, context_prepare, streaming).
    hot_ms: _Positive = 250
    #: Smallest deadline a handler may ask for.
    min_ms: _Positive = 1
    #: Largest deadline a handler may ask for (without an operator override).
    max_ms: _Positive = 30_000
    #: Total time all handlers of one gate/chain event may take together.
    event_budget_ms: _Positive = 10_000
    #: Largest extra wait for a notify backlog delivered in one batch.
    notify_batch_ms: _Positive = 5_000
    #: How long an extension has from spawn to a finished handshake.
    start_ms: _Positive = 10_000
    #: Shutdown ladder: time for the polite request, then the same for SIGTERM.
    shutdown_ms: _Positive = 2_000
    #: How long an extension-provided tool or slash command may run.
    tool_ms: _Positive = 120_000


@dataclass(frozen=True, slots=True, config=_RECORD)
class Limits:
    """Bounds on what an extension can send or queue (``[limits]``)."""

    #: Largest frame accepted from an extension (bytes). The SDKs accept frames from the host up to
    #: their own fixed limit of the same default (PROTOCOL.md, size limits).
    max_frame: Annotated[int, Field(ge=1024)] = DEFAULT_MAX_FRAME
    #: Notify events queued per extension before new ones are dropped (and counted).
    notify_queue: _Positive = 10_000
    #: Most notify events delivered in one batch.
    notify_batch: _Positive = 256
    #: Lines of stderr/stdout kept per extension.
    log_lines: _Positive = 2_000
    #: Longest kept log line (bytes); longer lines are cut and marked.
    log_line_bytes: Annotated[int, Field(ge=80)] = 4_096


@dataclass(frozen=True, slots=True, config=_RECORD)
class Supervision:
    """Restarts, heartbeats and resource limits (``[supervision]``; see :mod:`host.exthost.supervisor`)."""

    #: Restart mode of every extension, over each manifest's ``restart``; unset, the manifest decides
    #: (``[restart]."NAME"`` is over both: see :meth:`HostConfig.restart_mode`).
    restart: RestartMode | None = None
    #: Restart delay inside a crash loop (a crash with earlier crashes within ``crash_window``); doubles after
    #: each further crash up to ``backoff_max``. The first crash after a stable run restarts at once.
    backoff_initial_ms: _Positive = 100
    #: Longest restart delay.
    backoff_max_ms: _Positive = 30_000
    #: This many crashes within ``crash_window`` make the extension ``dead`` until restarted by hand.
    crash_limit: _Positive = 5
    #: The window in which ``crash_limit`` crashes are counted.
    crash_window_s: _PositiveSeconds = 60.0
    #: A run this long counts as stable: the crash count and backoff start over (the event-crash
    #: count does not).
    stable_after_s: _PositiveSeconds = 10.0
    #: This many crashes in a row during a handler, each before its process answered any event, make the
    #: extension ``dead`` however far apart they are (it dies on every event; ``0`` = never). An answer resets it.
    event_crash_limit: _Limit = 3
    #: Exit statuses that mean "broken extension/config": never retried (2 usage, 3 broken extension code,
    #: 4 handshake refused, 5 a required sandbox layer could not be put in force).
    no_retry_exit_codes: tuple[int, ...] = (2, 3, 4, 5)
    #: Keep one process of each Python extension started in reserve — a *warm spare*: sandboxed, its
    #: interpreter and SDK loaded, the extension's own code not yet run — so that a crash restarts from it in
    #: milliseconds instead of a cold start. Costs one idle process per extension; ``false``: restarts start cold.
    spare: bool = True
    #: How long an extension serves before its spare is started (a start of many extensions is not slowed
    #: by their spares).
    spare_after_s: _PositiveSeconds = 1.0
    #: Heartbeat period.
    heartbeat_ms: _Positive = 1_000
    #: Without an answer to a heartbeat for this long, a process is "hung": killed and restarted.
    hang_ms: _Positive = 5_000
    #: A handler still running after this long (heartbeats fine) is "stuck": killed and restarted (``"0s"`` = never).
    stuck_ms: Annotated[int, Field(ge=0)] = 60_000
    #: How often RSS/CPU/threads/fds/children are sampled.
    watch_ms: _Positive = 1_000
    #: Largest RSS of the extension's whole process tree, in MiB (``0`` = no limit).
    memory_mb: _Limit = 1_024
    #: Most CPU time the process tree may use (``"0s"`` = no limit).
    cpu_seconds: _LimitSeconds = field(default=0, metadata={"file_key": "cpu_time"})
    #: Most threads in the process tree (``0`` = no limit).
    max_threads: _Limit = 256
    #: Most open file descriptors in the process tree (``0`` = no limit).
    max_fds: _Limit = 1_024
    #: Most child processes (``0`` = no limit).
    max_children: _Limit = 64
    #: A handler timing out this often (per minute) marks the extension ``degraded`` and warns.
    slow_warn_per_min: _Positive = 3


@dataclass(frozen=True, slots=True, config=_RECORD)
class ExtensionLimits:
    """One extension's resource limits (``[extension_limits."NAME"]``); unset keys keep ``[supervision]``'s."""

    #: Over ``[supervision] memory_mb``.
    memory_mb: _Limit | None = None
    #: Over ``[supervision] cpu_time``.
    cpu_seconds: _LimitSeconds | None = field(default=None, metadata={"file_key": "cpu_time"})
    #: Over ``[supervision] max_threads``.
    max_threads: _Limit | None = None
    #: Over ``[supervision] max_fds``.
    max_fds: _Limit | None = None
    #: Over ``[supervision] max_children``.
    max_children: _Limit | None = None


@dataclass(frozen=True, slots=True, config=_RECORD)
class Access:
    """What an extension's process may reach beyond its own files (a manifest's ``[access]`` asks,
    the operator's ``[access."NAME"]`` grants). Enforced by the sandbox layers in force."""

    #: ``host:port`` targets it may connect to over TCP (empty: no network at all). With network granted
    #: the process shares the host's network; Landlock (ABI 4+) limits connections to these ports.
    network: tuple[_NetworkTarget, ...] = ()
    #: Paths it may read (besides its own directory and the runtime it needs).
    read: tuple[_UserPath, ...] = ()
    #: Paths it may write (besides its private work directory).
    write: tuple[_UserPath, ...] = ()
    #: Whether it may start other programs.
    processes: bool = False

    @property
    def empty(self) -> bool:
        """Asks for nothing beyond the default confinement."""
        return not (self.network or self.read or self.write or self.processes)


@dataclass(frozen=True, slots=True, config=_RECORD)
class Sandbox:
    """How extensions are confined and trusted (``[sandbox]``; see ``docs/sandbox.md``)."""

    #: Start extensions even when the machine gives only weak isolation (no namespaces, no Landlock).
    allow_weak: bool = False
    #: Layers to force off (to test fallbacks, or where one misbehaves).
    disable: tuple[SandboxLayer, ...] = ()
    #: What happens to an extension that asks for more than it was granted.
    trust: TrustMode = TrustMode.ASK
    #: Where ``kithost ext trust`` records its grants (default ``$XDG_DATA_HOME/kithost/trust.json``).
    trust_file: _UserPath | None = None
    #: Largest file an extension may write, in MiB (``RLIMIT_FSIZE``; ``0`` = no limit). Per file: an
    #: extension that needs large files asks for an ``[access] write`` path and the operator raises this.
    max_file_mb: _Limit = 64


@dataclass(frozen=True, slots=True, config=_RECORD)
class Remote:
    """One extension run by a remote worker (``[remote."NAME"]``; see ``docs/remote.md``). The host connects
    to the worker; nothing listens on the host for it."""

    #: The worker's link address, ``tcp://HOST:PORT`` (what its ``kithost worker --listen`` says).
    worker: _TcpEndpoint
    #: The worker's public key: its ``.key`` file (from ``kithost keys new``) or the key's 40 Z85 characters.
    key: str
    #: This host's secret key file (``NAME.key_secret``); its public key must be on the worker's ``--allow`` list.
    host_key: _UserPath
    #: The extension's name on the worker (default: this table's name, which is its name on this host).
    extension: str | None = None


def default_search_dirs() -> tuple[Path, ...]:
    """``$XDG_CONFIG_HOME/kithost/extensions`` (default ``~/.config/...``), then ``./.kithost/extensions``."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return (base / "kithost" / "extensions", Path(".kithost") / "extensions")


def data_dir() -> Path:
    """``$XDG_DATA_HOME/kithost`` (default ``~/.local/share/kithost``): sessions, trust, chat history."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kithost"


def default_config_path() -> Path:
    """``$XDG_CONFIG_HOME/kithost/config.toml``."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "kithost" / "config.toml"


@dataclass(frozen=True, slots=True, config=_RECORD)
class HostConfig:
    """Everything the operator decides. Immutable; use :func:`dataclasses.replace` to vary."""

    #: Handler deadlines and per-event budgets.
    deadlines: Deadlines = field(default_factory=Deadlines)
    #: Bounds on what an extension can send or queue.
    limits: Limits = field(default_factory=Limits)
    #: Restarts, heartbeats and resource limits of every extension.
    supervision: Supervision = field(default_factory=Supervision)
    #: Restart mode per extension, over ``[supervision] restart`` and the manifest's ``restart``.
    restart: dict[str, RestartMode] = field(default_factory=dict)
    #: Resource limits per extension: each key set replaces the same key of ``[supervision]`` for it.
    extension_limits: dict[str, ExtensionLimits] = field(default_factory=dict)
    #: Failure policy overrides by ``"<ext>"`` or ``"<ext>:<event>"``.
    policy: dict[str, Policy] = field(default_factory=dict)
    #: Deadline overrides (durations, such as ``"30s"``) by ``"<ext>"`` or ``"<ext>:<event>"``; not clamped.
    deadline_overrides: dict[str, _Positive] = field(default_factory=dict)
    #: Host-call permissions granted per extension (names as in a manifest's ``permissions``); an
    #: extension listed here or in ``access`` is granted exactly what these two tables say.
    permissions: dict[str, tuple[_Permission, ...]] = field(default_factory=dict)
    #: What each extension's process may reach, granted per extension (see :class:`Access`).
    access: dict[str, Access] = field(default_factory=dict)
    #: Confinement and trust.
    sandbox: Sandbox = field(default_factory=Sandbox)
    #: Extension search directories, in load order (``-e`` paths come after these).
    search_dirs: tuple[_UserPath, ...] = field(default_factory=default_search_dirs)
    #: Extensions run by remote workers, by their name on this host (loaded after the local ones).
    remote: dict[str, Remote] = field(default_factory=dict)
    #: Extensions not to load, by name, even when found or named with ``-e`` (the CLI's ``--disable`` adds to it).
    disabled: tuple[str, ...] = ()
    #: Per extension: must the agent refuse to start without it when it fails to load? Unset: required when
    #: its manifest subscribes to a gate event whose failure policy is ``closed`` (see :meth:`is_required`).
    required: dict[str, bool] = field(default_factory=dict)
    #: Extension options (kit's ``RegisterOption``), by option name: string values. An option resolves from
    #: the value an extension set at run time, then ``KITHOST_OPT_<NAME>``, then this table, then its default.
    options: dict[str, str] = field(default_factory=dict)
    #: The state sidecar file (``<session>.ext-state.json``); ``None`` keeps state in memory.
    state_path: Path | None = field(default=None, metadata=PROGRAM_ONLY)
    #: Where private socket directories are made; ``None`` picks a short runtime dir.
    runtime_dir: Path | None = field(default=None, metadata=PROGRAM_ONLY)
    #: Check payloads the application emits against their event schema (only when
    #: someone subscribed, so unsubscribed events stay ~1 µs).
    validate_payloads: bool = field(default=True, metadata=PROGRAM_ONLY)
    #: Also check payloads nobody subscribed to (tests of an embedding application).
    validate_all_payloads: bool = field(default=False, metadata=PROGRAM_ONLY)

    def supervision_for(self, extension: str) -> Supervision:
        """The supervision settings of ``extension`` (its ``[extension_limits]`` applied)."""
        limits = self.extension_limits.get(extension)
        if limits is None:
            return self.supervision
        changes = {f.name: value for f in dataclasses.fields(limits)
                   if (value := getattr(limits, f.name)) is not None}
        return dataclasses.replace(self.supervision, **changes) if changes else self.supervision

    def is_required(self, extension: str, events: Sequence[str]) -> bool:
        """Whether the agent must not start without ``extension`` (``events``: its manifest's).

        ``[required]."<extension>"`` when set; otherwise required when one of its events is a gate
        (``tool_call``, ``input``, ``before_*``) whose policy for it is ``closed`` — so tool calls are
        never left unchecked because a checker failed to load.
        """
        explicit = self.required.get(extension)
        if explicit is not None:
            return explicit
        for event in events:
            spec = spec_for(event)
            if spec is None or spec.mode is not Mode.GATE:
                continue
            policy = self.policy.get(f"{extension}:{event}") or self.policy.get(extension) or spec.default_policy
            if Policy(policy) is Policy.CLOSED:
                return True
        return False

    def restart_mode(self, extension: str, manifest_default: RestartMode | str | None = None) -> RestartMode:
        """When ``extension`` is started again after its process ended; the first of these that is set:

        1. ``[restart]."<extension>"``: the operator, for this extension;
        2. ``[supervision] restart``: the operator, for every extension;
        3. ``manifest_default``: the ``restart`` key of the extension's manifest (its author's choice);
        4. ``on-failure``.
        """
        mode = (self.restart.get(extension) or self.supervision.restart or manifest_default
                or RestartMode.ON_FAILURE)
        return RestartMode(mode)


#: Reads the config file's tables into a :class:`HostConfig`, with the same checks as building one in code.
_FILE: Final = TypeAdapter(HostConfig)
#: Fields the config file may not set.
_NOT_IN_FILE: Final = frozenset(f.name for f in dataclasses.fields(HostConfig) if f.metadata == PROGRAM_ONLY)


def load_config(path: Path | None = None) -> HostConfig:
    """Read the operator config; a missing default file gives the defaults.

    Raises :class:`ConfigError` naming the file, each bad key and what it must be.
    """
    explicit = path is not None
    path = path or default_config_path()
    if not path.exists():
        if explicit:
            raise ConfigError(f"{path}: no such config file")
        return HostConfig()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    problems = [f"{key!r} is set by the program, not in the config file" for key in raw if key in _NOT_IN_FILE]
    raw = _from_file(raw, problems)
    try:
        config = _FILE.validate_python({k: v for k, v in raw.items() if k not in _NOT_IN_FILE})
    except ValidationError as exc:
        problems += [_in_words(error) for error in exc.errors()]
    if problems:
        raise ConfigError("\n".join(f"{path}: {problem}" for problem in problems))
    return config


# ---- durations: the file writes "500ms"/"2s" under the key without its unit suffix


def file_key(f: dataclasses.Field[Any]) -> tuple[str, str | None]:
    """The config file's key for field ``f`` and, for a time, the unit of its attribute (``"ms"`` or ``"s"``).

    ``gate_ms`` → ``("gate", "ms")``, ``crash_window_s`` → ``("crash_window", "s")``, a ``file_key`` in the
    field's metadata wins (``cpu_seconds`` → ``("cpu_time", "s")``); any other field keeps its name.
    """
    name = f.name
    unit = "ms" if name.endswith("_ms") else "s" if name.endswith(("_s", "_seconds")) else None
    if "file_key" in f.metadata:
        return str(f.metadata["file_key"]), unit
    if unit is None:
        return name, None
    return name[: -len("_ms")] if unit == "ms" else name[: -len("_s")], unit


#: Tables of the file whose values are all times in ms (``[deadline_overrides]``).
_DURATION_MAPS: Final = {"deadline_overrides": "ms"}


def _to_unit(value: object, what: str, unit: str) -> float | int:
    ms = duration_ms(value, what, unit)
    if unit == "s":
        return ms / 1000
    return int(ms) if float(ms).is_integer() else ms  # a fraction of a ms stays a float: refused as "an integer"


def _record_from_file(record: Any, raw: object, table: str, problems: list[str]) -> object:
    """``raw`` (one table of the file) with its duration keys turned into the record's attributes."""
    if not isinstance(raw, dict) or not dataclasses.is_dataclass(record):
        return raw
    out = dict(raw)
    for f in dataclasses.fields(record):
        key, unit = file_key(f)
        if unit is None or key == f.name:
            continue
        if f.name in out:  # the old key with its unit in the name
            value = out.pop(f.name)
            shown = f"{value}{unit}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "..."
            problems.append(f"unknown key {f.name!r} in {table} (did you mean {key!r}? times take a unit: "
                            f"{key} = \"{shown}\")")
        if key in out:
            value = out.pop(key)
            if value is None:
                continue
            try:
                out[f.name] = _to_unit(value, f"{table} {_key(key)}", unit)
            except DurationError as exc:
                problems.append(str(exc))
    return out


def _from_file(raw: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The file's tables with durations parsed and keys renamed to :class:`HostConfig`'s attributes."""
    hints = get_type_hints(HostConfig, include_extras=True)
    out = dict(raw)
    for name, value in raw.items():
        tp = _unwrap(hints.get(name))
        if dataclasses.is_dataclass(tp):
            out[name] = _record_from_file(tp, value, _table([name]), problems)
        elif get_origin(tp) is dict and isinstance(value, dict):
            item = _unwrap(get_args(tp)[1])
            if dataclasses.is_dataclass(item):
                out[name] = {k: _record_from_file(item, v, _table([name, k]), problems) for k, v in value.items()}
            elif name in _DURATION_MAPS:
                converted = {}
                for k, v in value.items():
                    try:
                        converted[k] = _to_unit(v, f"{_table([name])} {_key(k)}", _DURATION_MAPS[name])
                    except DurationError as exc:
                        problems.append(str(exc))
                out[name] = converted
    return out


def _field_at(loc: Sequence[int | str]) -> dataclasses.Field[Any] | None:
    """The record field at ``loc`` (``None`` when ``loc`` does not end at a record's field)."""
    if not loc or not isinstance(loc[-1], str):
        return None
    parent = _type_at(loc[:-1])
    if not dataclasses.is_dataclass(parent):
        return None
    return next((f for f in dataclasses.fields(parent) if f.name == loc[-1]), None)


# ---- config errors in words ("[deadlines] gate must be greater than 0 (got "0ms")")

_EXPECTED: Final = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "a string", "path_type": "a path (a string)",
    "dict_type": "a table", "dataclass_type": "a table", "dataclass_exact_type": "a table",
    "list_type": "a list", "tuple_type": "a list",
}


def _in_words(error: ErrorDetails) -> str:
    """One validation error as a sentence naming the table and key."""
    loc, kind, got = error["loc"], error["type"], error["input"]
    ctx = error.get("ctx") or {}
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        name, parent = str(loc[-1]), loc[:-1]
        known = _keys_of(_type_at(parent))
        what = "table" if isinstance(got, dict) else "key"
        where = f" in {_table(parent)}" if parent else ""
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})" if known else ""
        return f"unknown {what} {name!r}{where}{hint}"
    if kind == "value_error":  # our own validators' words (they name the bad value)
        return f"{_subject([p for p in loc if isinstance(p, str)])}: {ctx.get('error', error['msg'])}"
    subject, hint = _subject(loc), ""
    at = _field_at(loc)
    unit = file_key(at)[1] if at is not None else None
    if unit is None and len(loc) == 2 and loc[0] in _DURATION_MAPS:
        unit = _DURATION_MAPS[str(loc[0])]
    if unit is not None and isinstance(got, (int, float)) and not isinstance(got, bool):
        got = format_duration(got * (1000 if unit == "s" else 1))
    if kind == "greater_than":
        expected = f"greater than {ctx['gt']}"
    elif kind == "greater_than_equal":
        expected = f"at least {ctx['ge']}"
    elif kind in ("enum", "literal_error"):
        choices = _choices(_type_at(loc))
        expected = "one of " + ", ".join(json.dumps(c) for c in choices)
        close = difflib.get_close_matches(str(got), choices, n=1)
        hint = f"; did you mean {json.dumps(close[0])}?" if close else ""
    else:
        expected = _EXPECTED.get(kind, "")
    if not expected:  # a kind not translated yet: pydantic's words, still naming the key
        return f"{subject}: {error['msg'][0].lower()}{error['msg'][1:]} (got {_show(got)})"
    return f"{subject} must be {expected} (got {_show(got)}{hint})"


def _subject(loc: Sequence[int | str]) -> str:
    """``[deadlines] gate``, ``[extension_limits.x] memory_mb``, ``search_dirs (item 2)`` (the file's keys)."""
    keys = [str(p) for p in loc if isinstance(p, str)]
    at = _field_at(loc)
    if at is not None and keys:
        keys[-1] = file_key(at)[0]
    items = [p for p in loc if isinstance(p, int)]
    head = f"{_table(keys[:-1])} {_key(keys[-1])}" if len(keys) > 1 else _key(keys[0]) if keys else "the file"
    return head + (f" (item {items[0] + 1})" if items else "")


def _table(keys: Sequence[int | str]) -> str:
    return "[" + ".".join(_key(str(k)) for k in keys) + "]"


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    try:
        text = json.dumps(value)
    except TypeError:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unwrap(tp: Any) -> Any:
    """``Annotated[X, ...]`` → ``X``; ``X | None`` → ``X``."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _type_at(loc: Sequence[int | str]) -> Any:
    """The declared type of the value at ``loc`` (a table's record, a dict's values, a list's items)."""
    tp: Any = HostConfig
    for part in loc:
        tp = _unwrap(tp)
        if dataclasses.is_dataclass(tp) and isinstance(part, str):
            tp = get_type_hints(tp, include_extras=True).get(part)
        elif get_origin(tp) in (dict, tuple, list):
            tp = get_args(tp)[-1] if get_origin(tp) is dict else get_args(tp)[0]
        else:
            return None
    return _unwrap(tp)


def _keys_of(tp: Any) -> list[str]:
    """The keys a table of type ``tp`` accepts in the file."""
    if not dataclasses.is_dataclass(tp):
        return []
    return [file_key(f)[0] for f in dataclasses.fields(tp) if f.metadata != PROGRAM_ONLY]


def _choices(tp: Any) -> list[str]:
    if isinstance(tp, type) and issubclass(tp, Enum):
        return [str(member.value) for member in tp]
    if get_origin(tp) is Literal:
        return [str(a) for a in get_args(tp)]
    return []
