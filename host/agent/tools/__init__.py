"""The agent's tools: the :class:`Tool` protocol, the built-ins (one module each), and :class:`ToolRegistry`.

Built-ins: ``read``, ``write``, ``edit``, ``bash``, ``ls``, ``glob``, ``grep`` —
each module defines ``TOOL``; :func:`builtin_tools` finds them.
"""

from __future__ import annotations

from .base import TOOL_KINDS, OutputCallback, Tool, ToolContext, ToolKind, ToolResult
from .registry import ProxyTool, ToolRegistry, builtin_tools

__all__ = [
    "TOOL_KINDS",
    "OutputCallback",
    "ProxyTool",
    "Tool",
    "ToolContext",
    "ToolKind",
    "ToolRegistry",
    "ToolResult",
    "builtin_tools",
]
