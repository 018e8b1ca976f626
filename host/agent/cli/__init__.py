"""The agent's commands for the terminal: ``kithost run`` and ``kithost chat`` (argparse stays in :mod:`host.cli`).

* :mod:`.run` — one turn, human or JSON output, exit status;
* :mod:`.chat` — the interactive session and its slash commands;
* :mod:`.terminal` — Ctrl-C handling and the event/print sinks both share;
* :mod:`.render` — events as streaming terminal text.
"""

from __future__ import annotations

from .chat import ChatArgs, chat_command
from .render import render_event_for_humans
from .run import RunArgs, run_command

__all__ = ["ChatArgs", "RunArgs", "chat_command", "render_event_for_humans", "run_command"]
