"""``kithost chat``: an interactive session, without argparse.

On a terminal (stdin and stdout both TTYs) the chat runs in :class:`.tty.TerminalUI`:
line editing, a persisted history, completion of slash commands, colour,
a spinner with the elapsed time while the model works, and extension prints
and warnings shown above the prompt. Otherwise it reads lines from ``stdin``
(a pipe plays a conversation) and streams each turn to ``stdout`` (extension
prints and failures to ``stderr``), with no escape sequence. Both understand
slash commands (``/help`` lists them: ``/model /fork /new /compact /ext
/session /exit`` and every extension command with its description).
Ctrl-C during a turn (or a slash command's model call) cancels it; at the
prompt it only reminds how to quit; end of input ends the chat (status 0).
When ``stdout`` goes away (a closed pipe), the running turn is cancelled and
the chat ends with status 141, quietly.

Raises :class:`~host.errors.HostError` subclasses for what the user can get
wrong at start, like ``kithost run``. Errors in a chat command (unknown entry
id, unusable model) are printed and the chat goes on.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO, cast

from ...config import HostConfig
from ...errors import HostError
from ...exthost.host import ExtensionCommand
from ...exthost.manifest import Manifest
from ...exthost.trust import Verdict
from ..agent_config import AgentConfig
from ..emitter import EventSink
from ..prompts_ui import TerminalPrompts, TerminalStatus
from ..services import PrintSink, format_print
from ..session import AgentSession
from ..sessions_store import history_file
from .render import render_event_for_humans
from .run import EXIT_STDOUT_CLOSED
from .terminal import Output, human_sink, interrupts, log_records_to, print_sink, report_failures

if TYPE_CHECKING:  # prompt_toolkit is imported only when a chat runs on a terminal
    from .tty import TerminalUI

__all__ = ["ChatArgs", "chat_command"]


@dataclass(frozen=True, slots=True)
class ChatArgs:
    """Arguments of ``kithost chat``."""

    model: str | None = None
    script: Path | None = None
    extensions: Sequence[Path] = ()
    session: Path | None = None
    cwd: Path | None = None
    config: HostConfig | None = None
    agent_config: AgentConfig | None = None
    discover: bool = True
    #: Also show ``agent_end`` summaries and extension failures after each turn.
    verbose: bool = field(default=True)
    #: Record every dispatched event to this file (``--record``).
    record: Path | None = None
    #: Reload an extension when a file in its folder changes (``--no-watch`` turns it off).
    watch: bool = True


#: The built-in slash commands: name -> (arguments, description). ``/help`` and completion derive from it;
#: each has a ``_Chat.cmd_<name>`` method (``exit`` aside).
BUILTIN_COMMANDS: Final[Mapping[str, tuple[str, str]]] = {
    "model": ("[NAME]", "show the model, or switch to NAME"),
    "fork": ("[N|ID]", "list the user messages of this branch, or branch before one of them"),
    "new": ("[PROMPT]", "start a new session (and send PROMPT)"),
    "compact": ("", "summarise older messages now"),
    "ext": ("", "list extensions, their state and commands"),
    "session": ("", "show the session file"),
    "reload": ("[NAME]", "reload an extension from its files (every loaded one without NAME)"),
    "help": ("", "this list"),
    "exit": ("", "quit (so does end of input, Ctrl-D)"),
}


def help_text(extension_commands: Sequence[ExtensionCommand]) -> str:
    """``/help``: the built-in commands, then each extension command with its description."""
    lines = ["commands:"]
    lines += [f"  /{name + (' ' + args if args else ''):<19} {text}" for name, (args, text) in BUILTIN_COMMANDS.items()]
    if extension_commands:
        lines.append("extension commands (/NAME [ARGS]):")
        lines += [f"  /{c.name:<19} {c.description or '(no description)'}  [{c.extension}]"
                  for c in extension_commands]
    else:
        lines.append("extension commands are run as /NAME [ARGS] (none loaded)")
    return "\n".join(lines) + "\n"


class _Chat:
    """One chat: the session, the streams, and the slash commands."""

    def __init__(self, session: AgentSession, out: Output, err: TextIO, verbose: bool) -> None:
        self.session = session
        self.out = out
        self.err = err
        self.verbose = verbose
        #: True while something cancellable runs (Ctrl-C cancels instead of interrupting).
        self.busy = False
        #: True while /reload runs (its result is printed by the command, not by the notice).
        self.reloading = False

    def say(self, text: str) -> None:
        self.out.write(text if text.endswith("\n") else text + "\n")

    def turn(self, prompt: str) -> None:
        result = self.session.run(prompt, "interactive")
        if self.verbose:
            report_failures(result, self.err)

    def command(self, line: str) -> bool:
        """Run one slash command; ``False`` means quit."""
        name, _, rest = line[1:].partition(" ")
        rest = rest.strip()
        handler = getattr(self, f"cmd_{name}", None)
        if name in ("exit", "quit"):
            return False
        if handler is not None:
            handler(rest)
        elif name in self.session.extension_commands():
            output, is_error = self.session.run_extension_command(name, rest)
            self.say(("error: " if is_error else "") + (output or "(no output)"))
        else:
            self.say(f"unknown command /{name}; /help lists them")
        for result in self.session.run_queued():  # a prompt queued by the command (ctx.new_session, steering)
            if self.verbose:
                report_failures(result, self.err)
        return True

    def cmd_help(self, rest: str) -> None:
        self.say(help_text(self.session.extension_command_list()))

    def cmd_model(self, rest: str) -> None:
        if not rest:
            self.say(f"model: {self.session.model}")
        elif not self.session.set_model(rest):
            self.say(f"already using {rest}")

    def cmd_fork(self, rest: str) -> None:
        messages = self.session.user_messages()
        if not rest:
            if not messages:
                self.say("no user messages on this branch yet")
            for i, (entry_id, text) in enumerate(messages, 1):
                preview = " ".join(text.split())[:70]
                self.say(f"  {i:>2}  {entry_id}  {preview}")
            return
        target = messages[int(rest) - 1][0] if rest.isdigit() and 0 < int(rest) <= len(messages) else rest
        result = self.session.fork(target)
        if not result.forked:
            self.say(f"fork cancelled: {result.reason}")
        elif result.user_text:
            self.say(f"branched before: {' '.join(result.user_text.split())[:70]} — send it again, or something else")
        else:
            self.say(f"branched at {result.leaf_id}")

    def cmd_new(self, rest: str) -> None:
        result = self.session.new_session(rest)
        if not result.switched:
            self.say(f"new session cancelled: {result.reason}")
        else:
            self.say(f"new session: {result.path}")

    def cmd_compact(self, rest: str) -> None:
        result = self.session.compact()
        if result.compacted:
            self.say(f"compacted {result.messages_compacted} message(s) into a summary ({result.summary_source})")
        else:
            self.say(f"not compacted: {result.reason}")

    def cmd_ext(self, rest: str) -> None:
        infos = self.session.extensions_info()
        if not infos:
            self.say("no extensions loaded")
        for info in infos:
            stats = info["stats"]
            fails = ", ".join(f"{k}={v}" for k, v in stats["failures"].items()) or "no failures"
            self.say(f"  {info['name']} {info['version']}  {info['state']}  handled "
                     f"{stats['handled'] + stats['notified']}  {fails}")
        for command in self.session.extension_command_list():
            self.say(f"  /{command.name}  (from {command.extension})  {command.description}".rstrip())

    def cmd_reload(self, rest: str) -> None:
        host = self.session.host
        names = [rest] if rest else [ext.name for ext in host.extensions()]
        if not names:
            self.say("no extensions loaded")
        self.reloading = True  # the reload notice says the same: printed here, once
        try:
            for name in names:
                result = host.reload(name)  # returns when the new version serves, or says why not
                self.say(result.describe())
                if not result.ok and result.log_tail:
                    self.say("  its new version's output ends with:\n"
                             + "\n".join(f"    {line}" for line in result.log_tail.splitlines()[-12:]))
        finally:
            self.reloading = False

    def cmd_session(self, rest: str) -> None:
        where = "ephemeral (deleted at exit)" if self.session.ephemeral else f"{self.session.path} (kept)"
        self.say(f"session {self.session.tree.session_id}: {where}")


class _UIStream(io.TextIOBase):
    """A text stream writing through the terminal UI in one style (what :class:`Output` and ``err`` wrap)."""

    def __init__(self, ui: TerminalUI, style: str | None = None) -> None:
        super().__init__()
        self.ui = ui
        self.style = style

    def write(self, text: str) -> int:
        self.ui.write(text, self.style)
        return len(text)

    def writable(self) -> bool:
        return True


class _UILogHandler(logging.Handler):
    """kithost's warnings through the terminal UI (above the prompt, never across the spinner)."""

    def __init__(self, ui: TerminalUI) -> None:
        super().__init__(logging.WARNING)
        self.ui = ui

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad log call must not break the chat
            message = str(record.msg)
        self.ui.write(f"kithost: {message}\n", "warn")


def _ui_log_records(ui: TerminalUI) -> AbstractContextManager[None]:
    return log_records_to(_UILogHandler(ui))


def _ui_sink(ui: TerminalUI) -> EventSink:
    """Events as coloured terminal text through ``ui``."""
    from .tty import style_for_event

    def on_event(event: str, data: dict[str, Any]) -> None:
        text = render_event_for_humans(event, data)
        if text:
            ui.write(text, style_for_event(event, text))

    return on_event


def _ui_print_sink(ui: TerminalUI) -> PrintSink:
    """Extension prints through ``ui`` (above the prompt when it is shown)."""

    def on_print(extension: str, level: str, text: str) -> None:
        ui.write(format_print(extension, level, text), "fail" if level == "error" else "ext")

    return on_print


def chat_command(args: ChatArgs, *, stdin: TextIO | None = None, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> int:
    """``kithost chat`` (contract in the module doc); returns the exit status."""
    inp = stdin or sys.stdin
    interactive = inp.isatty()
    ui: TerminalUI | None = None
    holder: list[AgentSession] = []
    if stdin is None and stdout is None and interactive and sys.stdout.isatty():
        from .tty import TerminalUI, describe_commands

        builtin = {name: text for name, (_, text) in BUILTIN_COMMANDS.items()}
        ui = TerminalUI(sys.stdout, lambda: describe_commands(
            builtin, holder[0].extension_command_list() if holder else ()), history_file())
    out = Output(cast(TextIO, _UIStream(ui)) if ui is not None else stdout or sys.stdout)
    err: TextIO = cast(TextIO, _UIStream(ui, "fail")) if ui is not None else stderr or sys.stderr

    def ask_trust(manifest: Manifest, verdict: Verdict) -> bool:
        """The first-load prompt: what the extension asks for, what changed; trust it?"""
        err.write(f"extension {manifest.name} {manifest.version} ({manifest.path}) is not trusted yet.\n")
        err.writelines(f"  asks for: {line}\n" for line in verdict.request.lines())
        err.writelines(f"  changed since trusted: {change}\n" for change in verdict.changes)
        err.write(f"trust {manifest.name} with this? [y/N] ")
        err.flush()
        return inp.readline().strip().lower() in ("y", "yes")

    chats: list[_Chat] = []

    def on_notice(kind: str, data: dict[str, Any]) -> None:
        """Reloads by the folder watcher (or `kithost ext reload`) are said; /reload says its own."""
        if kind != "reload" or (chats and chats[0].reloading):
            return
        if data.get("ok"):
            changes = data.get("changes") or []
            err.write(f"extension {data.get('name')} reloaded" + (f" ({'; '.join(changes)})" if changes else "")
                      + "\n")
        else:
            err.write(f"extension {data.get('name')}: reload failed: {data.get('reason')}\n")

    aside: TextIO = cast(TextIO, _UIStream(ui, "ext")) if ui is not None else err  # prompts, the status line

    def ask_line(prompt: str) -> str:
        """One answer to an extension's prompt (ctx.select/confirm/input), from the chat's own input."""
        if ui is not None:
            return ui.read(prompt)
        err.write(prompt)
        err.flush()
        line = inp.readline()
        if not line:
            raise EOFError
        return line

    with _ui_log_records(ui) if ui is not None else nullcontext():
        session = AgentSession.open(args.model, args.script, list(args.extensions), args.session,
                                    args.cwd or Path(os.getcwd()), args.config, agent_config=args.agent_config,
                                    on_event=_ui_sink(ui) if ui is not None else human_sink(out),
                                    on_print=_ui_print_sink(ui) if ui is not None else print_sink(err),
                                    discover=args.discover, ask_trust=ask_trust if interactive else None,
                                    on_notice=on_notice, record=args.record,
                                    prompts=TerminalPrompts(aside, ask_line) if interactive else None,
                                    on_status=TerminalStatus(aside))
        holder.append(session)
        if args.watch:
            session.host.watch()
        line = f"sandbox: {session.host.confiner.probe.summary()}\n"
        if ui is not None:
            ui.write(line, "dim")
        else:
            err.write(line)
        chat = _Chat(session, out, err, args.verbose)
        chats.append(chat)
        out.on_gone = session.cancel  # nobody reads the answers any more: stop, then quit below

        def on_interrupt() -> bool:
            if chat.busy:
                session.cancel()
                return True
            return False

        def read_line() -> str | None:
            if ui is not None:
                try:
                    return ui.read()
                except EOFError:
                    return None
            if interactive:
                out.write("you> ")
            return inp.readline() or None

        with session, interrupts(on_interrupt):
            if interactive:
                where = "ephemeral" if session.ephemeral else f"session {session.path}"
                chat.say(f"kithost chat — model {session.model}; {where}; /help for commands, Ctrl-D to quit")
            _loop(chat, read_line, ui)
            if interactive and not session.ephemeral:
                chat.say(f"session kept: {session.path} (kithost chat --continue picks it up)")
    return EXIT_STDOUT_CLOSED if out.gone else 0


def _loop(chat: _Chat, read_line: Callable[[], str | None], ui: TerminalUI | None) -> None:
    """Read and run prompts and slash commands until end of input, ``/exit`` or a closed stdout."""
    while not chat.out.gone:
        try:
            line = read_line()
            if line is None:
                break
            text = line.strip()
            if not text:
                continue
            chat.busy = True
            try:
                with ui.working() if ui is not None else nullcontext():
                    if text.startswith("/"):
                        if not chat.command(text):
                            break
                    else:
                        chat.turn(text)
            except HostError as exc:
                chat.err.write(f"error: {exc}\n")
                chat.err.flush()
            finally:
                chat.busy = False
        except KeyboardInterrupt:
            chat.out.write("\n(Ctrl-D or /exit quits)\n")
