"""The agent core's exceptions, all under :class:`host.errors.HostError`.

Our exception hierarchy::

    HostError
      + AgentError              base of everything the agent core raises
        + SessionFileError      a session JSONL file is unreadable or malformed (names file and line)
        + ScriptError           a scripted-provider script file is invalid (names file and step)
          + ScriptMismatch      a script step's ``expect`` did not hold for the request it got
        + LLMCallError          a model call failed (after retries); litellm's error, converted
        + ModelError            a model name litellm cannot resolve, or one whose API key is not set
        + AgentBusyError        an operation that needs an idle agent was asked for while a turn runs

Each message says what is wrong and, where it can, what to do about it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import HostError

__all__ = [
    "AgentBusyError",
    "AgentError",
    "LLMCallError",
    "ModelError",
    "ScriptError",
    "ScriptMismatch",
    "SessionFileError",
]


class AgentError(HostError):
    """Base of every agent-core error."""


class SessionFileError(AgentError):
    """A session file cannot be read, or one of its lines is malformed.

    ``line`` is 1-based; 0 means the problem is not tied to one line.
    """

    def __init__(self, path: Path, line: int, problem: str) -> None:
        where = f"{path}, line {line}" if line else str(path)
        super().__init__(f"session file {where}: {problem}")
        #: The session file.
        self.path = path
        #: 1-based line number, or 0.
        self.line = line
        #: What is wrong, in words.
        self.problem = problem


class ScriptError(AgentError):
    """A script file for the ``scripted`` provider is missing or invalid.

    ``where`` locates the problem inside the file (e.g. ``turn 2, step 1``).
    """

    def __init__(self, path: str, where: str, problem: str) -> None:
        location = f"{path}: {where}" if where else path
        super().__init__(f"script {location}: {problem}")
        #: The script file.
        self.path = path
        #: Position inside the script (``''`` for the whole file).
        self.where = where
        #: What is wrong, in words.
        self.problem = problem


class ScriptMismatch(ScriptError):
    """A step's ``expect`` conditions did not hold for the messages the model received."""


class LLMCallError(AgentError):
    """A model call failed; raised by :mod:`host.agent.llm` instead of litellm's exceptions."""

    def __init__(self, message: str, *, kind: str, status_code: int | None, retryable: bool, attempts: int,
                 partial: bool) -> None:
        super().__init__(message)
        #: litellm's exception class name (e.g. ``RateLimitError``), or the Python type name.
        self.kind = kind
        #: HTTP-like status code when the provider gave one.
        self.status_code = status_code
        #: Whether the error class is transient (it was retried if attempts remained).
        self.retryable = retryable
        #: How many calls were made in total (1 = no retry).
        self.attempts = attempts
        #: True when some output had already been streamed before the error.
        self.partial = partial


class ModelError(AgentError):
    """A model cannot be used: litellm does not know its provider, or its API key is missing."""


class AgentBusyError(AgentError):
    """The agent is running a turn; the operation (a second turn, fork, compaction, switch) must wait."""
