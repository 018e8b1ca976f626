"""``kithost run``: one turn (plus the follow-ups extensions queue), without argparse.

* human mode: the answer and tool activity stream to ``stdout``
  (:func:`~host.agent.cli.render.render_event_for_humans`); extension prints,
  extension failures and, at the end, where the session is kept go to
  ``stderr``;
* ``json`` mode: one JSON object per line on ``stdout`` for every event —
  ``{"type": <kit's event name>, **payload}``; the window events
  (``context_prepare``, ``prepare_step``) too, even when no extension
  subscribed (it sets ``AgentConfig.emit_windows``) — then one
  ``{"type": "result", ...}`` (:meth:`TurnResult.to_json` plus ``session``
  and ``model``). What happens to extensions is on ``stdout`` too, as it
  happens, never as text on ``stderr``: ``kithost.print``,
  ``kithost.handler_failure``, ``kithost.extension_state``,
  ``kithost.restart`` and ``kithost.log`` (other warnings) lines
  (:mod:`.terminal`; shapes in the README);
* stdout closed early (``kithost run … | head``): the turn is cancelled,
  nothing more is written, exit status 141 (as if killed by SIGPIPE), no
  traceback;
* exit status: 0 completed or handled, 1 the turn ended in error, 130 cancelled.

Raises :class:`~host.errors.HostError` subclasses for what the user can get
wrong at start (missing script, bad session file, unknown model or missing
key, an extension that does not start); the CLI prints them as one line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from ext_sdk.events import StopReason

from ...config import HostConfig
from ..agent_config import AgentConfig
from ..session import AgentSession
from .terminal import (
    Output,
    human_sink,
    interrupts,
    json_log_records,
    json_notice_sink,
    json_print_sink,
    json_sink,
    print_sink,
    report_failures,
)

__all__ = ["EXIT_STDOUT_CLOSED", "RunArgs", "run_command"]

#: Exit status by the last turn's stop reason.
_EXIT: dict[StopReason, int] = {StopReason.COMPLETED: 0, StopReason.HANDLED: 0, StopReason.ERROR: 1,
                                StopReason.CANCELLED: 130}

#: Exit status when stdout was closed early: what a shell reports for a death by SIGPIPE.
EXIT_STDOUT_CLOSED = 128 + 13


@dataclass(frozen=True, slots=True)
class RunArgs:
    """Arguments of ``kithost run``."""

    prompt: str
    #: ``None``: the resumed session's model; for a new session with ``script``, ``scripted/<script stem>``.
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
    #: Record every dispatched event to this file (``--record``).
    record: Path | None = None


def run_command(args: RunArgs, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """``kithost run`` (contract in the module doc); returns the exit status."""
    err = stderr or sys.stderr
    out = Output(stdout or sys.stdout)
    with json_log_records(out) if args.json else nullcontext():
        status = _run(args, out, err)
    return EXIT_STDOUT_CLOSED if out.gone else status


def _run(args: RunArgs, out: Output, err: TextIO) -> int:
    agent_config = args.agent_config
    if args.json:  # a sink that wants every event
        agent_config = replace(agent_config or AgentConfig(), emit_windows=True)
    session = AgentSession.open(args.model, args.script, list(args.extensions), args.session,
                                args.cwd or Path(os.getcwd()), args.config, agent_config=agent_config,
                                on_event=json_sink(out) if args.json else human_sink(out),
                                on_print=json_print_sink(out) if args.json else print_sink(err),
                                on_notice=json_notice_sink(out) if args.json else None, discover=args.discover,
                                record=args.record)
    if not args.json:  # the isolation in force, once, where a person reads it
        err.write(f"sandbox: {session.host.confiner.probe.summary()}\n")
    with session:
        out.on_gone = session.cancel  # nobody reads the answer any more: stop working on it

        def on_interrupt() -> bool:
            if session.loop.cancelled:
                return False  # a second Ctrl-C: give up
            session.cancel()
            return True

        with interrupts(on_interrupt):
            result = session.run(args.prompt, "cli")
        where = {"model": session.model, "session": None if session.ephemeral else str(session.path)}
    # closed (session_shutdown went out): the result line is the last one
    if args.json:
        out.write(json.dumps({"type": "result", **result.to_json(), **where}, ensure_ascii=False,
                             default=str) + "\n")
    else:
        report_failures(result, err)
        if where["session"]:
            err.write(f"session: {where['session']} (kithost run --continue PROMPT goes on with it)\n")
    last = result.followups[-1] if result.followups else result
    return _EXIT[last.stop_reason]
