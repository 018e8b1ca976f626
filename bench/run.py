"""Run every benchmark in ``bench/``, each in its own process, one after another.

Usage::

    .venv/bin/python bench/run.py [--out DIR] [NAME ...]

``NAME`` picks scripts (``dispatch`` or ``dispatch.py``); default: every
``bench/*.py`` except this file and ``_``-prefixed helpers. The environment
(``BENCH_PIN``, ``BENCH_QUICK``) is passed through. Each script's stdout (its
markdown report) is shown and, with ``--out``, also saved as ``DIR/NAME.txt``;
progress lines go to stderr.

Exit status: 0 when every script exited 0. Targets never affect it; only a
script that crashed, hung (stopped after ``TIMEOUT_S``; the scripts also have
their own watchdog) or reported itself broken does.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 600


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


def run_one(path: Path, out_dir: Path | None) -> int:
    """Run one script, echoing its stdout (and saving it under ``out_dir``); returns its exit status."""
    print(f"# bench/{path.name}", flush=True)
    t0 = time.monotonic()
    sink = open(out_dir / f"{path.stem}.txt", "w", encoding="utf-8") if out_dir else None
    try:
        with subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True, cwd=HERE.parent) as p:
            assert p.stdout is not None
            timer = threading.Timer(TIMEOUT_S, _stop, (p,))
            timer.daemon = True
            timer.start()
            try:
                for line in p.stdout:
                    sys.stdout.write(line)
                    if sink:
                        sink.write(line)
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
    return code


def main() -> int:
    """Run the selected benchmarks; 1 if any of them failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also save each script's report as DIR/NAME.txt")
    parser.add_argument("names", nargs="*", help="scripts to run (default: all)")
    args = parser.parse_args()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    failed = [p.name for p in scripts(args.names) if run_one(p, args.out) != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
