"""Run every benchmark in ``bench/``, each in its own process, one after another; write ``latest.json``.

Usage::

    .venv/bin/python bench/run.py [--quick] [--out DIR] [--results DIR] [NAME ...]

``NAME`` picks scripts (``dispatch`` or ``dispatch.py``); default: every
``bench/*.py`` except this file and ``_``-prefixed helpers. The environment
(``BENCH_PIN``, ``BENCH_QUICK``) is passed through; ``--quick`` sets
``BENCH_QUICK=1`` (a smoke run in well under a minute; its numbers mean
nothing). Each script's stdout (its markdown report) is shown and, with
``--out``, also saved as ``DIR/NAME.txt``; progress lines go to stderr.

Each script also saves its figures as JSON (``_common.write_results``); this
runner merges them with the machine description into
``RESULTS/latest.json`` (default ``bench/results``) and prints the targets of
issue 10 as a table, also saved as ``RESULTS/latest.md`` (with the reports).
A key whose script was not run (or broke) is ``null``.

Exit status: 0 when every script exited 0. Targets never affect it; only a
script that crashed, hung (stopped after ``TIMEOUT_S``; the scripts also have
their own watchdog) or reported itself broken does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 600
#: Where ``latest.json`` / ``latest.md`` go by default.
RESULTS = HERE / "results"

#: ``latest.json`` keys every run writes (issue 10, item 8), with their target: (label, op, bound) or None.
TARGETS: dict[str, tuple[str, str, float] | None] = {
    "gate_p50_ratio": ("gate dispatch p50 / raw pyzmq floor (same bytes, same run)", "<=", 1.5),
    "gate_p99_ratio": None,
    "block_p50_ratio": ("gate with a Block result p50 / floor", "<=", 1.7),
    "context_prepare_p50_ratio": None,
    "unsubscribed_emit_us": ("unsubscribed event, agent-side (us)", "<=", 1.0),
    "notify_emit_us_8_observers": ("notify emit with 8 observers, agent-side (us)", "<=", 10.0),
    "fanout_32_p50_ratio": None,
    "cold_start_ratio": ("cold start spawn -> ready / bare interpreter start", "<=", 2.0),
    "restart_ready_ms_p50": ("kill -9 -> ready p50, default policy (ms)", "<=", 50.0),
    "restart_ready_ms_p50_sandboxed": ("kill -9 -> ready p50, default policy, sandboxed (ms)", "<=", 70.0),
    "hang_overshoot_ms_p99": ("hung handler: control back at deadline + (ms, p99)", "<=", 1.0),
    "idle_extension_uss_mb": ("idle Python extension USS (MiB)", "<=", 10.0),
    "start_32_ready_s": ("32 extensions to ready (s)", "<=", 1.0),
    "subprocess_per_event_speedup": ("speed-up over one subprocess per event", ">=", 300.0),
    "pluggy_p50_us": None,
    "stdio_json_p50_us": None,
}


def scripts(names: list[str]) -> list[Path]:
    """The benchmark scripts to run, sorted; raises ``SystemExit`` for an unknown name."""
    found = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))
    if not names:
        return found
    by_name = {p.stem: p for p in found}
    missing = [n for n in names if n.removesuffix(".py") not in by_name]
    if missing:
        raise SystemExit(f"unknown benchmark(s) {missing}; known: {', '.join(by_name)}")
    return [by_name[n.removesuffix(".py")] for n in names]


def _stop(p: subprocess.Popen[str]) -> None:
    """Timeout: SIGTERM, then SIGKILL (a script frozen inside C code with the GIL held ignores SIGTERM)."""
    print(f"\nrun.py: bench script pid {p.pid} exceeded {TIMEOUT_S} s; stopping it", file=sys.stderr, flush=True)
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "-" if value is None else str(value)


def targets_table(figures: dict[str, object]) -> str:
    """The issue's figures as a markdown table: value, target, met / not met (information only)."""
    lines = ["## Summary (issue 10 targets; ratios against baselines measured in the same run)", "",
             "| figure | key | value | target | status |", "|---|---|---:|---:|---|"]
    for key, target in TARGETS.items():
        value = figures.get(key)
        if target is None:
            lines.append(f"| {key.replace('_', ' ')} | `{key}` | {_fmt(value)} | - | info |")
            continue
        label, op, bound = target
        if not isinstance(value, (int, float)):
            status = "not measured"
        else:
            status = "met" if (value <= bound if op == "<=" else value >= bound) else "**not met**"
        lines.append(f"| {label} | `{key}` | {_fmt(value)} | {op} {bound:g} | {status} |")
    m = figures.get("machine")
    if isinstance(m, dict):
        lines += ["", f"_machine: {m.get('cpu_count')} CPUs ({m.get('cpu_model')}), Linux {m.get('kernel')}, "
                      f"Python {m.get('python')}, pyzmq {m.get('pyzmq')} / libzmq {m.get('libzmq')}, "
                      f"pinning {m.get('pinning')}{', QUICK (numbers mean nothing)' if m.get('quick') else ''}_"]
    return "\n".join(lines) + "\n"


def merge(parts_dir: Path, quick: bool) -> dict[str, object]:
    """Every script's figures plus ``machine``; every key of :data:`TARGETS` present (``None`` if missing)."""
    import _common

    figures: dict[str, object] = dict.fromkeys(TARGETS)
    for part in sorted(parts_dir.glob("*.json")):
        figures.update(json.loads(part.read_text(encoding="utf-8")))
    figures["machine"] = dict(_common.machine(), quick=quick)
    return figures


def _common_quick() -> bool:
    """Whether ``BENCH_QUICK`` was set in this environment (as ``_common`` reads it)."""
    return os.environ.get("BENCH_QUICK", "").strip() not in ("", "0")


def run_one(path: Path, out_dir: Path | None, env: dict[str, str] | None = None,
            report: list[str] | None = None) -> int:
    """Run one script, echoing its stdout (and saving it under ``out_dir``); returns its exit status."""
    print(f"# bench/{path.name}", flush=True)
    t0 = time.monotonic()
    sink = open(out_dir / f"{path.stem}.txt", "w", encoding="utf-8") if out_dir else None
    try:
        with subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True, cwd=HERE.parent,
                              env=env) as p:
            assert p.stdout is not None
            timer = threading.Timer(TIMEOUT_S, _stop, (p,))
            timer.daemon = True
            timer.start()
            try:
                for line in p.stdout:
                    sys.stdout.write(line)
                    if sink:
                        sink.write(line)
                    if report is not None:
                        report.append(line)
                code = p.wait()
            except KeyboardInterrupt:
                _stop(p)
                raise
            finally:
                timer.cancel()
    finally:
        if sink:
            sink.close()
        if p.returncode != 0:  # a script that died early cannot remove its own temp dir (see dispatch.py)
            for leftover in Path(tempfile.gettempdir()).glob(f"kb{p.pid}-*"):
                shutil.rmtree(leftover, ignore_errors=True)
    print(f"\n_bench/{path.name}: exit {code}, {time.monotonic() - t0:.1f} s_\n", flush=True)
    print(f"run.py: bench/{path.name} done (exit {code}, {time.monotonic() - t0:.1f} s)", file=sys.stderr, flush=True)
    return code


def main() -> int:
    """Run the selected benchmarks, write ``latest.json``/``latest.md``; 1 if any of them failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (BENCH_QUICK=1): fast, numbers mean nothing")
    parser.add_argument("--out", type=Path, help="also save each script's report as DIR/NAME.txt")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help=f"where latest.json and latest.md go (default {RESULTS.relative_to(HERE.parent)})")
    parser.add_argument("names", nargs="*", help="scripts to run (default: all)")
    args = parser.parse_args()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    selected = scripts(args.names)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kbresults-") as parts:
        env = dict(os.environ, BENCH_RESULTS_DIR=parts)
        if args.quick:
            env["BENCH_QUICK"] = "1"
        report: list[str] = []
        failed = []
        for i, path in enumerate(selected, 1):
            print(f"run.py: [{i}/{len(selected)}] bench/{path.name} ({time.monotonic() - t0:.0f} s so far)",
                  file=sys.stderr, flush=True)
            if run_one(path, args.out, env, report) != 0:
                failed.append(path.name)
        sys.path.insert(0, str(HERE))
        figures = merge(Path(parts), args.quick or _common_quick())
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "latest.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    table = targets_table(figures)
    (args.results / "latest.md").write_text(table + "\n" + "".join(report), encoding="utf-8")
    print(table, flush=True)
    print(f"run.py: wrote {args.results / 'latest.json'} and latest.md; total {time.monotonic() - t0:.0f} s",
          file=sys.stderr, flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
