"""``ToolRegistry``: the tools the model may call — built-ins and extension-provided proxies.

Built-ins are *derived*: every module of this package that defines a
module-level ``TOOL`` is one (:func:`builtin_tools`), so adding a file adds a
tool and nothing is listed twice. Extension tools are :class:`ProxyTool`
objects wrapping a function the extension host gives us; to the model they
look exactly like built-ins.

Registration refuses a malformed tool: a bad name, an unknown kind, or
``parameters`` that are not a JSON Schema of ``type: object``
(:func:`~host.agent.tools.args.check_schema`).

Contract of :meth:`ToolRegistry.run`: it never raises. An unknown tool,
arguments that do not fit the tool's schema (:func:`~host.agent.tools.args.check_args`),
and an exception inside the tool all come back as a :class:`ToolResult` with
``is_error=True`` and a message the model can act on.

Thread-safe: registration (e.g. from an extension's host call) may happen
while another thread lists or runs tools.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .args import check_args, check_schema
from .base import TOOL_KINDS, OutputCallback, Tool, ToolContext, ToolKind, ToolResult

__all__ = ["ProxyTool", "ToolRegistry", "builtin_tools"]

log = logging.getLogger("kithost.tools")


def builtin_tools() -> list[Tool]:
    """One instance of every built-in tool, sorted by name (modules of this package defining ``TOOL``)."""
    package_name = __package__ or "host.agent.tools"
    package = importlib.import_module(package_name)
    found: list[Tool] = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package_name}.{info.name}")
        tool = getattr(module, "TOOL", None)
        if tool is not None:
            if not isinstance(tool, Tool):
                raise TypeError(f"{module.__name__}.TOOL does not implement the Tool protocol")
            found.append(tool)
    return sorted(found, key=lambda t: t.name)


@dataclass(frozen=True, slots=True)
class ProxyTool:
    """A tool that runs elsewhere (an extension's process): ``call(args, ctx)`` does the work."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    #: Function that runs the tool (e.g. sends it to the extension and waits).
    call: Callable[[dict[str, Any], ToolContext], ToolResult]
    kind: ToolKind = "other"
    #: Who provides it (an extension name), for listings and errors.
    source: str = ""

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Delegate to :attr:`call`."""
        return self.call(args, ctx)


class ToolRegistry:
    """Named tools, resolved against one working directory."""

    def __init__(self, cwd: str | Path, *, builtins: bool = True) -> None:
        #: Working directory every tool run resolves relative paths against.
        self.cwd = Path(cwd).resolve()
        self._lock = threading.Lock()
        self._tools: dict[str, Tool] = {}
        for tool in builtin_tools() if builtins else ():
            self.register(tool)

    # ------------------------------------------------------------------ table

    def register(self, tool: Tool, *, replace: bool = False) -> None:
        """Add ``tool``; ``ValueError`` if the name is taken (unless ``replace``) or the tool is malformed."""
        if not tool.name or not tool.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"tool name {tool.name!r}: use letters, digits, '_' and '-' only")
        if tool.kind not in TOOL_KINDS:
            raise ValueError(f"tool {tool.name!r}: kind {tool.kind!r} is not one of {', '.join(TOOL_KINDS)}")
        if tool.parameters.get("type") != "object":
            raise ValueError(f"tool {tool.name!r}: parameters must be a JSON Schema with type 'object'")
        try:
            check_schema(tool.parameters)
        except ValueError as exc:
            raise ValueError(f"tool {tool.name!r}: parameters are {exc}") from None
        with self._lock:
            if tool.name in self._tools and not replace:
                raise ValueError(f"a tool named {tool.name!r} is already registered")
            self._tools = {**self._tools, tool.name: tool}

    def unregister(self, name: str) -> bool:
        """Remove tool ``name``; whether it was there."""
        with self._lock:
            if name not in self._tools:
                return False
            self._tools = {k: v for k, v in self._tools.items() if k != name}
            return True

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or ``None``."""
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        """Tool names in registration order (built-ins first, by name)."""
        return list(self._tools)

    def tools(self) -> list[Tool]:
        """The tools in registration order."""
        return list(self._tools.values())

    def kind(self, name: str) -> ToolKind:
        """The ``tool_kind`` of ``name`` (``other`` for an unknown tool)."""
        tool = self._tools.get(name)
        return tool.kind if tool is not None else "other"

    def specs(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """OpenAI function specs of every tool (or of ``names``, in that order; unknown names skipped)."""
        table = self._tools
        chosen = list(table.values()) if names is None else [table[n] for n in names if n in table]
        return [{"type": "function",
                 "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)}}
                for t in chosen]

    # ------------------------------------------------------------------ running

    def context(self, *, tool_call_id: str = "", on_output: OutputCallback | None = None,
                cancel: threading.Event | None = None) -> ToolContext:
        """A :class:`ToolContext` rooted at :attr:`cwd`."""
        return ToolContext(self.cwd, tool_call_id, on_output, cancel)

    def run(self, name: str, args: Any, *, tool_call_id: str = "", on_output: OutputCallback | None = None,
            cancel: threading.Event | None = None) -> ToolResult:
        """Run tool ``name`` with ``args`` (parsed JSON); never raises (see the module doc)."""
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            return ToolResult(f"unknown tool {name!r} (available: {known})", True, {})
        problem = check_args(args, tool.parameters)
        if problem is not None:
            return ToolResult(f"{name}: {problem}", True, {})
        try:
            return tool.run(args, self.context(tool_call_id=tool_call_id, on_output=on_output, cancel=cancel))
        except Exception as exc:  # a broken tool must not take the agent down
            log.exception("tool %s failed", name)
            return ToolResult(f"{name} failed: {type(exc).__name__}: {exc}", True, {})
