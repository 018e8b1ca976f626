"""``kithost run`` and ``kithost chat`` without argparse: the CLI builds :class:`RunArgs`/:class:`ChatArgs`.

``run_command`` — one turn (plus follow-ups queued by extensions):

* human mode: the answer and tool activity stream to ``stdout``
  (:func:`~host.agent.render.render_event_for_humans`); extension prints and
  extension failures go to ``stderr``;
* ``json`` mode: one JSON object per line on ``stdout`` for every event —
  ``{"type": <kit's event name>, **payload}`` — then one
  ``{"type": "result", ...}`` (:meth:`TurnResult.to_json` plus ``session`` and
  ``model``);
* exit status: 0 completed or handled, 1 the turn ended in error, 130 cancelled.

``chat_command`` — interactive: reads lines from ``stdin`` (a TTY or not: a
pipe plays a conversation), streams each turn, and understands slash commands
(``/help`` lists them: ``/model /fork /new /compact /ext /session /exit`` and
every extension command). Ctrl-C during a turn (or a slash command's model
call) cancels it; at the prompt it only reminds how to quit; end of input
ends the chat (status 0).

Both raise :class:`~host.errors.HostError` subclasses for what the user can get
wrong at start (missing script, bad session file, unknown model or missing
key, an extension that does not start); the CLI prints them as one line.
Errors in a chat command (unknown entry id, unusable model) are printed and
the chat goes on.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..config import HostConfig
from ..errors import HostError
from .agent_config import AgentConfig
from .loop import TurnResult
from .render import render_event_for_humans
from .session import AgentSession

__all__ = ["ChatArgs", "RunArgs", "chat_command", "run_command"]

_EXIT = {"completed": 0, "handled": 0, "error": 1, "cancelled": 130}


@dataclass(frozen=True, slots=True)
class RunArgs:
    """Arguments of ``kithost run``."""

    prompt: str
    #: ``None``: the resumed session's model.
    model: str | None = None
    #: Script for a ``scripted/<name>`` model.
    script: Path | None = None
    #: ``-e`` paths, loaded after the search directories (see ``discover``).
    extensions: Sequence[Path] = ()
    #: Session file to create or resume; ``None``: an ephemeral session.
    session: Path | None = None
    #: One JSON object per event on stdout.
    json: bool = False
    #: Working directory of the tools; ``None``: the current directory.
    cwd: Path | None = None
    #: The operator's configuration (``kithost --config``).
    config: HostConfig | None = None
    #: Agent options (steps, retries, compaction...).
    agent_config: AgentConfig | None = None
    #: Also load extensions from the config's search directories.
    discover: bool = True


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


@contextmanager
def _interrupts(on_interrupt: Callable[[], bool]) -> Iterator[None]:
    """While inside, Ctrl-C calls ``on_interrupt``; ``False`` from it raises ``KeyboardInterrupt``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if not on_interrupt():
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _printer(err: TextIO) -> Callable[[str, str, str], None]:
    def on_print(extension: str, level: str, text: str) -> None:
        tag = {"info": " info", "error": " error"}.get(level, "")
        err.write("".join(f"[{extension}{tag}] {line}\n" for line in (text.splitlines() or [""])))
        err.flush()

    return on_print


def _human_sink(out: TextIO) -> Callable[[str, dict[str, Any]], None]:
    def on_event(event: str, data: dict[str, Any]) -> None:
        text = render_event_for_humans(event, data)
        if text:
            out.write(text)
            out.flush()

    return on_event


def _json_sink(out: TextIO) -> Callable[[str, dict[str, Any]], None]:
    def on_event(event: str, data: dict[str, Any]) -> None:
        out.write(json.dumps({"type": event, **data}, ensure_ascii=False, default=str) + "\n")
        out.flush()

    return on_event


def _report_failures(result: TurnResult, err: TextIO) -> None:
    for turn in (result, *result.followups):
        for failure in turn.failures:
            err.write(f"kithost: {failure.describe()}\n")
    err.flush()


def run_command(args: RunArgs, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """``kithost run`` (contract in the module doc); returns the exit status."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    sink = _json_sink(out) if args.json else _human_sink(out)
    session = AgentSession.open(args.model, args.script, list(args.extensions), args.session,
                                args.cwd or Path(os.getcwd()), args.config, agent_config=args.agent_config,
                                on_event=sink, on_print=_printer(err), discover=args.discover)
    with session:
        def on_interrupt() -> bool:
            if session.loop.cancelled:
                return False  # a second Ctrl-C: give up
            session.cancel()
            return True

        with _interrupts(on_interrupt):
            result = session.run(args.prompt, "cli")
        where = {"model": session.model, "session": None if session.ephemeral else str(session.path)}
    # closed (session_shutdown went out): the result line is the last one
    if args.json:
        out.write(json.dumps({"type": "result", **result.to_json(), **where}, ensure_ascii=False,
                             default=str) + "\n")
        out.flush()
    else:
        _report_failures(result, err)
    last = result.followups[-1] if result.followups else result
    return _EXIT.get(last.stop_reason, 1)


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

    def __init__(self, session: AgentSession, out: TextIO, err: TextIO, verbose: bool) -> None:
        self.session = session
        self.out = out
        self.err = err
        self.verbose = verbose
        #: True while something cancellable runs (Ctrl-C cancels instead of interrupting).
        self.busy = False

    def say(self, text: str) -> None:
        self.out.write(text if text.endswith("\n") else text + "\n")
        self.out.flush()

    def turn(self, prompt: str) -> None:
        result = self.session.run(prompt, "interactive")
        if self.verbose:
            _report_failures(result, self.err)

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
    inp, out, err = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    interactive = inp.isatty()
    session = AgentSession.open(args.model, args.script, list(args.extensions), args.session,
                                args.cwd or Path(os.getcwd()), args.config, agent_config=args.agent_config,
                                on_event=_human_sink(out), on_print=_printer(err), discover=args.discover)
    chat = _Chat(session, out, err, args.verbose)

    def on_interrupt() -> bool:
        if chat.busy:
            session.cancel()
            return True
        return False

    with session, _interrupts(on_interrupt):
        if interactive:
            chat.say(f"kithost chat — model {session.model}; /help for commands, Ctrl-D to quit")
        while True:
            try:
                if interactive:
                    out.write("you> ")
                    out.flush()
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
                out.flush()
    return 0
