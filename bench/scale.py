"""Scale and footprint: fan-out through N extensions, 32 extensions to ready, memory of idle extensions.

Cases:

1. **fan-out**: ``h.emit("tool_call", payload)`` through 1, 2, 4, 8 and 32
   copies of ``_exts/gate_none`` in one host (each handler returns ``None``, so
   every one runs), p50 as a ratio to the floor of the same run (a raw pyzmq
   REQ/REP round trip with the same bytes, as in ``dispatch.py``), and per
   extension;
2. **start 32**: ``h.load_many`` of 32 extensions, call → every one ready
   (concurrent spawns, handshakes awaited in load order);
3. **footprint**: RSS and USS (memory unique to the process, psutil
   ``memory_full_info``) of an idle Python extension and an idle Node
   extension (``_exts/idle_js``, skipped when ``node`` or the JS SDK's
   ``node_modules`` are missing), summed over the extension's process tree
   (a sandbox wrapper included); the host's own USS growth per loaded
   extension (sockets, threads, records), measured over the 32 loads.

Run: ``.venv/bin/python bench/scale.py``; ``BENCH_QUICK=1`` for a smoke run, ``BENCH_PIN`` as in ``_common``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import _common as c  # sets CPU placement before zmq starts
import psutil
import zmq

from host import ExtensionHost, HostConfig
from host.config import Sandbox, TrustMode
from host.exthost.extension import RunningExtension

HERE = Path(__file__).resolve().parent
EXTS = HERE / "_exts"
JS_SDK_MODULES = HERE.parent / "ext_sdk" / "js" / "node_modules"
FANOUT = (1, 2, 4, 8, 32)
N_RT, WARM_RT = (100, 20) if c.QUICK else (1000, 100)
STARTS = 1 if c.QUICK else 3
WATCHDOG_S = 120 if c.QUICK else 300


def _tree(ext: RunningExtension) -> list[psutil.Process]:
    if ext.process is None:
        return []
    root = psutil.Process(ext.process.pid)
    return [root, *root.children(recursive=True)]


def _memory_mb(procs: list[psutil.Process]) -> tuple[float, float]:
    """(RSS, USS) in MiB summed over ``procs``."""
    rss = uss = 0
    for p in procs:
        info = p.memory_full_info()
        rss += info.rss
        uss += info.uss
    return rss / 2**20, uss / 2**20


def _uss_mb() -> float:
    return float(psutil.Process().memory_full_info().uss) / 2**20


def _settle(h: ExtensionHost, seconds: float) -> None:
    """Let the extensions go idle (imports done, first heartbeats answered)."""
    del h
    time.sleep(seconds)


def bench_fanout(stack: contextlib.ExitStack, cfg: HostConfig, tmp: Path, figures: dict[str, object]) -> None:
    """Fan-out p50 through 1..32 extensions vs the floor, interleaved; then the 32-start and host memory."""
    import dispatch as d  # the payload, frame capture and floor helpers

    payload = d.fitted_payload()
    dirs = [c.clone_ext(EXTS / "gate_none", tmp, f"f{i}") for i in range(max(FANOUT))]
    # the floor: the same bytes as a one-extension emit
    h1 = stack.enter_context(ExtensionHost(cfg))
    one = h1.load(dirs[0])
    captured = d.capture_frames(h1, one, payload)
    c_req, c_rep = captured if captured is not None else (d.request_frame(payload), d.reply_frame())
    h1.unload(one.name)
    zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    stack.callback(zctx.destroy, linger=0)
    sock = zctx.socket(zmq.REQ)
    sock.linger = 0
    sock.bind(f"ipc://{tmp}/floor")
    c.spawn([c.PY, "-I", str(d.FLOOR_CHILD), f"ipc://{tmp}/floor", c_rep.hex()])
    floor = d.make_floor_op(sock, c_req)

    # start 32 (and host memory per extension), in a fresh host, a few times
    start_s: list[float] = []
    host_per_ext: list[float] = []
    for i in range(STARTS):
        with ExtensionHost(cfg) as h:
            before = _uss_mb()
            with c.all_cpus():  # the target is "on 2 cores": the extensions may use every CPU, pinned or not
                t0 = time.perf_counter()
                report = h.load_many(dirs)
                start_s.append(time.perf_counter() - t0)
            d.require(len(report.loaded) == len(dirs), f"32-start: failed {report.failed}")
            _settle(h, 0.5)
            host_per_ext.append((_uss_mb() - before) / len(dirs))
            print(f"  .. start {len(dirs)}: {start_s[-1]:.2f} s; host USS +{host_per_ext[-1]:.2f} MiB per "
                  f"extension (run {i + 1})", file=sys.stderr, flush=True)

    floors: dict[int, list[c.Stats]] = {n: [] for n in FANOUT}
    fan: dict[int, list[c.Stats]] = {n: [] for n in FANOUT}
    for n in FANOUT:  # one host at a time (at most 32 extension processes alive), each run paired with a floor run
        with ExtensionHost(cfg) as h:
            report = h.load_many(dirs[:n])
            d.require(len(report.loaded) == n, f"fan-out {n}: failed {report.failed}")
            c.steady(h)
            for ext in report.loaded:
                for proc in _tree(ext):
                    c.place_child(proc.pid)
            out = h.emit("tool_call", payload)
            d.require(out.handlers == n and not out.failures and not out.stopped, f"fan-out {n} emit: {out}")
            for run in range(1, c.RUNS + 1):
                floors[n].append(c.run_timed(floor, N_RT, WARM_RT))
                st = c.run_timed(functools.partial(h.emit, "tool_call", payload), max(N_RT // n, 30),
                                 WARM_RT // n + 5)
                fan[n].append(st)
                d.progress(f"fan-out {n} (floor {c.fmt_us(floors[n][-1].p50)} us)", run, st)
    table = c.Table("1. fan-out: h.emit('tool_call') through N extensions (each returns None)",
                    ["x floor (same run)", "per extension, x floor"],
                    note="One host per N; each run is paired with a floor run just before it (the floor: a raw pyzmq "
                         "round trip with the bytes of a one-extension emit). Handlers run one after another, in "
                         "order (a gate's result decides whether the next one runs).")
    for n in FANOUT:
        for run in range(c.RUNS):
            st, base = fan[n][run], floors[n][run]
            table.rows.append((f"FLOOR (before fan-out {n})", str(run + 1), base, {}))
            table.rows.append((f"fan-out through {n}", str(run + 1), st, {
                "x floor (same run)": c.fmt_ratio(st.p50 / base.p50),
                "per extension, x floor": c.fmt_ratio(st.p50 / n / base.p50)}))
    table.print()
    for n in FANOUT:
        figures[f"fanout_{n}_p50_ratio"] = c.median([s.p50 / f.p50 for s, f in zip(fan[n], floors[n], strict=True)])
    figures["fanout_floor_p50_us"] = c.median([f.p50 for n in FANOUT for f in floors[n]])
    figures["start_32_ready_s"] = c.median(start_s)
    figures["host_mb_per_extension"] = c.median(host_per_ext)
    print(c.markdown_table("2. start 32 extensions to ready; host memory per extension", ["metric", "each", "median"], [
        ["h.load_many(32 extensions): call → all ready (s)", ", ".join(f"{v:.2f}" for v in start_s),
         f"{c.median(start_s):.2f}"],
        ["host USS growth per loaded extension (MiB)", ", ".join(f"{v:.2f}" for v in host_per_ext),
         f"{c.median(host_per_ext):.2f}"],
    ]))


def bench_footprint(stack: contextlib.ExitStack, cfg: HostConfig, figures: dict[str, object]) -> None:
    """RSS/USS of an idle Python and Node extension (process tree)."""
    h = stack.enter_context(ExtensionHost(cfg))
    rows = []
    cases = [("python", EXTS / "gate_none")]
    if shutil.which("node") and JS_SDK_MODULES.is_dir():
        cases.append(("node", EXTS / "idle_js"))
    else:
        rows.append(["idle Node extension", "-", "-", "skipped: node or ext_sdk/js/node_modules missing"])
    for runtime, path in cases:
        ext = h.load(path)
        out = h.emit("tool_call", {"tool_call_id": "t1", "tool_name": "ls", "tool_kind": "read", "input": "{}",
                                   "source": "llm"})
        d_ok = not out.failures
        _settle(h, 1.0)
        tree = _tree(ext)
        worker = tree[-1:]
        rss, uss = _memory_mb(tree)
        w_rss, w_uss = _memory_mb(worker)
        figures[f"idle_{runtime}_extension_rss_mb"] = rss
        figures[f"idle_{runtime}_extension_uss_mb"] = uss
        figures[f"idle_{runtime}_worker_uss_mb"] = w_uss
        rows.append([f"idle {runtime.capitalize()} extension ({len(tree)} process(es))", f"{rss:.1f} ({w_rss:.1f})",
                     f"{uss:.1f} ({w_uss:.1f})", "ok" if d_ok else f"emit failed: {out.failures}"])
        h.unload(ext.name)
    figures["idle_extension_uss_mb"] = figures.get("idle_python_extension_uss_mb")
    print(c.markdown_table("3. footprint of an idle extension (MiB; whole tree, in brackets the worker alone)",
                           ["extension", "RSS", "USS", "note"], rows,
                           note="USS: memory only this process holds (freed when it exits). A sandbox wrapper "
                                "(bubblewrap) adds a small process to the tree."))


def main() -> int:
    """Run the cases; always clean up."""
    c.install_signal_handlers()
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    c.header("scale: fan-out, 32 extensions to ready, footprint", [f"fan-out {FANOUT}; {STARTS} starts of 32"])
    tmp = Path(tempfile.mkdtemp(prefix=f"kb{os.getpid()}-"))
    os.chmod(tmp, 0o700)
    cfg = HostConfig(runtime_dir=tmp / "rt", search_dirs=(), sandbox=Sandbox(trust=TrustMode.ALL))
    figures: dict[str, object] = {}
    status = 0
    try:
        with contextlib.ExitStack() as stack:
            bench_footprint(stack, cfg, figures)
        with contextlib.ExitStack() as stack:
            bench_fanout(stack, cfg, tmp, figures)
            c.stop_all()
        c.write_results("scale", figures)
    except RuntimeError as exc:
        print(f"\nBENCHMARK BROKEN: {exc}", flush=True)
        status = 1
    finally:
        c.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        c.warn_leftovers(sys.stdout)
        print(f"_machine load after: {c.load_note()}_")
        faulthandler.cancel_dump_traceback_later()
    return status


if __name__ == "__main__":
    sys.exit(main())
