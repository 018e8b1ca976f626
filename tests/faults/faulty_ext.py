"""One faulty extension for the fault-injection suite, switched by ``FAULT`` (manifest ``[env]``).

FAULT                behaviour
-------------------  ----------------------------------------------------------------
crash_at_start       os._exit(1) while loading (before the handshake)
bad_code             raises at import (the SDK exits 3: "broken extension", not retried)
crash_mid_handler    os._exit(1) inside the tool_call handler
hang_sleep           the handler sleeps 60 s (slow, not hung: heartbeats continue)
hang_busy            the handler spins in a pure-Python busy loop
hang_read            the handler blocks reading a pipe nobody writes
freeze               the handler SIGSTOPs the process: heartbeats stop → hung
ignore_shutdown      ignores SIGTERM and the polite shutdown (needs SIGKILL)
fork_children        the handler starts 3 children that leave the process group and ignore SIGTERM
allocate             the handler allocates memory until it is killed
flood_stderr         the handler writes 20,000 lines plus one 1 MB line to stderr
crash_loop           exits 50 ms after every start
none                 behaves
Every handler records the pid that ran it in state key "pid".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from ext_sdk import Extension

FAULT = os.environ.get("FAULT", "none")

if FAULT == "crash_at_start":
    os._exit(1)
if FAULT == "bad_code":
    raise RuntimeError("this extension is broken on purpose")
if FAULT == "crash_loop":
    threading.Timer(0.3, lambda: os._exit(1)).start()
if FAULT == "ignore_shutdown":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import ext_sdk.runtime

    ext_sdk.runtime.SHUTDOWN_GRACE_S = 3600

ext = Extension("faulty", permissions=["conversation"])


@ext.on("tool_call", deadline_ms=300, policy="closed")
def gate(event, ctx):  # type: ignore[no-untyped-def]
    ctx.set_state("pid", os.getpid())
    if event.tool_call_id != "fault":
        return None
    if FAULT == "crash_mid_handler":
        os._exit(1)
    elif FAULT == "hang_sleep":
        time.sleep(60)
    elif FAULT == "hang_busy":
        end = time.monotonic() + 60
        while time.monotonic() < end:
            pass
    elif FAULT == "hang_read":
        r, _w = os.pipe()
        os.read(r, 1)
    elif FAULT == "freeze":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif FAULT == "ignore_shutdown":
        time.sleep(3600)
    elif FAULT == "fork_children":
        code = "import os, signal, time; os.setsid(); signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
        kids = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(3)]  # each leaves the group itself
        ctx.set_state("children", [k.pid for k in kids])
    elif FAULT == "allocate":
        hog = []
        while True:
            hog.append(bytearray(16 * 1024 * 1024))
            time.sleep(0.01)
    elif FAULT == "flood_stderr":
        for i in range(20_000):
            print(f"flood line {i}", file=sys.stderr)
        sys.stderr.write("x" * 1_000_000 + "\n")
        sys.stderr.flush()
    return None
