"""Playing a script: which step answers each model call.

Contract (:class:`ScriptPlayer`):

* Every model call consumes the next step, in order, across all turns. Turns
  only group steps; with ``strict_turns`` (default) the first step of each turn
  also checks that the last message it receives is a ``user`` message, so an
  agent that makes more (or fewer) calls than scripted fails loudly instead
  of drifting.
* A step's ``expect`` conditions are checked against the request before the
  step is played; a failure raises :class:`ScriptMismatch` and does **not**
  advance the cursor (the same step fails again if called again).
* An error step (``{"error": ...}``) is played ``times`` times (each call
  raises), then consumed.
* After the last step every call gets ``end_text`` (and a warning).
* Tool call ids are deterministic: ``call_<turn>_<step>_<i>`` unless the script gives one.
* **A cancelled turn drops the rest of its steps**: when the call after a step
  shows that the turn it belongs to was cut short, the cursor moves to the
  first step of the next turn before that call is answered, so the next prompt
  plays the next turn, not the cancelled turn's leftovers. Cut short means:

  - the step's stream was abandoned: the provider reported it opened
    (:meth:`ScriptPlayer.stream_opened`) and never reported its end
    (:meth:`ScriptPlayer.stream_closed`) — a cancel stops reading the stream;
  - or the call is a new prompt (its last message has role ``user``) and a
    result of the step's tool calls says it was cancelled (the agent's
    ``Error: cancelled …`` for calls not run, the bash tool's ``[cancelled; …]``).

  A turn cancelled after its tools all finished and before its next model call
  leaves no trace in the messages (a steered message looks the same): its
  leftover steps are played, as before.

:class:`ScriptLibrary` shares one player per script file across calls.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..errors import ScriptError, ScriptMismatch
from .script import ErrorStep, MessageStep, Script, Step, searchable_text
from .script_file import load_script

__all__ = ["CANCELLED_MARKERS", "Played", "ScriptLibrary", "ScriptPlayer"]

log = logging.getLogger("kithost.agent.scripted")

#: Text that marks a tool result as cancelled: the agent loop's result for calls not run, the bash tool's note.
CANCELLED_MARKERS: Final = ("Error: cancelled", "[cancelled")


@dataclass(frozen=True, slots=True)
class Played:
    """What one call got from :meth:`ScriptPlayer.next`."""

    #: The step to play; for ``ended`` a synthesised :class:`MessageStep` with the end text.
    step: Step
    #: 1-based turn and step numbers (0, 0 once the script ended).
    turn: int
    index: int
    #: 1-based count of calls made to this player.
    call: int
    #: True when the script had no steps left.
    ended: bool = False
    #: For error steps: which failure this is (1..times).
    attempt: int = 0

    def tool_call_id(self, i: int) -> str:
        """The id of this step's ``i``-th tool call."""
        assert isinstance(self.step, MessageStep)
        explicit = self.step.tool_calls[i].id
        return explicit if explicit else f"call_{self.turn}_{self.index}_{i}"


class ScriptPlayer:
    """Plays one script, one step per call. Thread-safe."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self._lock = threading.Lock()
        self._turn = 0
        self._index = 0
        self._failures = 0
        self._calls = 0
        #: Call number of a streamed step whose stream has not reached its end.
        self._open_stream: int | None = None
        #: Tool call ids of the last message step played.
        self._last_call_ids: frozenset[str] = frozenset()

    @property
    def finished(self) -> bool:
        """True once every step was consumed."""
        with self._lock:
            return self._turn >= len(self.script.turns)

    @property
    def calls(self) -> int:
        """How many calls were made (mismatches included)."""
        with self._lock:
            return self._calls

    def reset(self) -> None:
        """Rewind to the first step."""
        with self._lock:
            self._turn = self._index = self._failures = self._calls = 0
            self._open_stream = None
            self._last_call_ids = frozenset()

    def stream_opened(self, played: Played) -> None:
        """``played`` is being streamed; until :meth:`stream_closed`, the next call takes it as cancelled."""
        with self._lock:
            self._open_stream = played.call

    def stream_closed(self, played: Played) -> None:
        """``played``'s stream reached its end (its last chunk was read, or its scripted error raised)."""
        with self._lock:
            if self._open_stream == played.call:
                self._open_stream = None

    def _cut_short(self, messages: Sequence[Mapping[str, Any]]) -> str | None:
        """Why the turn in progress ended before its last step (a cancel), or ``None`` (lock held)."""
        abandoned, self._open_stream = self._open_stream is not None, None
        if self._index == 0 or self._failures:
            return None  # at a turn's first step (nothing left over), or between an error step's attempts
        if abandoned:
            return "the agent stopped reading the last step's stream"
        if not messages or messages[-1].get("role") != "user":
            return None
        for m in messages:
            if m.get("role") == "tool" and m.get("tool_call_id") in self._last_call_ids:
                text = searchable_text(m)
                if any(marker in text for marker in CANCELLED_MARKERS):
                    return "a tool call of the last step was cancelled"
        return None

    def next(self, messages: Sequence[Mapping[str, Any]], tool_names: Sequence[str] = ()) -> Played:
        """The step for this call; raises :class:`ScriptMismatch` if its conditions fail."""
        with self._lock:
            self._calls += 1
            cut = self._cut_short(messages) if self._turn < len(self.script.turns) else None
            if cut is not None:
                dropped = len(self.script.turns[self._turn]) - self._index
                log.info("scripted: %s: turn %d was cancelled (%s); its %d remaining step(s) dropped",
                         self.script.source, self._turn + 1, cut, dropped)
                self._turn += 1
                self._index = 0
            if self._turn >= len(self.script.turns):
                end = MessageStep(text=(self.script.end_text,),
                                  warnings=(f"scripted: {self.script.source} has no more steps "
                                            f"({self.script.step_count} played)",))
                return Played(end, 0, 0, self._calls, ended=True)
            turn = self.script.turns[self._turn]
            step = turn[self._index]
            where = f"turn {self._turn + 1}, step {self._index + 1} (model call {self._calls})"
            problems = step.expect.problems(messages, tool_names)
            if self.script.strict_turns and self._index == 0 and self._failures == 0:
                last_role = str(messages[-1].get("role")) if messages else "(no messages)"
                if last_role != "user":
                    previous = (f"the agent made more model calls in turn {self._turn} than the script has steps"
                                if self._turn else "the first call of a session should end with the user prompt")
                    problems.insert(0, f"a turn's first step expects a new user prompt as the last message, got "
                                       f"role {last_role!r}: {previous} (set \"strict_turns\": false to allow)")
            if problems:
                raise ScriptMismatch(self.script.source, where, "; ".join(problems))
            played = Played(step, self._turn + 1, self._index + 1, self._calls)
            if isinstance(step, ErrorStep):
                self._failures += 1
                played = Played(step, self._turn + 1, self._index + 1, self._calls, attempt=self._failures)
                if self._failures < step.times:
                    return played
            else:
                self._last_call_ids = frozenset(played.tool_call_id(i) for i in range(len(step.tool_calls)))
            self._failures = 0
            self._index += 1
            if self._index >= len(turn):
                self._turn += 1
                self._index = 0
            return played


class ScriptLibrary:
    """Players by script path, shared by every call that names the same file. Thread-safe.

    A file that changed on disk (mtime, size or inode) since it was loaded is
    reloaded and starts from its first step.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._players: dict[str, tuple[tuple[int, int, int], ScriptPlayer]] = {}

    def player(self, path: str | os.PathLike[str]) -> ScriptPlayer:
        """The player for ``path``; raises :class:`ScriptError` if it cannot be loaded."""
        key = os.path.abspath(path)
        try:
            st = os.stat(key)
        except OSError as exc:
            raise ScriptError(str(path), "", f"cannot read it ({exc.strerror or exc})") from None
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            known = self._players.get(key)
            if known is not None and known[0] == signature:
                return known[1]
        player = ScriptPlayer(load_script(key))
        with self._lock:
            known = self._players.get(key)
            if known is not None and known[0] == signature:
                return known[1]
            self._players[key] = (signature, player)
            return player

    def reset(self, path: str | os.PathLike[str] | None = None) -> None:
        """Forget ``path`` (or every script): the next call starts from the first step."""
        with self._lock:
            if path is None:
                self._players.clear()
            else:
                self._players.pop(os.path.abspath(path), None)
