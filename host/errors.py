"""kithost's exceptions. Every error a user can cause is one of these, with a message that
says what is wrong and what to do; the CLI prints it without a traceback.

Our exception hierarchy::

    HostError
      + ConfigError            bad operator configuration (file, flags)
      + ManifestError          an extension.toml is missing, unreadable or invalid
      + StateStoreError        the state sidecar cannot be read or written
      + ExtensionStartError    an extension did not reach "ready" (crash, bad handshake, refusal)
      + UnknownExtensionError  no loaded extension has that name
      + EventError             the embedding application emitted an unknown event or a bad payload
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EventError",
    "ExtensionStartError",
    "HostError",
    "ManifestError",
    "StateStoreError",
    "UnknownExtensionError",
]


class HostError(Exception):
    """Base of every kithost error."""


class ConfigError(HostError):
    """The operator's configuration is invalid."""


class ManifestError(HostError):
    """An extension manifest (``extension.toml``) is missing or invalid."""


class StateStoreError(HostError):
    """The extension state sidecar cannot be read or written."""


class ExtensionStartError(HostError):
    """An extension failed to start; the message includes the tail of its stderr."""

    def __init__(self, name: str, reason: str, stderr_tail: str = "") -> None:
        detail = f"extension {name!r} failed to start: {reason}"
        if stderr_tail.strip():
            detail += "\n  its stderr ends with:\n    " + "\n    ".join(stderr_tail.rstrip().splitlines()[-12:])
        super().__init__(detail)
        #: The extension's name.
        self.name = name
        #: Why, in words.
        self.reason = reason


class UnknownExtensionError(HostError):
    """No loaded extension has the given name."""


class EventError(HostError):
    """The embedding application emitted an unknown event or a payload of the wrong shape."""
