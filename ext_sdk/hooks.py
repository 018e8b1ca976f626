"""The hook adapter: other coding agents' command hooks run as one kithost extension.

Claude Code, Gemini CLI and Codex configure *command hooks* per event: a shell
command that reads a JSON object on stdin and answers with its exit status (0
fine, 2 block with stderr as the reason, anything else a non-blocking error)
and optionally a JSON decision on stdout. This module runs such hooks
unchanged inside one long-lived kithost extension process, so they run in the
extension's sandbox, under kithost's deadlines and failure policies.

It lives in the SDK on purpose (standard library and ``ext_sdk`` only): the
sandbox lets an extension read its own folder and the SDK, not the host, so a
hooks extension's folder holds only its manifest and a two-line
``hooks_adapter.py`` (written by ``kithost hooks import``)::

    from ext_sdk.hooks import build_extension
    ext = build_extension(__file__)

The host imports the same module to validate the manifest's ``[hooks]`` table
(:func:`load_hooks`) and to parse durations (:func:`duration_ms`) in the
operator config and the manifest: one definition.

Contract of one event (see ``docs/hooks.md`` for the tables):

* the handlers whose agent event maps to the kithost event, and whose matcher
  matches (tool name for tool events, ``source``/``trigger`` for session start
  and compaction), run **concurrently**, each in its own process group, each
  fed the JSON its agent sends;
* each hook's ``timeout`` runs from just before its process is spawned (shell
  and interpreter start included); at the deadline its whole process group is
  killed (SIGKILL) and the hook counts as failed;
* exit 2 blocks with stderr as the reason; exit 0 with a JSON object applies
  its decision fields; any other exit, a timeout, or a command that cannot be
  started is a failure: a handler with ``policy = "closed"`` then blocks (a
  fail-closed guard never turns into an allow), ``"open"`` lets the event go on
  and says why on the extension's log;
* the first block in the manifest's order wins; additional context from every
  hook is joined in that order;
* the deadline declared to kithost for the event is the longest hook timeout
  plus :data:`DEADLINE_MARGIN_MS`, so kithost's deadline never fires before the
  hook's own; if the operator clamps it lower, kithost's deadline and the
  handler policy (``closed`` when any hook on the event is) apply first.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from ext_sdk import Extension
from ext_sdk.events import Policy
from ext_sdk.sandbox.plan import ENV_PLAN
from ext_sdk.wire import ENV_CALLS, ENV_CONTROL, ENV_EVENTS, ENV_SECRET_FILE, ENV_VERSIONS

__all__ = [
    "DEADLINE_MARGIN_MS",
    "FORMATS",
    "Answer",
    "DurationError",
    "Format",
    "HookHandler",
    "HooksConfig",
    "HooksConfigError",
    "build_extension",
    "decide",
    "default_policy",
    "duration_ms",
    "format_duration",
    "load_hooks",
    "run_command",
]

# ---------------------------------------------------------------------------------------------- durations

_UNITS: Final = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION: Final = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(us|ms|s|m|h)\s*$")


class DurationError(ValueError):
    """A duration that is not ``<number><unit>``; the message says what to write."""


def duration_ms(value: object, what: str = "duration", unit_hint: str = "ms") -> float:
    """``"500ms"``, ``"2s"``, ``"1.5m"``, ``"1h"``, ``"250us"`` → milliseconds.

    A bare number is rejected with a message naming the unit to add
    (``unit_hint``: the unit the old setting used); so are negative values and
    anything else that is not a string of a number and a unit.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DurationError(f"{what} must be a duration such as \"500ms\" or \"2s\" (got {value!r})")
    if isinstance(value, (int, float)):
        shown = int(value) if float(value).is_integer() else value
        raise DurationError(f"{what} = {shown} has no unit: write \"{shown}{unit_hint}\" "
                            f"(units: us, ms, s, m, h)")
    match = _DURATION.match(value)
    if match is None:
        if re.fullmatch(r"\s*[0-9]+(\.[0-9]+)?\s*", value):
            raise DurationError(f"{what} = \"{value.strip()}\" has no unit: write \"{value.strip()}{unit_hint}\" "
                                f"(units: us, ms, s, m, h)")
        raise DurationError(f"{what} must be a duration such as \"500ms\" or \"2s\" (got \"{value}\"; "
                            f"units: us, ms, s, m, h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(ms: float) -> str:
    """Milliseconds in the largest unit that keeps the number whole: ``1000`` → ``"1s"``, ``250`` → ``"250ms"``."""
    for unit in ("h", "m", "s", "ms"):
        amount = ms / _UNITS[unit]
        if amount >= 1 and float(amount).is_integer():
            return f"{int(amount)}{unit}"
    return f"{ms:g}ms"


# ---------------------------------------------------------------------------------------------- formats

#: kithost's built-in tools, whose names and arguments are translated (other tools keep their own).
_BUILTINS: Final = ("bash", "read", "write", "edit", "ls", "glob", "grep", "subagent")


@dataclass(frozen=True, slots=True)
class Format:
    """One agent's hook vocabulary, as far as it maps onto kithost's."""

    #: ``claude``, ``gemini`` or ``codex``.
    name: str
    #: Their event name → kithost event.
    events: Mapping[str, str]
    #: Their events with no kithost counterpart → why (printed by the importer, refused in a manifest).
    unmapped: Mapping[str, str]
    #: kithost tool → their tool name.
    tools: Mapping[str, str]
    #: kithost tool → {kithost argument → their argument}.
    args: Mapping[str, Mapping[str, str]]
    #: Unit of ``timeout`` in their settings file (``s`` or ``ms``).
    timeout_unit: str
    #: Their default timeout, in ms, when a hook sets none.
    default_timeout_ms: int
    #: Environment variables that name the project directory for their hooks.
    project_env: tuple[str, ...]
    #: Where their public reference is (cited in docs/hooks.md).
    reference: str

    def their_tool(self, tool: str) -> str:
        """Their name for kithost's ``tool`` (unchanged when they have none)."""
        return self.tools.get(tool, tool)

    def their_args(self, tool: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """kithost's arguments of ``tool`` under their names."""
        names = self.args.get(tool, {})
        return {names.get(key, key): value for key, value in args.items()}


_CLAUDE_LIKE_TOOLS: Final = {"bash": "Bash", "read": "Read", "write": "Write", "edit": "Edit", "ls": "LS",
                             "glob": "Glob", "grep": "Grep", "subagent": "Task"}
_FILE_PATH: Final = {"path": "file_path"}

FORMATS: Final[Mapping[str, Format]] = {
    "claude": Format(
        name="claude",
        events={"PreToolUse": "tool_call", "PostToolUse": "tool_result", "PostToolUseFailure": "tool_result",
                "UserPromptSubmit": "input", "SessionStart": "session_start", "SessionEnd": "session_shutdown",
                "Stop": "agent_end", "SubagentStart": "subagent_start", "SubagentStop": "subagent_end",
                "PreCompact": "before_compact"},
        unmapped={"Notification": "kithost sends no idle or permission notifications",
                  "PermissionRequest": "kithost has no permission dialog (use PreToolUse to deny)",
                  "PostCompact": "kithost has no event after a compaction",
                  "InstructionsLoaded": "kithost has no instruction files event",
                  "ConfigChange": "kithost has no settings-change event",
                  "WorktreeCreate": "kithost has no worktrees", "WorktreeRemove": "kithost has no worktrees",
                  "TeammateIdle": "kithost has no agent teams", "TaskCompleted": "kithost has no task list"},
        tools=_CLAUDE_LIKE_TOOLS,
        args={"read": _FILE_PATH, "write": _FILE_PATH, "edit": _FILE_PATH, "subagent": {"task": "prompt"}},
        timeout_unit="s", default_timeout_ms=60_000, project_env=("CLAUDE_PROJECT_DIR",),
        reference="https://docs.claude.com/en/docs/claude-code/hooks"),
    "gemini": Format(
        name="gemini",
        events={"BeforeTool": "tool_call", "AfterTool": "tool_result", "BeforeAgent": "input",
                "AfterAgent": "agent_end", "SessionStart": "session_start", "SessionEnd": "session_shutdown",
                "PreCompress": "before_compact"},
        unmapped={"BeforeModel": "kithost's prepare_step replaces messages, not the LLM request",
                  "AfterModel": "kithost has no hook on the raw LLM response",
                  "BeforeToolSelection": "kithost cannot narrow the tool list per call",
                  "Notification": "kithost sends no notifications"},
        tools={"bash": "run_shell_command", "read": "read_file", "write": "write_file", "edit": "replace",
               "ls": "list_directory", "glob": "glob", "grep": "search_file_content"},
        args={"read": _FILE_PATH, "write": _FILE_PATH, "edit": _FILE_PATH, "ls": {"path": "dir_path"}},
        timeout_unit="ms", default_timeout_ms=60_000, project_env=("GEMINI_PROJECT_DIR", "CLAUDE_PROJECT_DIR"),
        reference="https://geminicli.com/docs/hooks/reference"),
    "codex": Format(
        name="codex",
        events={"PreToolUse": "tool_call", "PostToolUse": "tool_result", "UserPromptSubmit": "input",
                "SessionStart": "session_start", "Stop": "agent_end", "SubagentStart": "subagent_start",
                "SubagentStop": "subagent_end", "PreCompact": "before_compact", "notify": "agent_end"},
        unmapped={"PermissionRequest": "kithost has no approval prompt (use PreToolUse to deny)",
                  "PostCompact": "kithost has no event after a compaction"},
        tools={"bash": "Bash"},
        args={},
        timeout_unit="s", default_timeout_ms=600_000, project_env=(),
        reference="https://developers.openai.com/codex/hooks"),
}

#: kithost deadline for an event = the longest hook timeout on it + this (time to map the answer, and more).
DEADLINE_MARGIN_MS: Final = 500
#: Most bytes kept of a hook's stdout and of its stderr.
OUTPUT_LIMIT: Final = 256 * 1024

# ---------------------------------------------------------------------------------------------- config


class HooksConfigError(ValueError):
    """A bad ``[hooks]`` table; the message names the entry and the key."""


@dataclass(frozen=True, slots=True)
class HookHandler:
    """One hook command for one of the agent's events."""

    #: The agent's event name (``PreToolUse``, ``BeforeTool``, ``notify`` ...).
    event: str
    #: The kithost event it runs on.
    kithost_event: str
    #: A shell command (run with ``bash -c``), or an argv list (run as is; Codex ``notify``).
    command: str | tuple[str, ...]
    #: Milliseconds from just before the spawn to the kill of its process group.
    timeout_ms: float
    #: ``closed``: a failure (timeout, crash, other exit) blocks; ``open``: it is skipped.
    policy: Policy
    #: Regex over the tool name (tool events) or the start source / compaction trigger; ``None`` = all.
    matcher: str | None = None
    #: A name for messages (default: the command).
    name: str = ""

    @property
    def label(self) -> str:
        """How messages name this hook."""
        if self.name:
            return self.name
        text = self.command if isinstance(self.command, str) else " ".join(self.command)
        return text if len(text) <= 60 else text[:57] + "..."

    def matches(self, subject: str | None) -> bool:
        """Whether the matcher accepts ``subject`` (``None``: the event has nothing to match)."""
        if self.matcher in (None, "", "*") or subject is None:
            return True
        return re.fullmatch(self.matcher, subject) is not None


@dataclass(frozen=True, slots=True)
class HooksConfig:
    """A validated ``[hooks]`` table."""

    format: Format
    handlers: tuple[HookHandler, ...]

    @property
    def kithost_events(self) -> tuple[str, ...]:
        """The kithost events the handlers need, sorted (``before_agent_start`` too for session context)."""
        needed = {h.kithost_event for h in self.handlers}
        if "session_start" in needed:
            needed.add("before_agent_start")  # SessionStart context reaches the model with the first turn
        return tuple(sorted(needed))

    def on(self, kithost_event: str) -> tuple[HookHandler, ...]:
        """The handlers that run on ``kithost_event``, in file order."""
        return tuple(h for h in self.handlers if h.kithost_event == kithost_event)

    def deadline_ms(self, kithost_event: str) -> int:
        """The deadline to declare for ``kithost_event``: its longest timeout + :data:`DEADLINE_MARGIN_MS`."""
        return math.ceil(max(h.timeout_ms for h in self.on(kithost_event))) + DEADLINE_MARGIN_MS

    def policy(self, kithost_event: str) -> Policy:
        """``closed`` when any handler on the event is (so a dead adapter fails closed too)."""
        return Policy.CLOSED if any(h.policy is Policy.CLOSED for h in self.on(kithost_event)) else Policy.OPEN


#: kithost events on which the agents' hooks can block; their handlers fail closed unless told otherwise.
BLOCKING_EVENTS: Final = frozenset({"tool_call", "input"})


def default_policy(kithost_event: str) -> Policy:
    """``closed`` where the agents' hooks can block (tool use before, prompt submit), ``open`` elsewhere."""
    return Policy.CLOSED if kithost_event in BLOCKING_EVENTS else Policy.OPEN


_HANDLER_KEYS: Final = ("event", "matcher", "command", "timeout", "policy", "name")


def load_hooks(raw: object) -> HooksConfig:
    """Validate a manifest's ``[hooks]`` table::

        [hooks]
        format = "claude"                 # claude | gemini | codex
        [[hooks.handlers]]
        event = "PreToolUse"              # the agent's own event name
        matcher = "Bash"                  # optional: regex over their tool name
        command = "$KITHOST_EXTENSION_DIR/guard.sh"
        timeout = "5s"                    # a duration with a unit (required)
        policy = "closed"                 # optional: closed (default for gates) | open

    Raises :class:`HooksConfigError` naming the entry and key.
    """
    if not isinstance(raw, Mapping):
        raise HooksConfigError("hooks must be a table with format = \"claude|gemini|codex\" and [[hooks.handlers]]")
    unknown = sorted(set(raw) - {"format", "handlers"})
    if unknown:
        raise HooksConfigError(f"hooks: unknown key(s) {unknown} (known: format, handlers)")
    name = raw.get("format")
    if name not in FORMATS:
        raise HooksConfigError(f"hooks.format must be one of {', '.join(FORMATS)} (got {name!r})")
    fmt = FORMATS[str(name)]
    entries = raw.get("handlers", [])
    if not isinstance(entries, list) or not entries:
        raise HooksConfigError("hooks.handlers must be a non-empty list of tables ([[hooks.handlers]])")
    return HooksConfig(fmt, tuple(_handler(fmt, i, entry) for i, entry in enumerate(entries)))


def _handler(fmt: Format, index: int, entry: object) -> HookHandler:
    where = f"hooks.handlers[{index}]"
    if not isinstance(entry, Mapping):
        raise HooksConfigError(f"{where} must be a table")
    unknown = sorted(set(entry) - set(_HANDLER_KEYS))
    if unknown:
        raise HooksConfigError(f"{where}: unknown key(s) {unknown} (known: {', '.join(_HANDLER_KEYS)})")
    event = entry.get("event")
    if not isinstance(event, str) or event not in fmt.events:
        why = fmt.unmapped.get(str(event))
        detail = f"it does not map to kithost: {why}" if why else f"known {fmt.name} events: {', '.join(fmt.events)}"
        raise HooksConfigError(f"{where}.event {event!r}: {detail}")
    command = entry.get("command")
    if isinstance(command, list) and command and all(isinstance(c, str) and c for c in command):
        command = tuple(command)
    elif not isinstance(command, str) or not command.strip():
        raise HooksConfigError(f"{where}.command must be a shell command (a string) or an argv list")
    if "timeout" not in entry:
        raise HooksConfigError(f"{where}.timeout is missing: write one with a unit, "
                               f"such as \"{format_duration(fmt.default_timeout_ms)}\" ({fmt.name}'s default)")
    try:
        timeout = duration_ms(entry["timeout"], f"{where}.timeout", fmt.timeout_unit)
    except DurationError as exc:
        raise HooksConfigError(str(exc)) from None
    if timeout <= 0:
        raise HooksConfigError(f"{where}.timeout must be greater than 0")
    kithost_event = fmt.events[event]
    policy = entry.get("policy", default_policy(kithost_event))
    if policy not in tuple(Policy):
        raise HooksConfigError(f"{where}.policy must be \"open\" or \"closed\" (got {policy!r})")
    matcher = entry.get("matcher")
    if matcher is not None:
        if not isinstance(matcher, str):
            raise HooksConfigError(f"{where}.matcher must be a string (a regular expression)")
        try:
            re.compile(matcher)
        except re.error as exc:
            raise HooksConfigError(f"{where}.matcher {matcher!r} is not a regular expression: {exc}") from None
    label = entry.get("name", "")
    if not isinstance(label, str):
        raise HooksConfigError(f"{where}.name must be a string")
    return HookHandler(event, kithost_event, command, timeout, Policy(policy), matcher, label)


# ---------------------------------------------------------------------------------------------- running one hook


@dataclass(frozen=True, slots=True)
class Run:
    """What one hook process did."""

    #: Exit status; ``None`` when it timed out or could not start.
    code: int | None
    stdout: str
    stderr: str
    #: It was killed at its deadline.
    timed_out: bool = False
    #: Why it could not start (``OSError`` text), else ``""``.
    spawn_error: str = ""
    #: Seconds from just before the spawn to the end (or the kill).
    elapsed_s: float = 0.0


def run_command(command: str | Sequence[str], stdin: str, timeout_s: float, cwd: str,
                env: Mapping[str, str], extra_arg: str | None = None) -> Run:
    """Run one hook: ``bash -c command`` (or the argv), JSON on stdin, killed with its process group at the deadline.

    The clock starts before the spawn, so a slow interpreter start counts.
    ``extra_arg`` is appended to an argv (Codex ``notify`` takes its JSON there).
    """
    start = time.monotonic()
    if isinstance(command, str):
        shell = shutil.which("bash", path=env.get("PATH")) or "/bin/sh"
        argv = [shell, "-c", command]
    else:
        argv = list(command)
    if extra_arg is not None:
        argv.append(extra_arg)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=cwd, env=dict(env), start_new_session=True)
    except OSError as exc:
        return Run(None, "", "", spawn_error=f"{argv[0]}: {exc.strerror or exc}",
                   elapsed_s=time.monotonic() - start)
    left = max(0.0, timeout_s - (time.monotonic() - start))
    try:
        out, err = proc.communicate(stdin.encode(), timeout=left)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        elapsed = time.monotonic() - start
        try:
            out, err = proc.communicate(timeout=2.0)
        except subprocess.TimeoutExpired:  # a grandchild kept a pipe open outside the group
            out, err = b"", b""
        return Run(None, _text(out), _text(err), timed_out=True, elapsed_s=elapsed)
    finally:
        if proc.returncode is None:
            _kill_group(proc)
            proc.wait()
    _kill_group(proc)  # whatever it left running in its group dies with it
    return Run(proc.returncode, _text(out), _text(err), elapsed_s=time.monotonic() - start)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _text(data: bytes | None) -> str:
    return (data or b"")[:OUTPUT_LIMIT].decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class Answer:
    """What one hook's run means for its event."""

    #: Block / deny / stop the event with :attr:`reason`.
    block: bool = False
    reason: str = ""
    #: Text for the model (appended to a tool result or a prompt; injected at the next turn for SessionStart).
    context: str = ""
    #: A message for the user (``systemMessage``), shown as an info line.
    message: str = ""
    #: A failure that was let through (policy ``open``): logged, not shown to the model.
    warning: str = ""
    #: Replacement tool output (``updatedMCPToolOutput``), or ``None``.
    output: str | None = None
    #: The hook allowed explicitly (``permissionDecision: allow`` / ``decision: allow``).
    allow: bool = False
    #: The hook failed (timeout, crash, other exit, no start) and its policy is ``closed``: :attr:`block` is set.
    failed: bool = False


def decide(handler: HookHandler, run: Run) -> Answer:
    """Map one hook's exit status and output to an :class:`Answer` (the tables in docs/hooks.md)."""
    label = handler.label
    if run.timed_out or run.spawn_error or run.code not in (0, 2):
        if run.timed_out:
            why = f"hook {label!r} timed out after {format_duration(handler.timeout_ms)}"
        elif run.spawn_error:
            why = f"hook {label!r} could not start: {run.spawn_error}"
        else:
            detail = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "no output on stderr"
            why = f"hook {label!r} failed (exit {run.code}): {detail}"
        if handler.policy is Policy.CLOSED:
            return Answer(block=True, reason=f"{why} (fail-closed)", failed=True)
        return Answer(warning=why)
    if run.code == 2:
        reason = run.stderr.strip() or f"blocked by hook {label!r}"
        return Answer(block=True, reason=reason)
    text = run.stdout.strip()
    if not text.startswith("{"):
        # Plain stdout: context for the prompt / session start (Claude, Codex); ignored elsewhere.
        plain = handler.event in ("UserPromptSubmit", "SessionStart")
        return Answer(context=text if plain else "")
    try:
        reply = json.loads(text)
    except ValueError:
        return Answer(message=text)
    if not isinstance(reply, dict):
        return Answer()
    return _decision(handler, reply)


def _decision(handler: HookHandler, reply: Mapping[str, Any]) -> Answer:
    specific = reply.get("hookSpecificOutput")
    specific = specific if isinstance(specific, Mapping) else {}
    message = str(reply.get("systemMessage") or "")
    context = str(specific.get("additionalContext") or reply.get("additionalContext") or "")
    if reply.get("continue") is False:
        reason = str(reply.get("stopReason") or reply.get("reason") or f"stopped by hook {handler.label!r}")
        return Answer(block=True, reason=reason, message=message, context=context)
    permission = str(specific.get("permissionDecision") or "")
    decision = str(reply.get("decision") or "").lower()
    reason = str(specific.get("permissionDecisionReason") or reply.get("reason") or "")
    if permission == "deny" or decision in ("block", "deny"):
        return Answer(block=True, reason=reason or f"blocked by hook {handler.label!r}", message=message,
                      context=context)
    if permission == "ask" or decision == "ask":
        # kithost has no confirmation prompt: the safe reading of "ask the user" is "not without asking".
        why = reason or "it asks for the user's confirmation"
        return Answer(block=True, reason=f"hook {handler.label!r} asks for confirmation, which kithost cannot "
                                         f"prompt for: {why}", message=message)
    updated = specific.get("updatedInput", specific.get("tool_input"))
    if handler.kithost_event == "tool_call" and isinstance(updated, Mapping):
        # A rewritten tool input cannot be applied to kithost's tool_call; running the original instead of
        # what the hook approved would be wrong, so it does not run.
        return Answer(block=True, reason=f"hook {handler.label!r} rewrote the tool input "
                                         f"({json.dumps(updated)[:200]}), which kithost cannot apply",
                      message=message)
    output = specific.get("updatedMCPToolOutput")
    allow = permission == "allow" or decision in ("allow", "approve")
    return Answer(context=context, message=message, allow=allow,
                  output=output if isinstance(output, str) else (json.dumps(output) if output is not None else None))


# ---------------------------------------------------------------------------------------------- payloads


def _parse_args(event: Mapping[str, Any]) -> dict[str, Any]:
    args = event.get("parsed_args")
    if isinstance(args, dict):
        return args
    try:
        parsed = json.loads(event.get("input") or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _tool_response(fmt: Format, tool: str, args: Mapping[str, Any], content: str, is_error: bool) -> Any:
    if fmt.name == "gemini":
        out: dict[str, Any] = {"llmContent": content, "returnDisplay": content}
        if is_error:
            out["error"] = content
        return out
    if tool == "bash":
        return {"stdout": content, "stderr": "", "interrupted": False, "isImage": False}
    response: dict[str, Any] = {"content": content, "success": not is_error}
    if "path" in args:
        response["filePath"] = args["path"]
    return response


def hook_input(fmt: Format, handler: HookHandler, kithost_event: str, event: Mapping[str, Any],
               info: Mapping[str, str]) -> dict[str, Any]:
    """The JSON object ``handler``'s agent would send for this kithost event."""
    payload: dict[str, Any] = {"session_id": info.get("session_id", ""),
                               "transcript_path": info.get("session_path", ""),
                               "cwd": info.get("cwd", ""), "hook_event_name": handler.event}
    if fmt.name == "gemini":
        payload["timestamp"] = datetime.now(UTC).isoformat()
    if fmt.name == "codex":
        payload["model"] = info.get("model", "")
    if kithost_event in ("tool_call", "tool_result"):
        tool = str(event.get("tool_name", ""))
        args = _parse_args(event)
        payload["tool_name"] = fmt.their_tool(tool)
        payload["tool_input"] = fmt.their_args(tool, args)
        payload["tool_use_id"] = event.get("tool_call_id", "")
        if kithost_event == "tool_result":
            content, is_error = str(event.get("content", "")), bool(event.get("is_error"))
            payload["tool_response"] = _tool_response(fmt, tool, args, content, is_error)
            if handler.event == "PostToolUseFailure":
                payload["error"] = content
    elif kithost_event == "input":
        payload["prompt"] = event.get("text", "")
    elif kithost_event == "session_start":
        payload["source"] = "startup"
    elif kithost_event == "session_shutdown":
        payload["reason"] = event.get("reason", "other")
    elif kithost_event == "agent_end":
        response = str(event.get("response", ""))
        if handler.event == "notify":  # Codex's legacy notify program: JSON as its last argument
            return {"type": "agent-turn-complete", "turn-id": info.get("turn_id", ""), "input-messages": [],
                    "last-assistant-message": response}
        payload["stop_hook_active"] = False
        payload["last_assistant_message"] = response
        if fmt.name == "gemini":
            payload["prompt_response"] = response
    elif kithost_event in ("subagent_start", "subagent_end"):
        payload["agent_id"] = event.get("tool_call_id", "")
        payload["agent_type"] = "subagent"
        if kithost_event == "subagent_end":
            payload["stop_hook_active"] = False
            payload["last_assistant_message"] = event.get("response", "")
    elif kithost_event == "before_compact":
        payload["trigger"] = "auto" if event.get("is_automatic") else "manual"
        payload["custom_instructions"] = ""
    return payload


def _subject(fmt: Format, kithost_event: str, event: Mapping[str, Any]) -> str | None:
    """What a matcher is compared with for this event (``None``: nothing)."""
    if kithost_event in ("tool_call", "tool_result"):
        return fmt.their_tool(str(event.get("tool_name", "")))
    if kithost_event == "session_start":
        return "startup"
    if kithost_event == "before_compact":
        return "auto" if event.get("is_automatic") else "manual"
    return None


# ---------------------------------------------------------------------------------------------- the extension


@dataclass
class Adapter:
    """The running adapter: one per extension process (see the module doc)."""

    config: HooksConfig
    #: The extension's folder (``KITHOST_EXTENSION_DIR`` for the hooks; their cwd when the agent's is unreadable).
    directory: Path
    #: ``fn(handler, stdin, timeout_s, cwd, env, extra_arg) -> Run``; :func:`run_command` unless a test swaps it.
    runner: Callable[..., Run] = run_command
    info: dict[str, str] = field(default_factory=dict)
    pending_context: list[str] = field(default_factory=list)
    #: ``get_info`` was asked this session (asked again at each session start, never per event).
    asked: bool = False
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=8,
                                                                                 thread_name_prefix="hook"))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def env(self) -> dict[str, str]:
        """The hooks' environment: the extension's own, without its channel endpoints, plus the project dir."""
        hidden = {ENV_EVENTS, ENV_CALLS, ENV_CONTROL, ENV_SECRET_FILE, ENV_VERSIONS, ENV_PLAN}
        env = {k: v for k, v in os.environ.items() if k not in hidden}
        env["KITHOST_EXTENSION_DIR"] = str(self.directory)
        for name in self.config.format.project_env:
            env[name] = self.cwd()
        return env

    def cwd(self) -> str:
        """The agent's working directory when this process may enter it, else the extension's folder."""
        cwd = self.info.get("cwd", "")
        return cwd if cwd and os.access(cwd, os.R_OK | os.X_OK) else str(self.directory)

    def refresh(self, ctx: Any) -> None:
        """Ask the host for the session id, transcript path and cwd (once per session)."""
        self.asked = True
        try:
            self.info = dict(ctx.get_info())
        except Exception as exc:  # noqa: BLE001 - the hooks still run, with empty fields
            print(f"kithost hooks: get_info failed: {exc}", file=sys.stderr)

    def run(self, kithost_event: str, event: Mapping[str, Any], ctx: Any) -> list[tuple[HookHandler, Answer]]:
        """Run the matching handlers concurrently; their answers in file order."""
        if not self.asked or kithost_event == "session_start":
            self.refresh(ctx)
        fmt = self.config.format
        subject = _subject(fmt, kithost_event, event)
        chosen = [h for h in self.config.on(kithost_event) if h.matches(subject)
                  and not (h.event == "PostToolUseFailure" and not event.get("is_error"))
                  and not (h.event == "PostToolUse" and fmt.name == "claude" and event.get("is_error")
                           and any(o.event == "PostToolUseFailure" for o in self.config.handlers))]
        if not chosen:
            return []
        env, cwd = self.env(), self.cwd()

        def one(handler: HookHandler) -> Answer:
            data = json.dumps(hook_input(fmt, handler, kithost_event, event, self.info))
            argv_json = handler.event == "notify"
            run = self.runner(handler.command, "" if argv_json else data, handler.timeout_ms / 1000, cwd, env,
                              data if argv_json else None)
            return decide(handler, run)

        answers = list(self._pool.map(one, chosen))
        for answer in answers:
            if answer.warning:
                print(f"kithost hooks: {answer.warning} (policy open: ignored)", file=sys.stderr)
                ctx.error(answer.warning)
            if answer.message:
                ctx.info(answer.message)
        return list(zip(chosen, answers, strict=True))

    # ---- one kithost handler per event kind

    def on_tool_call(self, event: Any, ctx: Any) -> dict[str, Any] | None:
        for handler, answer in self.run("tool_call", dict(event), ctx):
            if answer.block:
                return {"block": True, "reason": f"{answer.reason} [{handler.event} hook]"}
        return None

    def on_tool_result(self, event: Any, ctx: Any) -> dict[str, Any] | None:
        payload = dict(event)
        content, is_error = str(payload.get("content", "")), bool(payload.get("is_error"))
        changed = False
        for handler, answer in self.run("tool_result", payload, ctx):
            if answer.output is not None:
                content, changed = answer.output, True
            if answer.failed:  # a fail-closed post-tool hook failed: the output is withheld, never passed unchecked
                content, is_error, changed = answer.reason, True, True
            elif answer.block:
                changed = True
                if self.config.format.name == "gemini":  # AfterTool deny: the reason replaces the result
                    content, is_error = answer.reason, True
                else:  # PostToolUse block: the tool ran; the reason is fed back to the model
                    content = f"{content}\n\n{handler.event} hook: {answer.reason}"
            if answer.context:
                content, changed = f"{content}\n\n{answer.context}", True
        return {"content": content, "is_error": is_error} if changed else None

    def on_input(self, event: Any, ctx: Any) -> dict[str, Any] | None:
        payload = dict(event)
        contexts: list[str] = []
        for handler, answer in self.run("input", payload, ctx):
            if answer.block:
                return {"action": "handled", "reason": f"{answer.reason} [{handler.event} hook]"}
            if answer.context:
                contexts.append(answer.context)
        if not contexts:
            return None
        return {"action": "transform", "text": "\n\n".join([str(payload.get("text", "")), *contexts])}

    def on_before_compact(self, event: Any, ctx: Any) -> dict[str, Any] | None:
        """The agents' pre-compaction hooks are advisory; only a fail-closed failure cancels the compaction."""
        for handler, answer in self.run("before_compact", dict(event), ctx):
            if answer.failed:
                return {"cancel": True, "reason": answer.reason}
            if answer.block:
                ctx.info(f"{handler.event} hook: {answer.reason}")
        return None

    def on_session_start(self, event: Any, ctx: Any) -> None:
        found = [a.context for _, a in self.run("session_start", dict(event), ctx) if a.context]
        with self._lock:
            self.pending_context = found

    def on_before_agent_start(self, event: Any, ctx: Any) -> dict[str, Any] | None:
        with self._lock:
            found, self.pending_context = self.pending_context, []
        if not found:
            return None
        inject = str(dict(event).get("inject_text", ""))
        return {"inject_text": "\n\n".join([t for t in (inject, *found) if t])}

    def observer(self, kithost_event: str) -> Callable[[Any, Any], None]:
        """A notify handler: runs the hooks; their decisions cannot change what already happened."""

        def handle(event: Any, ctx: Any) -> None:
            for handler, answer in self.run(kithost_event, dict(event), ctx):
                if answer.block:
                    ctx.info(f"{handler.event} hook: {answer.reason}")

        return handle


def build_extension(launcher: str | os.PathLike[str], runner: Callable[..., Run] | None = None) -> Extension:
    """The :class:`~ext_sdk.Extension` for the folder of ``launcher`` (its ``extension.toml`` ``[hooks]``).

    One handler per kithost event the hooks need, each declaring the derived
    deadline and policy (see the module doc). ``runner`` replaces
    :func:`run_command` (tests).
    """
    directory = Path(launcher).resolve().parent
    manifest = tomllib.loads((directory / "extension.toml").read_text(encoding="utf-8"))
    config = load_hooks(manifest.get("hooks"))
    adapter = Adapter(config, directory, runner or run_command)
    ext = Extension(str(manifest["name"]), version=str(manifest.get("version", "0.0.0")),
                    permissions=list(manifest.get("permissions", [])))
    gates: dict[str, Callable[[Any, Any], Any]] = {
        "tool_call": adapter.on_tool_call, "tool_result": adapter.on_tool_result, "input": adapter.on_input,
        "before_compact": adapter.on_before_compact,
    }
    for kithost_event in config.kithost_events:
        if kithost_event == "before_agent_start":
            ext.on(kithost_event, adapter.on_before_agent_start)
            continue
        fn = gates.get(kithost_event)
        if fn is None:
            fn = adapter.on_session_start if kithost_event == "session_start" else adapter.observer(kithost_event)
        ext.on(kithost_event, fn, deadline_ms=config.deadline_ms(kithost_event), policy=config.policy(kithost_event))
    return ext
