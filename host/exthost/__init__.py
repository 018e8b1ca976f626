"""The extension host: manifests, launch, channels, dispatch, notify delivery, state."""

from .dispatch import HIGH, LOW, NORMAL
from .host import ExtensionHost, LoadReport
from .outcome import Failure, Outcome, StopInfo

__all__ = ["HIGH", "LOW", "NORMAL", "ExtensionHost", "Failure", "LoadReport", "Outcome", "StopInfo"]
