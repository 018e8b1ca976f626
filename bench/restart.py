"""Restart benchmark: how soon a killed extension is ready again, against a cold start in the same run.

Cases (each: ``N`` kills of a ready extension, timed from the SIGKILL to the
extension being ``ready`` again, polled every 0.5 ms):

1. **cold start** — ``ExtensionHost.load()`` of the same extension (spawn →
   handshake → ready): the baseline;
2. **kill → ready, backoff 1 ms** — the supervisor's own cost: noticing the
   exit (monitor or tick), spawning, the handshake;
3. **kill → ready, default backoff** — what an operator gets out of the box
   (the first restart waits ``backoff_initial_ms`` = 100 ms; stable runs reset it).

Printed as markdown with ratios against the cold start; never pass/fail.
``BENCH_QUICK=1`` runs a smoke version; ``BENCH_PIN`` as in ``_common``.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import _common as c  # sets CPU placement before zmq starts

from host import ExtensionHost, HostConfig
from host.config import Sandbox, Supervision, TrustMode

EXT = Path(__file__).resolve().parent / "_exts" / "gate_none"
N = 5 if c.QUICK else 25


def _ready_after_kill(host: ExtensionHost, name: str) -> float:
    ext = host.extension(name)
    before = ext.restarts
    assert ext.process is not None
    start = time.perf_counter_ns()
    os.kill(ext.process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not (ext.restarts > before and ext.state.value == "ready"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not ready 30 s after the kill (state {ext.state.value})")
        time.sleep(0.0005)
    return (time.perf_counter_ns() - start) / 1e6


def _kills(supervision: Supervision, n: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = HostConfig(supervision=supervision, search_dirs=(), state_path=Path(tmp) / "s.json",
                            sandbox=Sandbox(trust=TrustMode.ALL))
        with ExtensionHost(config) as host:
            name = host.load(EXT).name
            samples = []
            for _ in range(n):
                samples.append(_ready_after_kill(host, name))
                time.sleep(0.05)  # let it settle (pongs, resource sample) like a real crash would find it
            return samples


def _cold(n: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        with ExtensionHost(HostConfig(search_dirs=(), state_path=Path(tmp) / "s.json",
                                      sandbox=Sandbox(trust=TrustMode.ALL))) as host:
            samples = []
            for _ in range(n):
                start = time.perf_counter_ns()
                ext = host.load(EXT)
                samples.append((time.perf_counter_ns() - start) / 1e6)
                host.unload(ext.name)
            return samples


def _row(label: str, ms: list[float], base: float) -> list[str]:
    s = sorted(ms)
    p50 = c.pct(s, 50)
    return [label, str(len(s)), f"{p50:.1f}", f"{c.pct(s, 90):.1f}", f"{max(s):.1f}", f"{p50 / base:.2f}x"]


def main() -> int:
    c.install_signal_handlers()
    c.header("restart: kill → ready vs cold start", [f"extension: {EXT.name}; {N} kills per case"])
    try:
        cold = _cold(N)
        base = c.pct(sorted(cold), 50)
        fast = _kills(replace(Supervision(), backoff_initial_ms=1, backoff_max_ms=1, crash_limit=10_000), N)
        # Default backoff with the crash history cleared between kills (stable_after_s tiny): each restart
        # is a "first" restart, as after a long healthy run.
        default = _kills(replace(Supervision(), stable_after_s=0.001, crash_limit=10_000), N)
        print(c.markdown_table(
            "kill → ready (ms), ratio = p50 / cold-start p50",
            ["case", "n", "p50 ms", "p90 ms", "max ms", "ratio"],
            [_row("cold start: load() → ready", cold, base),
             _row("SIGKILL → ready, backoff 1 ms (supervisor's own cost)", fast, base),
             _row("SIGKILL → ready, default backoff (100 ms first restart)", default, base)],
        ))
        print(f"_machine load after: {c.load_note()}_")
    finally:
        left = c.leftover_check()
        if left:
            print(f"WARNING: leftover processes killed: {left}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
