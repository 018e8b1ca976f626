"""``Extension``: what an extension file declares — handlers, tools, commands — and who it is.

An extension is a plain Python file that creates one :class:`Extension` and
registers handlers on it::

    from ext_sdk import Block, Extension

    ext = Extension()   # name, version and permissions come from extension.toml

    @ext.on("tool_call", priority=10, deadline_ms=200, policy="closed")
    def gate(event, ctx):
        if "rm -rf" in event.input:
            return Block("dangerous command")

Identity: the manifest (``extension.toml``) is its one source. ``Extension()``
reads ``name``, ``version`` and ``permissions`` from the manifest of the file
that creates it — the first ``extension.toml`` in that file's directory or
above it (the extension's folder; the same under the host and under
:class:`~ext_sdk.testing.FakeHost`), or the one given as ``manifest=``. Code
may restate any of them (``Extension("gate", version="1.0.0")``); a restated
value is sent as written and the host refuses the handshake when it differs
from the manifest, saying which. Without a manifest the name must be given
(version ``0.0.0`` and no permission are the defaults, as in a manifest).

Ordering rule: the host runs handlers by priority (lower first), then by
extension load order, then by registration order within the extension.
Everything declared here is sent in the handshake (``hello``) and nothing can
be registered after it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .events import EVENTS, Policy, custom_event_name, is_custom
from .hostcalls import PERMISSIONS

__all__ = ["MANIFEST_FILE", "CommandDef", "Extension", "Handler", "Subscription", "ToolDef", "find_manifest",
           "read_identity"]

#: A handler: ``fn(event, ctx) -> result | None``.
Handler = Callable[[Any, Any], Any]
F = TypeVar("F", bound=Callable[..., Any])

#: Default handler priority (kit's SDK hooks: high=0, normal=50, low=100).
DEFAULT_PRIORITY = 50


@dataclass(frozen=True, slots=True)
class Subscription:
    """One registered handler."""

    event: str
    fn: Handler
    priority: int = DEFAULT_PRIORITY
    deadline_ms: int | None = None
    #: Failure policy asked for; ``None``: the event's default.
    policy: Policy | None = None

    def declaration(self) -> dict[str, Any]:
        """The handshake entry for this subscription."""
        out: dict[str, Any] = {"event": self.event, "priority": self.priority}
        if self.deadline_ms is not None:
            out["deadline_ms"] = self.deadline_ms
        if self.policy is not None:
            out["policy"] = self.policy.value
        return out


@dataclass(frozen=True, slots=True)
class ToolDef:
    """A tool the extension provides: ``fn(args: dict, ctx) -> str``."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True, slots=True)
class CommandDef:
    """A slash command: ``fn(args: str, ctx) -> str | None``."""

    name: str
    description: str
    fn: Callable[[str, Any], Any]


#: File name of the manifest beside an extension's code (``host.exthost.manifest.MANIFEST_NAME``).
MANIFEST_FILE = "extension.toml"
#: How many directories above the defining file are searched for the manifest.
_MANIFEST_DEPTH = 4


def _defining_file() -> Path | None:
    """The source file of the code that called ``Extension(...)`` (first frame outside ext_sdk)."""
    frame = sys._getframe(1)
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        filename = frame.f_code.co_filename
        if not module.startswith("ext_sdk") and not filename.startswith("<"):
            return Path(filename)
        frame = frame.f_back  # type: ignore[assignment]
    return None


def find_manifest(start: Path) -> Path | None:
    """The first ``extension.toml`` in ``start``'s directory (or ``start`` itself) and above, or ``None``."""
    directory = start if start.is_dir() else start.parent
    for candidate in [directory, *directory.parents][:_MANIFEST_DEPTH + 1]:
        path = candidate / MANIFEST_FILE
        if path.is_file():
            return path
    return None


def read_identity(path: Path) -> tuple[str, str, list[str]]:
    """``(name, version, permissions)`` of the manifest at ``path`` (defaults as the host's: version
    ``0.0.0``, no permission); ``ValueError`` naming the file when it cannot say."""
    import tomllib  # only an extension that leaves its identity to the manifest pays for it

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the manifest: {exc}") from None
    name, version, permissions = raw.get("name"), raw.get("version", "0.0.0"), raw.get("permissions", [])
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: the manifest has no name")
    if not isinstance(version, str):
        raise ValueError(f"{path}: version must be a string")
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        raise ValueError(f"{path}: permissions must be a list of strings")
    return name, version, list(permissions)


class Extension:
    """The declaration of one extension. Create exactly one per extension file (identity: module doc)."""

    def __init__(self, name: str | None = None, version: str | None = None,
                 permissions: Sequence[str] | None = None, *, manifest: str | Path | None = None) -> None:
        path: Path | None = None
        if name is None or version is None or permissions is None:
            where = Path(manifest) if manifest is not None else _defining_file()
            path = find_manifest(where.resolve()) if where is not None else None
            if path is None and name is None:
                raise ValueError(f"no {MANIFEST_FILE} found beside {where or 'the extension'} to read its name "
                                 "from; pass manifest=PATH or give the name")
            # no manifest (code used on its own): the host's defaults, version 0.0.0 and no permission
            from_file = read_identity(path) if path is not None else (str(name), "0.0.0", [])
            name = from_file[0] if name is None else name
            version = from_file[1] if version is None else version
            permissions = from_file[2] if permissions is None else permissions
        #: The extension's name (the manifest's).
        self.name: str = name
        #: Its version (the manifest's).
        self.version: str = version
        #: Permissions it asks for (the manifest's).
        self.permissions: list[str] = list(permissions)
        #: The manifest the identity was read from (``None``: every field was given).
        self.manifest: Path | None = path
        self.subscriptions: list[Subscription] = []
        self.tools: list[ToolDef] = []
        self.commands: list[CommandDef] = []
        unknown = [p for p in self.permissions if p not in PERMISSIONS]
        if unknown:
            raise ValueError(f"unknown permission(s) {unknown}; known: {', '.join(PERMISSIONS)}")

    def __repr__(self) -> str:
        return f"Extension(name={self.name!r}, version={self.version!r}, permissions={self.permissions!r})"

    def on(
        self,
        event: str,
        fn: Handler | None = None,
        *,
        priority: int = DEFAULT_PRIORITY,
        deadline_ms: int | None = None,
        policy: Policy | str | None = None,
    ) -> Any:
        """Register ``fn`` for ``event``; usable as ``ext.on(name, fn)`` or ``@ext.on(name)``.

        ``deadline_ms`` asks for a deadline (the host clamps it to the
        operator's bounds); ``policy`` is ``Policy.OPEN`` or ``"open"`` (skip
        this handler on failure), ``Policy.CLOSED`` or ``"closed"``
        (block/cancel on failure) — :class:`~ext_sdk.events.Policy`; the
        default depends on the event's mode. Raises :class:`ValueError` for
        an unknown event, policy or deadline.
        """
        if event not in EVENTS and not is_custom(event):
            raise ValueError(f"unknown event {event!r}; see ext_sdk.events.EVENTS or use 'custom:<name>'")
        if policy is not None and policy not in tuple(Policy):
            raise ValueError(f"policy must be {' or '.join(map(repr, map(str, Policy)))}, not {policy!r}")
        chosen = None if policy is None else Policy(policy)
        if deadline_ms is not None and (type(deadline_ms) is not int or deadline_ms <= 0):
            raise ValueError(f"deadline_ms must be a positive int, not {deadline_ms!r}")

        def register(handler: F) -> F:
            self.subscriptions.append(Subscription(event, handler, priority, deadline_ms, chosen))
            return handler

        return register if fn is None else register(fn)  # type: ignore[arg-type]

    def on_custom(self, name: str, fn: Handler | None = None, *, priority: int = DEFAULT_PRIORITY) -> Any:
        """Register ``fn`` for custom event ``name`` (emitted by another extension's ``ctx.emit``)."""
        return self.on(custom_event_name(name), fn, priority=priority)

    def tool(self, name: str, description: str, parameters: dict[str, Any] | None = None) -> Callable[[F], F]:
        """Register a tool for the model; the decorated function gets ``(args, ctx)``."""

        def register(fn: F) -> F:
            params = parameters if parameters is not None else {"type": "object", "properties": {}}
            self.tools.append(ToolDef(name, description, params, fn))
            return fn

        return register

    def command(self, name: str, description: str = "") -> Callable[[F], F]:
        """Register a slash command; the decorated function gets ``(args, ctx)``."""

        def register(fn: F) -> F:
            self.commands.append(CommandDef(name.lstrip("/"), description, fn))
            return fn

        return register

    def hello_fields(self) -> dict[str, Any]:
        """Everything this extension declares, as handshake fields."""
        return {
            "name": self.name,
            "version": self.version,
            "subscriptions": [s.declaration() for s in self.subscriptions],
            "tools": [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in self.tools],
            "commands": [{"name": c.name, "description": c.description} for c in self.commands],
            "permissions": list(self.permissions),
        }
