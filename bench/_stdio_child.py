"""Child process of the "JSON lines over a stdio pipe" baseline: one event per line in, one result per line out.

Usage: ``python _stdio_child.py``. It prints ``READY``, then for each line on stdin: ``json.loads`` it,
run a no-op gate handler (returns no opinion) and write
``{"id": ..., "result": null}`` as one line. Exits on stdin EOF or when its
parent dies (``PR_SET_PDEATHSIG``). This is how hook systems that keep one
child per extension and talk JSON lines over its pipes work (no MAC, no
schema, no deadline handling).
"""

from __future__ import annotations

import ctypes
import json
import signal
import sys


def main() -> int:
    """Answer lines until EOF."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    read, write, flush = sys.stdin.buffer.readline, sys.stdout.buffer.write, sys.stdout.buffer.flush
    write(b"READY\n")
    flush()
    while line := read():
        event = json.loads(line)
        write(json.dumps({"id": event["id"], "result": None}).encode() + b"\n")
        flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
