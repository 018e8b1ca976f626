"""What a host socket's libzmq monitor reports: connections opening, closing, and their handshake's outcome.

:class:`OpenConnections` follows one socket's open connections from its monitor's events and frees the
socket's slot at the :class:`~.peers.PeerGate` when the last one closes (see :mod:`.peers`, one peer per
socket). Used for the ``calls`` and ``control`` sockets of every launch and for a remote launch's ``events``
(:mod:`.events_zmq`); a local launch's ``events`` is not a libzmq socket (:mod:`.events_link`).
"""

from __future__ import annotations

import zmq

from .peers import PeerGate

__all__ = ["MONITORED", "OPENED", "REFUSED", "OpenConnections"]

#: Monitor events of a connection that broke the ZMTP handshake (a ZAP refusal is counted by :mod:`.peers`).
REFUSED = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
#: A connection opened: by the extension (ipc, accepted) or to the worker's relay (tcp, connected).
OPENED = zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED
#: What every socket's monitor reports: connections opening, closing, and their handshake's outcome.
MONITORED = OPENED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | REFUSED


class OpenConnections:
    """The open connections of one host socket as its monitor reports them (read by one thread at a time).

    ``gate``/``domain``: the socket's slot at the gate; it is released when the last open connection closes
    and the handshakes seen to succeed are every one the gate admitted (so a refused stranger's connection
    closing, or one admitted but not yet reported, never frees it early). ``None``: no slot (remote).
    """

    __slots__ = ("_domain", "_gate", "_open", "_succeeded")

    def __init__(self, gate: PeerGate | None, domain: str) -> None:
        self._gate = gate
        self._domain = domain
        self._open: set[int] = set()
        self._succeeded = 0

    @property
    def connected(self) -> bool:
        """Whether a connection is open (as far as the events read so far tell)."""
        return bool(self._open)

    def note(self, kind: int, value: int) -> bool:
        """Record one monitor event (``value``: its file descriptor or code); whether it closed the last open
        connection."""
        if kind & OPENED:
            self._open.add(value)
        elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._succeeded += 1
        elif kind == zmq.EVENT_DISCONNECTED and value in self._open:
            self._open.discard(value)
            if not self._open:
                if self._gate is not None:
                    self._gate.released(self._domain, self._succeeded)
                return True
        return False
