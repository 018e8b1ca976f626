"""The extension host: manifests, launch, channels, dispatch, notify delivery, state."""

from ext_sdk.combine import Failure, Outcome, StopInfo

from .dispatch import HIGH, LOW, NORMAL
from .host import ExtensionCommand, ExtensionHost, ExtensionTool, LoadReport

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
