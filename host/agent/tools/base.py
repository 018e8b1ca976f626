"""What a tool is: the :class:`Tool` protocol, its :class:`ToolContext` and :class:`ToolResult`.

Contract every tool follows:

* ``run(args, ctx)`` gets arguments already checked against ``parameters``
  (by :class:`host.agent.tools.registry.ToolRegistry`) and returns a
  :class:`ToolResult`. Expected failures (file not found, no match, non-zero
  exit) are results with ``is_error=True`` and a message the model can act
  on, never exceptions; an exception is a bug, and the registry turns it into
  an error result too.
* ``metadata`` is safe data (JSON types only): it reaches extensions as the
  ``tool_result`` event's ``metadata`` JSON string.
* Relative paths resolve against ``ctx.cwd`` (:meth:`ToolContext.resolve`).
* A tool that streams output (bash) sends chunks through
  :meth:`ToolContext.output` as they arrive, and stops when ``ctx.cancel`` is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol, runtime_checkable

__all__ = ["TOOL_KINDS", "OutputCallback", "Tool", "ToolContext", "ToolKind", "ToolResult"]

#: The ``tool_kind`` enum of the event schema (a test keeps the two equal).
ToolKind = Literal["execute", "edit", "read", "search", "agent", "other"]
TOOL_KINDS: Final[tuple[ToolKind, ...]] = ("execute", "edit", "read", "search", "agent", "other")

#: ``on_output(chunk, is_stderr)``: one chunk of streamed tool output.
OutputCallback = Callable[[str, bool], None]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool returns to the model (``content``) and to extensions (all of it)."""

    #: Text for the model.
    content: str
    #: True when the tool failed; the model sees ``content`` as an error.
    is_error: bool = False
    #: Structured details (safe JSON types), e.g. ``{"exit_code": 0}``.
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Everything a tool run may use besides its arguments."""

    #: Working directory; relative paths resolve against it.
    cwd: Path
    #: Id of the model's tool call ('' outside a turn).
    tool_call_id: str = ""
    #: Receives streamed output chunks (bash); ``None`` = nobody listens.
    on_output: OutputCallback | None = None
    #: Set to ask a long-running tool to stop.
    cancel: threading.Event | None = None

    def resolve(self, path: str) -> Path:
        """``path`` made absolute against :attr:`cwd` (``~`` expanded); not required to exist."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.cwd / p

    def output(self, chunk: str, is_stderr: bool = False) -> None:
        """Send one chunk of streamed output (no-op without a listener)."""
        if self.on_output is not None and chunk:
            self.on_output(chunk, is_stderr)

    @property
    def cancelled(self) -> bool:
        """Whether the run was asked to stop."""
        return self.cancel is not None and self.cancel.is_set()


@runtime_checkable
class Tool(Protocol):
    """A tool the model can call."""

    @property
    def name(self) -> str:
        """Unique name the model uses."""

    @property
    def description(self) -> str:
        """What it does, for the model."""

    @property
    def parameters(self) -> Mapping[str, Any]:
        """JSON Schema (``type: object``) of its arguments."""

    @property
    def kind(self) -> ToolKind:
        """What kind of tool (the ``tool_kind`` of its events)."""

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Run with checked ``args``; never raises for expected failures."""
