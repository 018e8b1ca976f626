"""Restart benchmark: how soon a killed extension is ready again, against a cold start in the same run.

Cases (each: ``N`` kills of a ready extension, timed from the SIGKILL to the
extension being ``ready`` again, polled every 0.5 ms):

1. **cold start** — ``ExtensionHost.load()`` of the same extension (spawn →
   handshake → ready): the baseline;
2. **kill → ready, default policy, no sandbox layer** and 3. **the same,
   sandboxed** (every layer this machine gives): what an operator gets out of
   the box after a crash that follows a stable run — the restart policy
   restarts at once, from the warm spare (``[supervision] spare``) that the
   supervisor keeps once the extension has served ``spare_after``;
   ``stable_after_s`` and ``spare_after_s`` are made tiny so that every kill
   counts as "after a stable run" and finds its spare without waiting 10 s
   between kills (each kill waits until the spare is there);
4. **the same with spares off** (``spare = false``): a cold restart
   (information: what the spare saves);
5. **kill → ready inside a crash loop** (default backoff, crash history kept):
   the backoff the policy applies to a process that keeps dying (information).

Also the memory an idle spare costs (USS of its process tree, sandboxed).

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
import psutil

from host import ExtensionHost, HostConfig
from host.config import Sandbox, SandboxLayer, Supervision, TrustMode

EXT = Path(__file__).resolve().parent / "_exts" / "gate_none"
N = 5 if c.QUICK else 20
N_LOOP = 3 if c.QUICK else 6


def _ready_after_kill(host: ExtensionHost, name: str) -> float:
    ext = host.extension(name)
    c.steady(host, 30)  # a crash after a stable run finds the spare in place (when spares are on)
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


SANDBOXED = Sandbox(trust=TrustMode.ALL)
UNSANDBOXED = Sandbox(trust=TrustMode.ALL, allow_weak=True, disable=tuple(SandboxLayer))


def _kills(supervision: Supervision, n: int, sandbox: Sandbox) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = HostConfig(supervision=supervision, search_dirs=(), state_path=Path(tmp) / "s.json",
                            sandbox=sandbox)
        with ExtensionHost(config) as host:
            name = host.load(EXT).name
            samples = []
            for _ in range(n):
                samples.append(_ready_after_kill(host, name))
                time.sleep(0.05)  # let it settle (pongs, resource sample) like a real crash would find it
            return samples


def _spare_uss_mb(sandbox: Sandbox) -> float:
    """USS of an idle spare's process tree (MiB): what keeping one costs."""
    with tempfile.TemporaryDirectory() as tmp:
        config = HostConfig(supervision=replace(Supervision(), spare_after_s=0.05), search_dirs=(),
                            state_path=Path(tmp) / "s.json", sandbox=sandbox)
        with ExtensionHost(config) as host:
            ext = host.load(EXT)
            c.steady(host, 30)
            assert ext.spare_pid is not None
            time.sleep(0.2)
            root = psutil.Process(ext.spare_pid)
            return sum(p.memory_full_info().uss for p in [root, *root.children(recursive=True)]) / 2**20


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
    return [label, str(len(s)), f"{p50:.1f}", f"{c.pct(s, 90):.1f}", f"{c.pct(s, 99):.1f}", f"{p50 / base:.2f}x"]


def main() -> int:
    c.install_signal_handlers()
    c.header("restart: kill → ready vs cold start", [f"extension: {EXT.name}; {N} kills per case"])
    try:
        cold = _cold(N)
        base = c.pct(sorted(cold), 50)
        after_stable = replace(Supervision(), stable_after_s=0.001, spare_after_s=0.001, crash_limit=10_000)
        plain = _kills(after_stable, N, UNSANDBOXED)
        print(f"  .. kill -> ready, no sandbox: p50 {c.pct(sorted(plain), 50):.1f} ms", file=sys.stderr, flush=True)
        boxed = _kills(after_stable, N, SANDBOXED)
        print(f"  .. kill -> ready, sandboxed: p50 {c.pct(sorted(boxed), 50):.1f} ms", file=sys.stderr, flush=True)
        cold_restart = _kills(replace(after_stable, spare=False), N, SANDBOXED)
        print(f"  .. kill -> ready, sandboxed, no spare: p50 {c.pct(sorted(cold_restart), 50):.1f} ms", file=sys.stderr,
              flush=True)
        loop = _kills(replace(Supervision(), crash_limit=10_000, backoff_max_ms=400, spare=False), N_LOOP, SANDBOXED)
        spare_mb = _spare_uss_mb(SANDBOXED)
        print(c.markdown_table(
            "kill → ready (ms), ratio = p50 / cold-start p50",
            ["case", "n", "p50 ms", "p90 ms", "p99 ms", "ratio"],
            [_row("cold start (sandboxed): load() → ready", cold, base),
             _row("SIGKILL → ready, default policy (after a stable run), no sandbox layer", plain, base),
             _row("SIGKILL → ready, default policy (after a stable run), sandboxed", boxed, base),
             _row("SIGKILL → ready, spares off (cold restart), sandboxed", cold_restart, base),
             _row("SIGKILL → ready inside a crash loop (backoff 100, 200, 400 ms ...), sandboxed", loop, base)],
        ))
        print(f"\nAn idle spare (sandboxed, parked at its secret) costs {spare_mb:.1f} MiB USS (its whole tree).\n")
        c.write_results("restart", {
            "restart_ready_ms_p50": c.pct(sorted(plain), 50),
            "restart_ready_ms_p99": c.pct(sorted(plain), 99),
            "restart_ready_ms_p50_sandboxed": c.pct(sorted(boxed), 50),
            "restart_ready_ms_p99_sandboxed": c.pct(sorted(boxed), 99),
            "restart_cold_start_ms_p50": base,
            "restart_crash_loop_ms_p50": c.pct(sorted(loop), 50),
            "restart_ready_ms_p50_no_spare_sandboxed": c.pct(sorted(cold_restart), 50),
            "spare_uss_mb": round(spare_mb, 2),
        })
        print(f"_machine load after: {c.load_note()}_")
    finally:
        c.warn_leftovers()
    return 0


if __name__ == "__main__":
    sys.exit(main())
