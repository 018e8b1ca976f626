"""Shared helpers for the kithost benchmarks (a helper: ``run.py`` does not run ``_*.py`` files).

Method (the same as the dispatcher baselines in ``shared/notes/baseline-bench``):

* every case: a warm-up, then :data:`RUNS` independent measured runs; each
  operation is timed with ``time.perf_counter_ns``; percentiles are
  nearest-rank; ``ops/s`` = operations / wall time of the measured loop;
* sub-microsecond operations are timed in batches and reported per call;
* CPU placement from ``BENCH_PIN`` (applied when this module is imported,
  before any ``zmq.Context`` exists, so libzmq's I/O threads inherit it):
  ``same`` = this process and every child on CPU 0 (children inherit the
  mask); ``cross`` = this process on CPU 0, children moved to CPU 1 with
  :func:`place_child`; ``none`` or unset = the scheduler decides;
* ``BENCH_QUICK=1``: small N, for a smoke run (numbers are not meaningful);
* every child process is tracked and stopped by PID; :func:`leftover_check`
  lists (and kills) any descendant still alive at exit.

Never judge absolute times on this kind of VM (they flip ~3x with CPU
placement); judge ratios against a floor measured in the same run.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import gc
import math
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import psutil

PY = sys.executable
RUNS = 3
QUICK = os.environ.get("BENCH_QUICK", "").strip() not in ("", "0")
PIN = os.environ.get("BENCH_PIN", "").strip().lower()
if PIN in ("", "none"):
    PIN = ""
elif PIN not in ("same", "cross"):
    print(f"warning: BENCH_PIN={PIN!r} is not same|cross|none; running unpinned", file=sys.stderr)
    PIN = ""
if PIN == "cross" and len(os.sched_getaffinity(0) & {0, 1}) < 2:
    print("warning: BENCH_PIN=cross needs CPUs 0 and 1; using BENCH_PIN=same", file=sys.stderr)
    PIN = "same"
if PIN:
    os.sched_setaffinity(0, {0})

#: CPU set children are moved to (BENCH_PIN=cross only).
CHILD_CPUS = {1}


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True, slots=True)
class Stats:
    """Per-operation statistics of one measured run (times in µs)."""

    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    ops: float
    #: CPU time of this process (all threads) per operation, µs (``nan`` when not measured).
    own_cpu: float = float("nan")
    #: CPU time of the peer process (all threads) per operation, µs (``nan`` when not measured).
    peer_cpu: float = float("nan")


def pct(sorted_vals: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return float(sorted_vals[k])


def summarize(samples_ns: Sequence[int], elapsed_ns: int | None = None, per: int = 1) -> Stats:
    """Stats of ``samples_ns`` (each sample covers ``per`` operations); ``elapsed_ns`` = loop wall time."""
    s = sorted(samples_ns)
    ops = len(s) * per
    if elapsed_ns is None:
        elapsed_ns = sum(s)
    return Stats(
        n=ops,
        p50=pct(s, 50) / 1000.0 / per,
        p90=pct(s, 90) / 1000.0 / per,
        p99=pct(s, 99) / 1000.0 / per,
        mean=(sum(s) / len(s)) / 1000.0 / per if s else float("nan"),
        ops=ops / (elapsed_ns / 1e9) if elapsed_ns else float("nan"),
    )


def process_cpu_clock(pid: int) -> Callable[[], int]:
    """A reader of process ``pid``'s CPU time in ns (all its threads).

    Uses the kernel's per-process CPU clock (``clock_getcpuclockid``, ns
    resolution); falls back to psutil (clock-tick resolution).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        clock = ctypes.c_int()
        if libc.clock_getcpuclockid(pid, ctypes.byref(clock)) == 0:
            time.clock_gettime_ns(clock.value)
            return functools.partial(time.clock_gettime_ns, clock.value)
    except (OSError, AttributeError):
        pass
    proc = psutil.Process(pid)

    def coarse() -> int:
        t = proc.cpu_times()
        return int((t.user + t.system) * 1e9)

    return coarse


def run_timed(fn: Callable[[], object], n: int, warmup: int, peer_cpu: Callable[[], int] | None = None) -> Stats:
    """Call ``fn`` ``warmup`` times, then ``n`` times timing each call.

    With ``peer_cpu`` (see :func:`process_cpu_clock`) the CPU time used per
    operation by this process and by the peer process is recorded too.
    """
    for _ in range(warmup):
        fn()
    gc.collect()
    pc = time.perf_counter_ns
    samples = [0] * n
    own0, peer0 = time.process_time_ns(), peer_cpu() if peer_cpu else 0
    start = pc()
    for i in range(n):
        t0 = pc()
        fn()
        samples[i] = pc() - t0
    elapsed = pc() - start
    own1, peer1 = time.process_time_ns(), peer_cpu() if peer_cpu else 0
    st = summarize(samples, elapsed)
    if peer_cpu is None:
        return st
    return dataclasses.replace(st, own_cpu=(own1 - own0) / n / 1000, peer_cpu=(peer1 - peer0) / n / 1000)


def run_batched(fn: Callable[[], object], n_batches: int, batch: int, warmup_batches: int) -> Stats:
    """For sub-µs operations: time ``batch`` calls together; percentiles are over batches, per call."""
    rng = range(batch)
    for _ in range(warmup_batches):
        for _ in rng:
            fn()
    gc.collect()
    pc = time.perf_counter_ns
    samples = [0] * n_batches
    start = pc()
    for i in range(n_batches):
        t0 = pc()
        for _ in rng:
            fn()
        samples[i] = pc() - t0
    return summarize(samples, pc() - start, per=batch)


def run_gapped(fn: Callable[[], object], n: int, gap_s: float, warmup: int) -> Stats:
    """Time ``fn`` after an untimed idle gap of ``gap_s`` before each call (sporadic events)."""
    for _ in range(warmup):
        fn()
    gc.collect()
    pc = time.perf_counter_ns
    samples = [0] * n
    start = pc()
    for i in range(n):
        time.sleep(gap_s)
        t0 = pc()
        fn()
        samples[i] = pc() - t0
    return summarize(samples, pc() - start)


def timer_overhead_ns() -> float:
    """Median cost of one ``perf_counter_ns`` pair."""
    pc = time.perf_counter_ns
    vals = []
    for _ in range(20000):
        t0 = pc()
        vals.append(pc() - t0)
    vals.sort()
    return pct(vals, 50)


def median(vals: Sequence[float]) -> float:
    """Median, ``nan`` when empty."""
    return float(statistics.median(vals)) if vals else float("nan")


# --------------------------------------------------------------------------- formatting


def fmt_us(v: float) -> str:
    """A time in µs (or any positive quantity) with 3 significant digits."""
    if v != v:  # nan
        return "-"
    if abs(v) >= 100000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_ops(v: float) -> str:
    """An operations-per-second figure."""
    if v != v:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def fmt_ratio(v: float) -> str:
    """A ratio (x times)."""
    if v != v:
        return "-"
    if v >= 100:
        return f"{v:,.0f}x"
    if v >= 10:
        return f"{v:.1f}x"
    if v >= 0.01:
        return f"{v:.2f}x"
    return f"{v:.4f}x"


@dataclass
class Table:
    """Rows of (case, run, Stats, extra cells); rendered as a markdown table."""

    title: str
    extra_cols: list[str] = field(default_factory=list)
    note: str = ""
    rows: list[tuple[str, str, Stats, dict[str, str]]] = field(default_factory=list)

    def add(self, case: str, run: int | str, st: Stats, **extra: str) -> None:
        """Add one row and print a progress line on stderr."""
        self.rows.append((case, str(run), st, extra))
        print(f"  .. {case} run {run}: p50={fmt_us(st.p50)} us ops/s={fmt_ops(st.ops)}", file=sys.stderr,
              flush=True)

    def render(self) -> str:
        """The table as markdown."""
        head = ["case", "run", "n", "p50 us", "p90 us", "p99 us", "ops/s", *self.extra_cols]
        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
        for case, run, st, extra in self.rows:
            cells = [case, run, str(st.n), fmt_us(st.p50), fmt_us(st.p90), fmt_us(st.p99), fmt_ops(st.ops)]
            cells += [extra.get(c, "") for c in self.extra_cols]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def print(self) -> None:
        """Print the table on stdout."""
        print(self.render(), flush=True)


def markdown_table(title: str, head: Sequence[str], rows: Sequence[Sequence[str]], note: str = "") -> str:
    """A free-form markdown table (first column left-aligned, the rest right-aligned)."""
    lines = [f"### {title}", ""]
    if note:
        lines += [note, ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|---|" + "|".join(["---:"] * (len(head) - 1)) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- machine state


def load_note() -> str:
    """Whole-machine CPU use over 0.3 s and the 1-min load average (so a disturbed run shows)."""
    busy = psutil.cpu_percent(interval=0.3)
    return f"{busy:.0f}% CPU busy (all cores, 0.3 s sample), loadavg {os.getloadavg()[0]:.2f}"


def _busy_s() -> float:
    c = psutil.cpu_times()
    return float(c.user + c.nice + c.system + c.irq + c.softirq + getattr(c, "steal", 0.0))


def _own_cpu_s() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class LoadMeter:
    """CPU used by processes other than this one and its (reaped) children during the run."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0 = _busy_s()
        self.own0 = _own_cpu_s()

    def _measure(self) -> tuple[float, float, float]:
        wall = time.monotonic() - self.t0
        own = _own_cpu_s() - self.own0
        foreign = max(0.0, (_busy_s() - self.busy0) - own)
        return wall, own, foreign

    def report(self) -> str:
        """Call after every child was reaped (their CPU counts as ours only then)."""
        wall, own, foreign = self._measure()
        return (f"wall {wall:.1f} s; own CPU (this process + children) {own:.1f} s; foreign CPU (other processes "
                f"on the machine) {foreign:.1f} s = {foreign / wall if wall else 0:.2f} of a core on average")

    def foreign_share(self) -> float:
        """Foreign CPU so far, in cores (0.10 = a tenth of a core on average)."""
        wall, _, foreign = self._measure()
        return foreign / wall if wall else 0.0


def header(name: str, notes: Sequence[str] = ()) -> None:
    """Print the markdown header of a benchmark: machine, versions, method, placement, load."""
    import msgpack
    import zmq

    print(f"## {name}")
    print()
    print(f"- host: {platform.node()} {platform.machine()}, {os.cpu_count()} cpus, Linux {platform.release()}, "
          f"Python {platform.python_version()} ({PY})")
    print(f"- pyzmq {zmq.pyzmq_version()} / libzmq {zmq.zmq_version()}, msgpack "
          f"{'.'.join(map(str, msgpack.version))}, psutil {psutil.__version__}")
    print(f"- each case: warm-up, then {RUNS} independent measured runs (run 1..{RUNS}); percentiles are per "
          "operation (nearest-rank), ops/s = ops / wall time of the measured loop")
    print(f"- CPU placement: {('BENCH_PIN=' + PIN) if PIN else 'unpinned (scheduler decides)'}"
          + ("; BENCH_QUICK=1 (smoke run: small N, numbers not meaningful)" if QUICK else ""))
    for note in notes:
        print(f"- {note}")
    print(f"- machine load before: {load_note()}")
    print(flush=True)


# --------------------------------------------------------------------------- child processes

_children: list[subprocess.Popen[bytes]] = []


def place_child(pid: int) -> None:
    """BENCH_PIN=cross: move every thread of process ``pid`` to :data:`CHILD_CPUS` (else nothing)."""
    if PIN != "cross":
        return
    try:
        for thread in psutil.Process(pid).threads():
            try:
                os.sched_setaffinity(thread.id, CHILD_CPUS)
            except OSError:
                pass  # the thread ended meanwhile
    except psutil.Error:
        pass


def cross_preexec() -> None:
    """``preexec_fn`` for one-shot children under BENCH_PIN=cross."""
    os.sched_setaffinity(0, CHILD_CPUS)


def spawn(argv: Sequence[str], stdin_pipe: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    """Start a tracked child that prints ``READY <info>`` on stdout; returns (Popen, info).

    ``stdin_pipe``: give the child a pipe as stdin (``Popen.stdin``) instead of ``/dev/null``.
    """
    p = subprocess.Popen(list(argv), stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                         stdout=subprocess.PIPE)
    _children.append(p)
    assert p.stdout is not None
    line = p.stdout.readline()
    if not line.startswith(b"READY"):
        stop(p)
        raise RuntimeError(f"child {argv} did not start: {line!r}")
    place_child(p.pid)
    return p, line.decode().strip()[len("READY"):].strip()


def stop(p: subprocess.Popen[bytes], timeout: float = 2.0) -> None:
    """Stop one child by PID: SIGTERM, then SIGKILL; reap it; close its pipes."""
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    for f in (p.stdout, p.stdin, p.stderr):
        if f is not None:
            f.close()
    if p in _children:
        _children.remove(p)


def stop_all() -> None:
    """Stop every tracked child."""
    for p in list(_children):
        stop(p)


def steady(host: Any, timeout_s: float = 120.0) -> None:
    """Wait until ``host`` is in its steady state: every extension that keeps a warm spare has it waiting.

    A default host starts each Python extension's spare ``spare_after`` after the extension is ready;
    measuring before they are parked would time the host while up to N interpreters start beside it.
    """
    deadline = time.monotonic() + timeout_s
    for ext in host.extensions():
        wants = ext.supervision.spare and ext.manifest.runtime == "python" and ext.remote is None
        while wants and not ext.spare_parked():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ext.name}: its spare was not waiting after {timeout_s:.0f} s")
            time.sleep(0.01)


class all_cpus:  # used like a function: ``with all_cpus(): ...``
    """Let the calling thread (and the processes and threads it starts) use every CPU, then pin it back.

    For a figure whose target names the machine ("on 2 cores") rather than a CPU placement.
    """

    def __enter__(self) -> None:
        self._before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))

    def __exit__(self, *exc: object) -> None:
        os.sched_setaffinity(0, self._before)


def leftover_check() -> list[str]:
    """Kill (by PID) and describe every descendant of this process still alive; ``[]`` when clean."""
    stop_all()
    try:
        kids = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for proc in kids:
        try:
            found.append(f"pid {proc.pid} {' '.join(proc.cmdline())[:120]}")
            proc.kill()
            proc.wait(2)
        except psutil.Error:
            continue
    return found



def warn_leftovers(stream: TextIO = sys.stderr) -> None:
    """:func:`leftover_check`, with one warning line on ``stream`` when something was left running."""
    left = leftover_check()
    if left:
        print(f"WARNING: leftover processes killed: {left}", file=stream, flush=True)

def install_signal_handlers() -> None:
    """Turn SIGTERM into ``SystemExit`` so ``finally`` blocks stop children and close hosts."""

    def _term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _term)


# --------------------------------------------------------------------------- machine-readable results

#: ``run.py`` sets this to a directory; each script writes its figures there as ``NAME.json``.
RESULTS_DIR_ENV = "BENCH_RESULTS_DIR"


def machine() -> dict[str, Any]:
    """The machine a run happened on (the ``machine`` key of ``latest.json``)."""
    import msgpack
    import zmq

    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "pinning": PIN or "none",
        "quick": QUICK,
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "msgpack": ".".join(map(str, msgpack.version)),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_results(name: str, figures: dict[str, Any]) -> None:
    """Save a script's figures for ``run.py`` (``$BENCH_RESULTS_DIR/NAME.json``; nothing when run alone)."""
    import json

    out_dir = os.environ.get(RESULTS_DIR_ENV)
    if not out_dir:
        return
    with open(os.path.join(out_dir, f"{name}.json"), "w", encoding="utf-8") as f:
        json.dump(figures, f, indent=2, sort_keys=True)


def clone_ext(src: str | os.PathLike[str], dest_root: str | os.PathLike[str], suffix: str) -> str:
    """A copy of the bench extension directory ``src`` under ``dest_root`` whose name ends in ``-SUFFIX``.

    The extension's name appears in its ``extension.toml`` and in its source (the
    ``Extension(...)`` call); both are rewritten, so many copies load in one host.
    Returns the new directory.
    """
    import shutil
    from pathlib import Path

    src_path = Path(src)
    dest = Path(dest_root) / f"{src_path.name}-{suffix}"
    shutil.copytree(src_path, dest, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = (dest / "extension.toml").read_text(encoding="utf-8")
    old = next(line.split("=", 1)[1].strip().strip('"') for line in manifest.splitlines()
               if line.startswith("name"))
    new = f"{old}-{suffix}"
    for path in dest.iterdir():
        if path.is_file() and path.suffix in (".toml", ".py", ".mjs"):
            path.write_text(path.read_text(encoding="utf-8").replace(f'"{old}"', f'"{new}"'), encoding="utf-8")
    return str(dest)
