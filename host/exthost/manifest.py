"""``extension.toml``: the manifest that sits beside an extension's code.

Example (Python)::

    name = "permission-gate"
    version = "1.0.0"
    description = "Blocks dangerous bash commands."
    runtime = "python"              # python | node | command
    main = "permission_gate.py"     # file run by the runtime, relative to this manifest
    events = ["tool_call"]          # what it subscribes to (checked against its handshake)
    permissions = ["conversation"]  # asked for; the operator grants
    restart = "on-failure"          # on-failure | always | never (the operator may override)
    [env]                           # the extension's own settings (the host's env never leaks in)
    GATE_MODE = "strict"
    [access]                        # what its process may reach beyond its own files (default: nothing)
    network = ["api.github.com:443"]
    read = ["~/notes"]
    write = []
    processes = false               # may it start other programs

Other agents' hook scripts (``docs/hooks.md``) run through the hook adapter:
``main = "hooks_adapter.py"`` and a ``[hooks]`` table, validated here with
the adapter's own rules (:func:`ext_sdk.hooks.load_hooks`: every hook
``timeout`` is a duration with a unit, ``"5s"``; a bare number is refused
naming the unit to add), and its events must be among ``events``::

    [access]
    processes = true                # the adapter starts each hook command
    [hooks]
    format = "claude"               # claude | gemini | codex
    [[hooks.handlers]]
    event = "PreToolUse"
    matcher = "Bash"
    command = "$KITHOST_EXTENSION_DIR/guard.sh"
    timeout = "5s"

For any other language use ``runtime = "command"`` and
``command = ["./my-ext", "--flag"]`` (relative paths resolve against the
manifest's directory). The handshake must not subscribe to events the
manifest does not list: the manifest is what the operator reviewed.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ext_sdk.events import EVENTS, is_custom
from ext_sdk.hooks import HooksConfig, HooksConfigError, load_hooks
from ext_sdk.hostcalls import PERMISSIONS

from ..config import Access, RestartMode
from ..errors import ManifestError

__all__ = ["MANIFEST_NAME", "Manifest", "load_manifest"]

#: File name of a manifest.
MANIFEST_NAME = "extension.toml"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class _ManifestFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    version: str = "0.0.0"
    description: str = ""
    runtime: Literal["python", "node", "command"] = "python"
    main: str | None = None
    command: list[str] | None = Field(default=None, min_length=1)
    events: list[str] = []
    permissions: list[str] = []
    restart: RestartMode = RestartMode.ON_FAILURE
    env: dict[str, str] = {}
    access: Access = Access()
    hooks: dict[str, Any] | None = None

    @field_validator("hooks")
    @classmethod
    def _hooks(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            try:
                load_hooks(v)
            except HooksConfigError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k) or k.startswith("KITHOST_")]
        if bad:
            raise ValueError(f"invalid or reserved variable name(s) {bad}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("use lowercase letters, digits, '.', '_' or '-' (at most 63), "
                             "starting with a letter or digit")
        return v

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        bad = [e for e in v if e not in EVENTS and not is_custom(e)]
        if bad:
            raise ValueError(f"unknown event(s) {bad}")
        return v

    @field_validator("permissions")
    @classmethod
    def _permissions(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if p not in PERMISSIONS]
        if bad:
            raise ValueError(f"unknown permission(s) {bad}; known: {', '.join(PERMISSIONS)}")
        return v


@dataclass(frozen=True, slots=True)
class Manifest:
    """A validated manifest."""

    #: Extension name (unique per host).
    name: str
    version: str
    description: str
    #: ``python``, ``node`` or ``command``.
    runtime: str
    #: Resolved path of the file the runtime runs (python/node).
    main: Path | None
    #: Command for ``runtime = "command"`` (relative paths resolved).
    command: tuple[str, ...]
    #: Events the extension may subscribe to.
    events: tuple[str, ...]
    #: Permissions asked for.
    permissions: tuple[str, ...]
    #: Restart policy the author suggests (the operator's config overrides it).
    restart: RestartMode
    #: Extra environment variables for the extension (its own settings; never the host's).
    env: dict[str, str]
    #: What its process asks to reach beyond its own files (the operator grants).
    access: Access
    #: Directory holding the manifest (the extension's working files).
    directory: Path
    #: The manifest file itself.
    path: Path
    #: The ``[hooks]`` table run by the hook adapter (``docs/hooks.md``), or ``None``.
    hooks: HooksConfig | None = None


def load_manifest(path: Path) -> Manifest:
    """Read and validate a manifest; ``path`` may be the file or its directory.

    Raises :class:`ManifestError` naming the file and the problem.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"{path}: no such file (an extension needs an {MANIFEST_NAME})") from exc
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from exc
    try:
        m = _ManifestFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "manifest"
        message = first["msg"].removeprefix("Value error, ")
        if where == "hooks":  # the adapter's message names the entry and key itself
            raise ManifestError(f"{path}: {message}") from exc
        raise ManifestError(f"{path}: {where}: {first['msg']}") from exc
    directory = path.parent.resolve()
    main: Path | None = None
    command: tuple[str, ...] = ()
    if m.runtime in ("python", "node"):
        if not m.main:
            raise ManifestError(f"{path}: runtime {m.runtime!r} needs main = \"<file>\"")
        main = (directory / m.main).resolve()
        if not main.is_file():
            raise ManifestError(f"{path}: main file {m.main!r} does not exist")
    else:
        if not m.command:
            raise ManifestError(f"{path}: runtime 'command' needs command = [\"<program>\", ...]")
        program = m.command[0]
        resolved = str((directory / program).resolve()) if program.startswith(("./", "../")) else program
        command = (resolved, *m.command[1:])
    hooks = load_hooks(m.hooks) if m.hooks is not None else None
    if hooks is not None:
        missing = [e for e in hooks.kithost_events if e not in m.events]
        if missing:
            raise ManifestError(f"{path}: events must list {missing}: the [hooks] handlers run on them")
        if not m.access.processes:
            raise ManifestError(f"{path}: [hooks] needs [access] processes = true (the adapter starts each hook "
                                f"command)")
    return Manifest(
        name=m.name,
        version=m.version,
        description=m.description,
        runtime=m.runtime,
        main=main,
        command=command,
        events=tuple(m.events),
        permissions=tuple(m.permissions),
        restart=m.restart,
        env=dict(m.env),
        access=m.access,
        directory=directory,
        path=path.resolve(),
        hooks=hooks,
    )
