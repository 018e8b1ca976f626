"""``kithost chat``: an interactive session, without argparse.

Reads lines from ``stdin`` (a TTY or not: a pipe plays a conversation),
streams each turn to ``stdout`` (extension prints and failures to
``stderr``), and understands slash commands (``/help`` lists them: ``/model
/fork /new /compact /ext /session /exit`` and every extension command).
Ctrl-C during a turn (or a slash command's model call) cancels it; at the
prompt it only reminds how to quit; end of input ends the chat (status 0).
When ``stdout`` goes away (a closed pipe), the running turn is cancelled and
the chat ends with status 141, quietly.

Raises :class:`~host.errors.HostError` subclasses for what the user can get
wrong at start, like ``kithost run``. Errors in a chat command (unknown entry
id, unusable model) are printed and the chat goes on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ...config import HostConfig
from ...errors import HostError
from ...exthost.manifest import Manifest
from ...exthost.trust import Verdict
from ..agent_config import AgentConfig
from ..session import AgentSession
from .run import EXIT_STDOUT_CLOSED
from .terminal import Output, human_sink, interrupts, print_sink, report_failures

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


_HELP = """\
commands:
  /model [NAME]        show the model, or switch to NAME
  /fork [N|ID]         list the user messages of this branch, or branch before one of them
  /new [PROMPT]        start a new session (and send PROMPT)
  /compact             summarise older messages now
  /ext                 list extensions, their state and commands
  /session             show the session file
  /help                this list
  /exit                quit (so does end of input, Ctrl-D)
extension commands are run as /NAME [ARGS]
"""


class _Chat:
    """One chat: the session, the streams, and the slash commands."""

    def __init__(self, session: AgentSession, out: Output, err: TextIO, verbose: bool) -> None:
        self.session = session
        self.out = out
        self.err = err
        self.verbose = verbose
        #: True while something cancellable runs (Ctrl-C cancels instead of interrupting).
        self.busy = False

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
        return True

    def cmd_help(self, rest: str) -> None:
        self.say(_HELP)

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
        for name, owner in sorted(self.session.extension_commands().items()):
            self.say(f"  /{name}  (from {owner})")

    def cmd_session(self, rest: str) -> None:
        where = "ephemeral" if self.session.ephemeral else str(self.session.path)
        self.say(f"session {self.session.tree.session_id}: {where}")


def chat_command(args: ChatArgs, *, stdin: TextIO | None = None, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> int:
    """``kithost chat`` (contract in the module doc); returns the exit status."""
    inp, out, err = stdin or sys.stdin, Output(stdout or sys.stdout), stderr or sys.stderr
    interactive = inp.isatty()

    def ask_trust(manifest: Manifest, verdict: Verdict) -> bool:
        """The first-load prompt: what the extension asks for, what changed; trust it?"""
        err.write(f"extension {manifest.name} {manifest.version} ({manifest.path}) is not trusted yet.\n")
        err.writelines(f"  asks for: {line}\n" for line in verdict.request.lines())
        err.writelines(f"  changed since trusted: {change}\n" for change in verdict.changes)
        err.write(f"trust {manifest.name} with this? [y/N] ")
        err.flush()
        return inp.readline().strip().lower() in ("y", "yes")

    session = AgentSession.open(args.model, args.script, list(args.extensions), args.session,
                                args.cwd or Path(os.getcwd()), args.config, agent_config=args.agent_config,
                                on_event=human_sink(out), on_print=print_sink(err), discover=args.discover,
                                ask_trust=ask_trust if interactive else None)
    sandbox = session.host.confiner.probe
    err.write(f"sandbox: {sandbox.level}" + (f" ({'; '.join(sandbox.reasons)})" if sandbox.reasons else "") + "\n")
    chat = _Chat(session, out, err, args.verbose)
    out.on_gone = session.cancel  # nobody reads the answers any more: stop, then quit below

    def on_interrupt() -> bool:
        if chat.busy:
            session.cancel()
            return True
        return False

    with session, interrupts(on_interrupt):
        if interactive:
            chat.say(f"kithost chat — model {session.model}; /help for commands, Ctrl-D to quit")
        while not out.gone:
            try:
                if interactive:
                    out.write("you> ")
                line = inp.readline()
                if not line:
                    break
                text = line.strip()
                if not text:
                    continue
                chat.busy = True
                try:
                    if text.startswith("/"):
                        if not chat.command(text):
                            break
                    else:
                        chat.turn(text)
                except HostError as exc:
                    err.write(f"error: {exc}\n")
                    err.flush()
                finally:
                    chat.busy = False
            except KeyboardInterrupt:
                out.write("\n(Ctrl-D or /exit quits)\n")
    return EXIT_STDOUT_CLOSED if out.gone else 0
