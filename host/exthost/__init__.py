"""The extension host: every extension in its own process, reached over ZeroMQ, supervised.

One concern per module (a test keeps this map, and each subpackage's own map,
complete); each module's docstring states its contract.

==================  ==========================================================================
module              concern
==================  ==========================================================================
``host``            the embedding API (:class:`ExtensionHost`): load, emit, tools, restart, close
``dispatch``        routing table per event; runs :func:`ext_sdk.combine.combine` (the one call loop)
``extension``       one extension's lifecycle (start, handshake, crash, restart, stop) and records
``handshake``       the pure decision on a ``hello``: granted (deadlines, policies) or refused
``policy``          each handler's effective deadline and failure policy from the operator's config
``exchange``        one extension's FIFO: notify backlog + every request on its events channel
``notify``          the delivery thread that drains every extension's notify backlog
``channel``         the host end of one extension's sockets: frames, request/reply, host calls, pings
``events_link``     a local extension's events socket: ZMTP ``REQ`` in pure Python on the waiting thread
``events_zmq``      a remote extension's events socket: libzmq ``REQ`` and its monitor
``monitors``        what a libzmq socket's monitor reports: open connections, the gate's slot freed
``launch``          the one place that decides how a process starts: private dir, secret, argv, env
``bytecode``        the SDK's ``.pyc`` files, written before the SDK's interpreter runs (an extension cannot)
``peers``           who may connect: the ZAP handler that admits only the launched process tree
``process``         the OS process: spawn, output capture, the shutdown ladder, kill the tree
``supervisor``      states, restart decisions, the watchdog (heartbeat, stuck, limits), its thread
``spare``           the warm spare: a launch parked at its secret that a restart starts from
``trust``           what each extension is granted, pinned to its content (``kithost ext trust``)
``hostcalls``       answering ``ctx`` calls: in-flight check, permission, arguments
``services``        what the embedding application answers for ``ctx`` (prints, entries, agent)
``state_store``     per-session extension state, kit's sidecar file, atomic writes
``stats``           per-extension counters and latency percentiles
``status``          the plain-data status view of one extension
``manifest``        reading and validating ``extension.toml``
``discovery``       finding extensions in search directories and ``-e`` paths
``ops``             the operator channel (``kithost ext status|logs|restart|reload``)
``reload``          hot reload: the switch gate, the trust re-check, :class:`ReloadResult`
``reload_cli``      ``kithost ext reload NAME`` against a running host
``watch``           watching loaded extensions' folders (debounced) to reload the one that changed
``orphans``         sweeping up processes of hosts that died hard
``sandbox/``        the host side of the sandbox: what the machine allows, wrapping one launch
==================  ==========================================================================
"""

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
