"""Child process of the dispatch floor: a REP socket answering every request with fixed bytes.

Usage: ``python _floor_child.py ENDPOINT REPLY_HEX`` (or ``@FILE``: the reply bytes in a file, for
frames too large for argv). It connects (the parent
binds, as the kithost host does), prints ``READY``, then for each request
polls, receives and sends the reply frame as is: no decoding, no MAC check,
no handler. It exits when its parent dies (``PR_SET_PDEATHSIG``), on SIGTERM,
or after :data:`IDLE_EXIT_MS` without a request.
"""

from __future__ import annotations

import ctypes
import signal
import sys

import zmq

IDLE_EXIT_MS = 120_000


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> int:
    """Serve until idle for :data:`IDLE_EXIT_MS`."""
    endpoint, arg = sys.argv[1], sys.argv[2]
    if arg.startswith("@"):
        with open(arg[1:], "rb") as f:
            reply = f.read()
    else:
        reply = bytes.fromhex(arg)
    _die_with_parent()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.linger = 0
    sock.connect(endpoint)
    print("READY", flush=True)
    poll, recv, send = sock.poll, sock.recv, sock.send
    while poll(IDLE_EXIT_MS):
        recv()
        send(reply)
    sock.close()
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
