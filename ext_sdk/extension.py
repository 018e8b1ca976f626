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
Under a host, ``Extension()`` without ``manifest=`` takes the identity the host
read from that manifest and put in its environment (``KITHOST_EXTENSION``,
``KITHOST_EXTENSION_VERSION``, ``KITHOST_EXTENSION_PERMISSIONS``) instead of
reading the file again: ``tomllib`` with ``pathlib``, ``re`` and ``typing``
cost an extension ~10 ms of its start-up (issue 10).

Ordering rule: the host runs handlers by priority (lower first), then by
extension load order, then by registration order within the extension.
Everything declared here is sent in the handshake (``hello``) and nothing can
be registered after it.

The records (:class:`Subscription`, :class:`ToolDef`, :class:`CommandDef`) are
plain classes with ``__slots__`` and ``Final`` attributes (read-only for mypy),
not dataclasses: this module is on every extension process's import path, and
``import dataclasses`` (it imports ``inspect``) costs ~12 ms of its start-up
(issue 10; ``-X importtime``: this module went from 3.3 to 0.8 ms, and from
23.5 to 3.9 ms with what it imports).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from .events import EVENTS, Policy, custom_event_name, is_custom
from .hostcalls import PERMISSIONS
from .wire import ENV_NAME, ENV_PERMISSIONS, ENV_VERSION

TYPE_CHECKING = False  # not typing's: ``import typing`` is ~3 ms of an extension's start-up
if TYPE_CHECKING:
    from pathlib import Path  # at run time only where a manifest is read: ``pathlib`` is ~3 ms of a start-up
    from typing import Any, Final, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["MANIFEST_FILE", "CommandDef", "Extension", "Handler", "Subscription", "ToolDef", "find_manifest",
           "read_identity"]

#: A handler: ``fn(event, ctx) -> result | None``.
Handler = Callable[["Any", "Any"], "Any"]  # quoted: ``typing.Any`` is imported for mypy only

#: Default handler priority (kit's SDK hooks: high=0, normal=50, low=100).
DEFAULT_PRIORITY = 50


class Subscription:
    """One registered handler. Read-only (``Final``: mypy refuses an assignment)."""

    __slots__ = ("deadline_ms", "event", "fn", "policy", "priority")

    event: Final[str]
    fn: Final[Handler]
    priority: Final[int]
    deadline_ms: Final[int | None]
    #: Failure policy asked for; ``None``: the event's default.
    policy: Final[Policy | None]

    def __init__(self, event: str, fn: Handler, priority: int = DEFAULT_PRIORITY, deadline_ms: int | None = None,
                 policy: Policy | None = None) -> None:
        self.event = event
        self.fn = fn
        self.priority = priority
        self.deadline_ms = deadline_ms
        self.policy = policy

    def declaration(self) -> dict[str, Any]:
        """The handshake entry for this subscription."""
        out: dict[str, Any] = {"event": self.event, "priority": self.priority}
        if self.deadline_ms is not None:
            out["deadline_ms"] = self.deadline_ms
        if self.policy is not None:
            out["policy"] = self.policy.value
        return out


class ToolDef:
    """A tool the extension provides: ``fn(args: dict, ctx) -> str``."""

    __slots__ = ("description", "fn", "name", "parameters")

    name: Final[str]
    description: Final[str]
    parameters: Final[dict[str, Any]]
    fn: Final[Callable[[dict[str, Any], Any], Any]]

    def __init__(self, name: str, description: str, parameters: dict[str, Any],
                 fn: Callable[[dict[str, Any], Any], Any]) -> None:
        self.name = name
        self.description = description
        self.parameters = parameters
        self.fn = fn


class CommandDef:
    """A slash command: ``fn(args: str, ctx) -> str | None``."""

    __slots__ = ("description", "fn", "name")

    name: Final[str]
    description: Final[str]
    fn: Final[Callable[[str, Any], Any]]

    def __init__(self, name: str, description: str, fn: Callable[[str, Any], Any]) -> None:
        self.name = name
        self.description = description
        self.fn = fn


#: File name of the manifest beside an extension's code (``host.exthost.manifest.MANIFEST_NAME``).
MANIFEST_FILE = "extension.toml"
#: How many directories above the defining file are searched for the manifest.
_MANIFEST_DEPTH = 4


def _defining_file() -> Path | None:
    """The source file of the code that called ``Extension(...)`` (first frame outside ext_sdk)."""
    from pathlib import Path

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


def _identity_from_host(name: str | None, version: str | None, permissions: Sequence[str] | None,
                        ) -> tuple[str | None, str | None, Sequence[str] | None]:
    """The values not given, from the host's environment (the launch's manifest), when a host set all three;
    else the arguments unchanged."""
    environ = os.environ
    if ENV_NAME not in environ or ENV_VERSION not in environ or ENV_PERMISSIONS not in environ:
        return name, version, permissions
    given = environ[ENV_PERMISSIONS]
    return (environ[ENV_NAME] if name is None else name, environ[ENV_VERSION] if version is None else version,
            ([p for p in given.split(",") if p] if permissions is None else permissions))


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
        if manifest is None and (name is None or version is None or permissions is None):
            name, version, permissions = _identity_from_host(name, version, permissions)
        if name is None or version is None or permissions is None:
            from pathlib import Path

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
        #: The manifest the identity was read from (``None``: every field was given, or taken from the host's
        #: environment).
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
