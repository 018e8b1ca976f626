"""``Context`` (``ctx``): a handler's way to call the host, and ``EventData``.

Every ``Context`` method is one host call of :data:`ext_sdk.hostcalls.HOST_CALLS`
(a test keeps the two in step). Calls go through a ``Caller`` — the real
socket in an extension process, or :class:`ext_sdk.testing.FakeHost` in unit
tests. A call the host refuses raises :class:`HostCallError` with the host's
reason (e.g. a permission that was not granted).
"""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # not typing's: ``import typing`` is ~3 ms of an extension's start-up
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Caller", "Context", "EventData", "HostCallError"]

#: ``caller(method, args) -> value``; raises :class:`HostCallError`. (``"Any"`` quoted here and in
#: ``EventData``'s base: ``typing.Any`` is imported for mypy only.)
Caller = Callable[[str, dict[str, "Any"]], "Any"]


class HostCallError(RuntimeError):
    """The host refused or failed a ``ctx`` call; the message is the host's reason."""


class EventData(dict[str, "Any"]):
    """An event payload: a plain dict that also allows ``event.field`` access."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"event has no field {name!r} (fields: {', '.join(self)})") from None


class Context:
    """Host API for handlers. Valid only while a handler runs."""

    __slots__ = ("_call", "event")

    def __init__(self, call: Caller, event: str = "") -> None:
        self._call = call
        #: Name of the event being handled.
        self.event = event

    # ui
    def print(self, text: str) -> None:
        """Show plain text to the user."""
        self._call("print", {"text": str(text), "level": "plain"})

    def info(self, text: str) -> None:
        """Show an informational message."""
        self._call("print", {"text": str(text), "level": "info"})

    def error(self, text: str) -> None:
        """Show an error message."""
        self._call("print", {"text": str(text), "level": "error"})

    def get_info(self) -> dict[str, str]:
        """``{session_id, session_path, cwd, model}``."""
        return self._call("get_info", {})  # type: ignore[no-any-return]

    # state
    def get_state(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        value = self._call("get_state", {"key": key})
        return default if value is None else value

    def set_state(self, key: str, value: Any) -> None:
        """Store a safe value; it is on disk when this returns and survives crashes."""
        self._call("set_state", {"key": key, "value": value})

    def delete_state(self, key: str) -> None:
        """Remove ``key`` (no error if absent)."""
        self._call("delete_state", {"key": key})

    def list_state(self) -> list[str]:
        """All keys of this extension."""
        return self._call("list_state", {})  # type: ignore[no-any-return]

    # session
    def append_entry(self, type: str, data: Any) -> str:  # noqa: A002 - kit's name
        """Append an entry to the session tree; returns its id."""
        return self._call("append_entry", {"type": type, "data": data})  # type: ignore[no-any-return]

    def get_entries(self, type: str) -> list[dict[str, Any]]:  # noqa: A002 - kit's name
        """This extension's entries of ``type``, oldest first."""
        return self._call("get_entries", {"type": type})  # type: ignore[no-any-return]

    # events
    def emit(self, name: str, data: Any = None) -> int:
        """Emit custom event ``name``; returns how many extensions it was queued for."""
        return self._call("emit", {"name": name, "data": data})  # type: ignore[no-any-return]

    # conversation / agent
    def get_messages(self) -> list[dict[str, Any]]:
        """The current context window as ``{index, role, content}`` maps."""
        return self._call("get_messages", {})  # type: ignore[no-any-return]

    def send_message(self, text: str) -> None:
        """Queue a user message (steers a running turn, or starts the next one)."""
        self._call("send_message", {"text": text})

    def set_model(self, model: str) -> None:
        """Switch the model."""
        self._call("set_model", {"model": model})

    def cancel_and_send(self, text: str) -> None:
        """Steer: cancel the running turn and queue ``text`` as the next prompt (kit's ``CancelAndSend``)."""
        self._call("cancel_and_send", {"text": text})

    def abort(self) -> None:
        """Cancel the running turn (no-op when idle)."""
        self._call("abort", {})

    def reload(self, name: str = "") -> None:
        """Reload extension ``name`` (default: this one) from its files in the background, with no downtime."""
        self._call("reload", {"name": name})

    def is_idle(self) -> bool:
        """Whether no turn is running."""
        return bool(self._call("is_idle", {}))

    def compact(self) -> dict[str, Any]:
        """Compact the session now: ``{compacted, reason, summary}``; refused while a turn runs."""
        return self._call("compact", {})  # type: ignore[no-any-return]

    def new_session(self, prompt: str = "") -> dict[str, Any]:
        """Start a new session (optionally with a first prompt): ``{switched, reason, session_path}``."""
        return self._call("new_session", {"prompt": prompt})  # type: ignore[no-any-return]

    # usage
    def get_session_usage(self) -> dict[str, Any]:
        """Tokens, cost and provider calls since the agent started."""
        return self._call("get_session_usage", {})  # type: ignore[no-any-return]

    def get_context_stats(self) -> dict[str, Any]:
        """``{estimated_tokens, context_limit, usage_percent, message_count}`` of the next model call."""
        return self._call("get_context_stats", {})  # type: ignore[no-any-return]

    # models
    def complete(self, prompt: str, *, system: str = "", messages: list[dict[str, str]] | None = None,
                 model: str = "", max_tokens: int | None = None) -> dict[str, Any]:
        """One model call through the host: ``{text, model, input_tokens, output_tokens, cost}``."""
        args: dict[str, Any] = {"prompt": prompt, "system": system, "messages": messages or [], "model": model}
        if max_tokens is not None:
            args["max_tokens"] = max_tokens
        return self._call("complete", args)  # type: ignore[no-any-return]

    def get_models(self) -> list[dict[str, Any]]:
        """Models that can be called now (the current one first)."""
        return self._call("get_models", {})  # type: ignore[no-any-return]

    def get_model_capabilities(self, model: str = "") -> dict[str, Any]:
        """What ``model`` (default: the current one) can do and costs."""
        return self._call("get_model_capabilities", {"model": model})  # type: ignore[no-any-return]

    # subagents
    def spawn_subagent(self, task: str, *, blocking: bool = True, system_prompt: str = "") -> dict[str, Any]:
        """Run a subagent: ``{id, status, response, error_msg}`` (status ``running``
        when not blocking)."""
        return self._call("spawn_subagent", {"task": task, "blocking": blocking,  # type: ignore[no-any-return]
                                             "system_prompt": system_prompt})

    def subagent_status(self, subagent_id: str) -> dict[str, Any]:
        """A subagent this extension spawned: running, or its result."""
        return self._call("subagent_status", {"id": subagent_id})  # type: ignore[no-any-return]

    def kill_subagent(self, subagent_id: str) -> bool:
        """Cancel a running subagent; ``False`` if it already ended."""
        return bool(self._call("kill_subagent", {"id": subagent_id}))

    # tools
    def get_tools(self) -> list[dict[str, Any]]:
        """``{name, description, source, enabled}`` of every tool."""
        return self._call("get_tools", {})  # type: ignore[no-any-return]

    def set_active_tools(self, names: list[str]) -> None:
        """Offer only ``names`` to the model (empty: all)."""
        self._call("set_active_tools", {"names": list(names)})

    # session tree
    def get_tree_node(self, entry_id: str) -> dict[str, Any] | None:
        """One entry of the session tree, or ``None``."""
        return self._call("get_tree_node", {"id": entry_id})  # type: ignore[no-any-return]

    def get_current_branch(self) -> list[dict[str, Any]]:
        """The path root → leaf."""
        return self._call("get_current_branch", {})  # type: ignore[no-any-return]

    def get_children(self, entry_id: str = "") -> list[str]:
        """Ids of an entry's children ('' = the roots)."""
        return self._call("get_children", {"id": entry_id})  # type: ignore[no-any-return]

    def navigate_to(self, entry_id: str) -> dict[str, Any]:
        """Move the leaf to ``entry_id``: ``{success, error}``."""
        return self._call("navigate_to", {"id": entry_id})  # type: ignore[no-any-return]

    def summarize_branch(self, from_id: str = "", to_id: str = "") -> str:
        """A model-written summary of the branch from ``from_id`` to ``to_id``."""
        return self._call("summarize_branch", {"from_id": from_id, "to_id": to_id})  # type: ignore[no-any-return]

    # options
    def register_option(self, name: str, default: str, description: str = "") -> str:
        """Declare an option with a default; returns its current value."""
        return self._call("register_option", {"name": name, "default": default,  # type: ignore[no-any-return]
                                              "description": description})

    def get_option(self, name: str) -> str | None:
        """Runtime value, else ``KITHOST_OPT_<NAME>``, else the config's ``[options]``, else the default."""
        return self._call("get_option", {"name": name})  # type: ignore[no-any-return]

    def set_option(self, name: str, value: str) -> None:
        """Set an option for the life of the host."""
        self._call("set_option", {"name": name, "value": value})

    # prompts and status
    def prompt_select(self, message: str, options: list[str]) -> dict[str, Any]:
        """Ask the user to pick one: ``{value, index, cancelled}`` (cancelled when headless)."""
        return self._call("prompt_select", {"message": message, "options": list(options)})  # type: ignore[no-any-return]

    def prompt_confirm(self, message: str, default: bool = False) -> dict[str, Any]:
        """Ask yes or no: ``{value, cancelled}``."""
        return self._call("prompt_confirm", {"message": message, "default": default})  # type: ignore[no-any-return]

    def prompt_input(self, message: str, *, placeholder: str = "", default: str = "") -> dict[str, Any]:
        """Ask for a line of text: ``{value, cancelled}``."""
        return self._call("prompt_input", {"message": message, "placeholder": placeholder,  # type: ignore[no-any-return]
                                           "default": default})

    def set_status(self, key: str, text: str, priority: int = 0) -> None:
        """Show ``text`` in the status line under ``key``; '' removes it."""
        self._call("set_status", {"key": key, "text": text, "priority": priority})
