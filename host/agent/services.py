"""``AgentServices``: the extension host's :class:`~host.exthost.services.HostServices`, answered by the agent.

What each ``ctx`` call does:

=====================  ==================================================================
``print``              to the application's print sink (default: stderr, prefixed with the
                       extension's name); every print is also kept in :attr:`printed`
``append_entry``       an ``extension`` entry in the current session file (durable)
``get_entries``        that extension's entries of a type in the current session, oldest first
``get_messages``       the context window the model receives next, as context messages
``send_message``       queued for the agent (:mod:`host.agent.steering`)
``set_model``          checked (:func:`host.agent.llm.models.check_model`), then switched with
                       ``model_change`` source ``extension``; an unusable model is refused
``info``               session id and path, working directory, current model
=====================  ==================================================================

Thread-safety: calls arrive on the agent's thread (gate/chain handlers) or the
notify delivery thread. The loop and the session tree are thread-safe; the
services object only guards its own print list and the attachment below.
The extension host is built before the loop (it needs the services), so the
loop is attached afterwards; calls before that are refused as "not available".
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from ..exthost.services import NotAvailable
from .context_messages import to_context_messages
from .errors import ModelError
from .llm.models import check_model
from .loop import AgentLoop

__all__ = ["AgentServices", "PrintSink", "format_print"]

#: ``on_print(extension, level, text)``: shows an extension's ``ctx.print``/``info``/``error``.
PrintSink = Callable[[str, str, str], None]


def format_print(extension: str, level: str, text: str) -> str:
    """An extension's print as terminal lines: ``[name] line``, ``[name info] line``, ``[name error] line``."""
    tag = {"info": " info", "error": " error"}.get(level, "")
    return "".join(f"[{extension}{tag}] {line}\n" for line in (text.splitlines() or [""]))


def _stderr_print(extension: str, level: str, text: str) -> None:
    sys.stderr.write(format_print(extension, level, text))
    sys.stderr.flush()


class AgentServices:
    """Host services over an :class:`AgentLoop` and its session tree."""

    def __init__(self, on_print: PrintSink | None = None, cwd: str = "") -> None:
        self._on_print = on_print or _stderr_print
        self._cwd = cwd
        self._lock = threading.Lock()
        self._loop: AgentLoop | None = None
        #: Every print as ``(extension, level, text)``, in arrival order.
        self.printed: list[tuple[str, str, str]] = []

    def attach(self, loop: AgentLoop) -> None:
        """Serve calls from ``loop`` from now on."""
        with self._lock:
            self._loop = loop

    def _agent(self, what: str) -> AgentLoop:
        with self._lock:
            loop = self._loop
        if loop is None:
            raise NotAvailable(f"{what} is not available yet: the agent is still starting")
        return loop

    # ------------------------------------------------------------------ HostServices

    def print(self, extension: str, level: str, text: str) -> None:
        with self._lock:
            self.printed.append((extension, level, text))
            self._on_print(extension, level, text)

    def append_entry(self, extension: str, entry_type: str, data: Any) -> str:
        return self._agent("append_entry").tree.append_entry(extension, entry_type, data)

    def get_entries(self, extension: str, entry_type: str) -> list[dict[str, Any]]:
        return self._agent("get_entries").tree.get_entries(extension, entry_type)

    def get_messages(self) -> list[dict[str, Any]]:
        return to_context_messages(self._agent("get_messages").current_window())

    def send_message(self, extension: str, text: str) -> None:
        self._agent("send_message").steer(text, extension)

    def set_model(self, extension: str, model: str) -> None:
        loop = self._agent("set_model")
        try:
            check_model(model, loop.config.llm_params)
        except ModelError as exc:
            raise NotAvailable(f"set_model refused: {exc}") from None
        loop.set_model(model, "extension")

    def info(self) -> dict[str, str]:
        loop = self._agent("get_info")
        tree = loop.tree
        return {"session_id": tree.session_id, "session_path": str(tree.path), "cwd": self._cwd,
                "model": loop.model}
