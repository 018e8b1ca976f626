"""kithost: an agent core whose extensions each run in their own process, confined as far as the machine allows.

Embedding API (see the README)::

    from host import ExtensionHost, HostConfig
"""

from .config import Deadlines, HostConfig, Limits, load_config
from .errors import (
    ConfigError,
    EventError,
    ExtensionStartError,
    HostError,
    ManifestError,
    StateStoreError,
    UnknownExtensionError,
)
from .exthost import (
    HIGH,
    LOW,
    NORMAL,
    ExtensionCommand,
    ExtensionHost,
    ExtensionTool,
    Failure,
    LoadReport,
    Outcome,
    StopInfo,
)

__version__ = "0.1.0"

__all__ = [
    "HIGH",
    "LOW",
    "NORMAL",
    "ConfigError",
    "Deadlines",
    "EventError",
    "ExtensionCommand",
    "ExtensionHost",
    "ExtensionStartError",
    "ExtensionTool",
    "Failure",
    "HostConfig",
    "HostError",
    "Limits",
    "LoadReport",
    "ManifestError",
    "Outcome",
    "StateStoreError",
    "StopInfo",
    "UnknownExtensionError",
    "__version__",
    "load_config",
]
