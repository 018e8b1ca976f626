"""The extension host: manifests, launch, channels, dispatch, notify delivery, state."""

from .dispatch import HIGH, LOW, NORMAL
from .host import ExtensionCommand, ExtensionHost, ExtensionTool, LoadReport
from .outcome import Failure, Outcome, StopInfo

__all__ = [
    "HIGH",
    "LOW",
    "NORMAL",
    "ExtensionCommand",
    "ExtensionHost",
    "ExtensionTool",
    "Failure",
    "LoadReport",
    "Outcome",
    "StopInfo",
]
