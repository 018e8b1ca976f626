"""``Extension``: what an extension file declares — handlers, tools, commands, permissions.

An extension is a plain Python file that creates one :class:`Extension` and
registers handlers on it::

    from ext_sdk import Block, Extension

    ext = Extension("permission-gate", version="1.0.0", permissions=["conversation"])

    @ext.on("tool_call", priority=10, deadline_ms=200, policy="closed")
    def gate(event, ctx):
        if "rm -rf" in event.input:
            return Block("dangerous command")

Ordering rule: the host runs handlers by priority (lower first), then by
extension load order, then by registration order within the extension.
Everything declared here is sent in the handshake (``hello``) and nothing can
be registered after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .events import EVENTS, custom_event_name, is_custom
from .hostcalls import PERMISSIONS

__all__ = ["CommandDef", "Extension", "Handler", "Subscription", "ToolDef"]

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
    policy: str | None = None

    def declaration(self) -> dict[str, Any]:
        """The handshake entry for this subscription."""
        out: dict[str, Any] = {"event": self.event, "priority": self.priority}
        if self.deadline_ms is not None:
            out["deadline_ms"] = self.deadline_ms
        if self.policy is not None:
            out["policy"] = self.policy
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


@dataclass
class Extension:
    """The declaration of one extension. Create exactly one per extension file."""

    name: str
    version: str = "0.0.0"
    permissions: list[str] = field(default_factory=list)
    subscriptions: list[Subscription] = field(default_factory=list)
    tools: list[ToolDef] = field(default_factory=list)
    commands: list[CommandDef] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = [p for p in self.permissions if p not in PERMISSIONS]
        if unknown:
            raise ValueError(f"unknown permission(s) {unknown}; known: {', '.join(PERMISSIONS)}")

    def on(
        self,
        event: str,
        fn: Handler | None = None,
        *,
        priority: int = DEFAULT_PRIORITY,
        deadline_ms: int | None = None,
        policy: str | None = None,
    ) -> Any:
        """Register ``fn`` for ``event``; usable as ``ext.on(name, fn)`` or ``@ext.on(name)``.

        ``deadline_ms`` asks for a deadline (the host clamps it to the
        operator's bounds); ``policy`` is ``"open"`` (skip this handler on
        failure) or ``"closed"`` (block/cancel on failure); the default
        depends on the event's mode.
        """
        if event not in EVENTS and not is_custom(event):
            raise ValueError(f"unknown event {event!r}; see ext_sdk.events.EVENTS or use 'custom:<name>'")
        if policy not in (None, "open", "closed"):
            raise ValueError(f"policy must be 'open' or 'closed', not {policy!r}")
        if deadline_ms is not None and (type(deadline_ms) is not int or deadline_ms <= 0):
            raise ValueError(f"deadline_ms must be a positive int, not {deadline_ms!r}")

        def register(handler: F) -> F:
            self.subscriptions.append(Subscription(event, handler, priority, deadline_ms, policy))
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
