"""Extension dispatch cost in kithost, reported as ratios against a floor measured in the same run.

This VM (and CI) is shared and noisy: absolute times flip ~3x with CPU
placement. So every kithost number is divided by a raw pyzmq round trip
measured in the same run (interleaved run by run), and targets are judged on
those ratios only. The summary marks targets "met"/"not met" as information;
the exit status is 0 whatever the numbers (non-zero only if the benchmark
itself broke).

Cases:

1. FLOOR: raw pyzmq REQ/REP over ipc:// between this process (REQ, binds, as
   the host does) and a child Python process (REP, connects), sync sockets,
   ``poll`` before ``recv``, sending the exact frame the host sends for the
   tool_call event below (captured from the host: 32-byte MAC + msgpack
   envelope, ~450 B) and answered with the exact reply frame the extension
   sends. Also shown: the same with the host's socket options
   (REQ_RELAXED + REQ_CORRELATE), and both after a 5 ms idle gap.
2. kithost gate: ``h.emit("tool_call", payload)`` to one extension whose
   handler returns None (payload check, seal/HMAC, IPC, open/verify, handler).
3. kithost gate, handler returns ``Block(...)`` (the result is checked by the
   SDK and again by the host; the stop rule ends the chain).
4. unsubscribed event: ``h.emit("step_start", ...)`` that nobody handles
   (measured inside the rounds of 1-3).
5. notify: ``h.emit("message_update", ...)`` to a subscribed extension. The
   emit call only (it must not wait for IPC), in a burst and from idle; and
   the delivered throughput (emit N, then ``h.flush()``). Each run gets a
   short floor run right before it.
6. in-process baselines (no isolation): a direct function call, a pluggy
   hook, kithost's own in-process hook (``h.on``), the wire codec and payload
   check alone; and one subprocess per event (``python -I -c``, JSON on stdin).
7. hung handler: a tool_call handler that sleeps 2 s with ``deadline_ms=50``:
   how long the emit takes, the next emit while the handler still sleeps, and
   the first emit after it returned (recovery) vs the same idle gap without a hang.
8. cold start: ``h.load()`` from the call to return (spawn -> handshake done),
   with ``h.unload()`` between loads.

Run: ``.venv/bin/python bench/dispatch.py``
Env: ``BENCH_PIN=same|cross|none`` (CPU placement), ``BENCH_QUICK=1`` (smoke run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import psutil
import zmq
from _common import (
    PIN,
    PY,
    QUICK,
    RUNS,
    LoadMeter,
    Stats,
    Table,
    clone_ext,
    cross_preexec,
    fmt_ops,
    fmt_ratio,
    fmt_us,
    header,
    install_signal_handlers,
    leftover_check,
    load_note,
    markdown_table,
    median,
    pct,
    place_child,
    process_cpu_clock,
    run_batched,
    run_gapped,
    run_timed,
    spawn,
    steady,
    stop_all,
    summarize,
    timer_overhead_ns,
    write_results,
)

from ext_sdk.events import spec_for
from ext_sdk.wire import Opener, Sealer
from host import ExtensionHost, HostConfig
from host.config import Sandbox, SandboxLayer, TrustMode
from host.exthost.extension import RunningExtension

try:
    import pluggy
except ImportError:  # pluggy is only a dev dependency
    pluggy = None  # type: ignore[assignment]

HERE = Path(__file__).resolve().parent
EXTS = HERE / "_exts"
FLOOR_CHILD = HERE / "_floor_child.py"
STDIO_CHILD = HERE / "_stdio_child.py"

# ----------------------------------------------------------------------------- sizes

N_RT, WARM_RT = (200, 50) if QUICK else (3000, 300)  # round trips per run (floor, gate)
N_FLOOR_NEAR = 200 if QUICK else 1000  # floor round trips measured right before each notify run
N_GAP, GAP_S = (10 if QUICK else 100), 0.005  # sporadic events: idle gap before each
UNSUB_BATCHES, UNSUB_BATCH = (20, 200) if QUICK else (200, 500)
NOTIFY_BURST = 200 if QUICK else 2000  # stays far below limits.notify_queue (10,000)
NOTIFY_IDLE = 20 if QUICK else 300
INPROC_BATCHES, INPROC_BATCH = (20, 100) if QUICK else (200, 200)
SUBPROC_N, SUBPROC_WARM = (5, 1) if QUICK else (30, 2)
HANG_RUNS = 1 if QUICK else RUNS
COLD_LOADS = 2 if QUICK else 16  # the sandboxed-vs-bare difference is a few ms in ~100: more samples

CTX_BYTES = 50 * 1024  # context_prepare window (item 1: a 50 KB chain)
TARGET_FRAME = 450  # bytes of the tool_call request frame (MAC + msgpack envelope)
HANG_S = 2.0  # must match bench/_exts/gate_hang/gate_hang.py
HANG_DEADLINE_MS = 50
#: Hard limit for the whole script: a hang inside libzmq can hold the GIL, so only faulthandler's C-level
#: watchdog can end it (it dumps every thread's stack to stderr and exits with status 1; children die with us).
WATCHDOG_S = 120 if QUICK else 300

# ----------------------------------------------------------------------------- payloads

_WORDS = ("the", "file", "agent", "tool", "result", "context", "message", "python", "error", "value", "return",
          "function", "import", "module", "test", "path", "string", "data", "config", "server", "client", "event")


def _text(nbytes: int, offset: int = 0) -> str:
    out: list[str] = []
    size, i = 0, offset
    while size < nbytes:
        word = _WORDS[(i * 7) % len(_WORDS)]
        out.append(word)
        size += len(word) + 1
        i += 1
    return " ".join(out)[:nbytes]


def tool_call_payload(input_len: int, tool_name: str = "edit_file") -> dict[str, Any]:
    """A realistic tool_call payload whose ``input`` (arguments as JSON) is ``input_len`` bytes."""
    args: dict[str, Any] = {"path": "/home/user/project/src/agent/dispatcher/handlers.py", "old_string": "",
                            "new_string": "", "replace_all": False}
    rest = max(0, input_len - len(json.dumps(args)))
    args["old_string"] = _text(rest // 2)
    args["new_string"] = _text(rest - rest // 2, offset=3)
    return {"tool_call_id": "toolu_01HqZ8y3XkLmN4pQ7rS2tUvW", "tool_name": tool_name, "tool_kind": "edit",
            "input": json.dumps(args), "source": "llm"}


def context_payload(nbytes: int = CTX_BYTES) -> dict[str, Any]:
    """A context_prepare payload: a realistic window (system, user, assistant turns) of about ``nbytes``."""
    messages: list[dict[str, Any]] = [{"index": 0, "role": "system", "content": _text(1500)}]
    i = 1
    while sum(len(m["content"]) for m in messages) < nbytes:
        role = ("user", "assistant", "tool")[i % 3]
        msg: dict[str, Any] = {"index": i, "role": role, "content": _text(1200 + 37 * (i % 11), offset=i)}
        if role == "tool":
            msg["tool_call_id"] = f"toolu_{i:024d}"
        messages.append(msg)
        i += 1
    return {"messages": messages}


def request_frame(payload: dict[str, Any], sealer: Sealer | None = None) -> bytes:
    """The events-channel frame the host builds for one tool_call handler (channel.send_request)."""
    sealer = sealer or Sealer(b"k" * 32)
    frame: bytes = sealer.seal("event", {"id": 1, "event": "tool_call", "handler": 0, "data": payload})
    return frame


def reply_frame(result: dict[str, Any] | None = None, sealer: Sealer | None = None) -> bytes:
    """The reply frame an extension sends for one handler result (ext_sdk.runtime)."""
    sealer = sealer or Sealer(b"k" * 32)
    frame: bytes = sealer.seal("reply", {"id": 1, "results": [{"ok": True, "result": result}]})
    return frame


def fitted_payload(target: int = TARGET_FRAME) -> dict[str, Any]:
    """A tool_call payload whose request frame is ``target`` bytes (within a byte or two)."""
    n = 256
    for _ in range(4):
        n += target - len(request_frame(tool_call_payload(n)))
    return tool_call_payload(n)


class _Tap:
    """Wraps a Sealer or Opener and records every frame it seals or opens (frame capture only)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.frames: list[bytes] = []

    def seal(self, kind: str, fields: dict[str, object]) -> bytes:
        frame: bytes = self.inner.seal(kind, fields)
        self.frames.append(frame)
        return frame

    def open(self, frame: bytes) -> dict[str, object]:
        self.frames.append(frame)
        msg: dict[str, object] = self.inner.open(frame)
        return msg


def capture_frames(h: ExtensionHost, ext: RunningExtension, payload: dict[str, Any],
                   event: str = "tool_call") -> tuple[bytes, bytes] | None:
    """The real request and reply frames of one ``event`` emit, or ``None`` if the channel changed shape.

    Temporarily wraps the channel's sealer/opener (private attributes), emits
    once, and puts the originals back.
    """
    ch = ext.channel
    if ch is None or not hasattr(ch, "_events_out") or not hasattr(ch, "_events_in"):
        return None
    out_orig, in_orig = ch._events_out, ch._events_in
    tap_out, tap_in = _Tap(out_orig), _Tap(in_orig)
    ch._events_out, ch._events_in = tap_out, tap_in
    try:
        h.emit(event, payload)
    finally:
        ch._events_out, ch._events_in = out_orig, in_orig
    if len(tap_out.frames) != 1 or len(tap_in.frames) != 1:
        return None
    return tap_out.frames[0], tap_in.frames[0]


# ----------------------------------------------------------------------------- helpers


class BenchError(RuntimeError):
    """The benchmark itself is broken (not a missed target)."""


def require(cond: bool, what: str) -> None:
    """Raise :class:`BenchError` unless ``cond``."""
    if not cond:
        raise BenchError(what)


def progress(case: str, run: int | str, st: Stats) -> None:
    """One progress line on stderr."""
    print(f"  .. {case} run {run}: p50={fmt_us(st.p50)} us ops/s={fmt_ops(st.ops)}", file=sys.stderr, flush=True)


def med_p50(runs: list[Stats]) -> float:
    """Median over runs of each run's p50."""
    return median([s.p50 for s in runs])


def load_ext(h: ExtensionHost, name: str) -> RunningExtension:
    """Load ``bench/_exts/<name>`` into ``h``, wait for its steady state (spare waiting), place its processes
    (BENCH_PIN=cross)."""
    ext = h.load(EXTS / name)
    steady(h)
    for pid in tree_pids(ext):
        place_child(pid)
    return ext


def tree_pids(ext: RunningExtension) -> list[int]:
    """The extension's processes: the one the host started and, inside a sandbox wrapper, those it wraps."""
    if ext.process is None:
        return []
    root = psutil.Process(ext.process.pid)
    return [p.pid for p in (root, *root.children(recursive=True))]


def worker_pid(ext: RunningExtension) -> int:
    """The process that runs the extension's code (under bubblewrap: the innermost, not the wrapper)."""
    pids = tree_pids(ext)
    require(bool(pids), f"{ext.name} has no process")
    return pids[-1]


@dataclass
class Results:
    """Everything the summary needs."""

    floor: list[Stats] = field(default_factory=list)
    gate: list[Stats] = field(default_factory=list)
    block: list[Stats] = field(default_factory=list)
    unsub: list[Stats] = field(default_factory=list)
    notify_burst: list[Stats] = field(default_factory=list)
    notify_idle: list[Stats] = field(default_factory=list)
    notify_thr: list[float] = field(default_factory=list)
    notify_floor: list[Stats] = field(default_factory=list)
    notify_idle_floor: list[Stats] = field(default_factory=list)
    subproc: list[Stats] = field(default_factory=list)
    hang_ms: list[float] = field(default_factory=list)
    recover_us: list[float] = field(default_factory=list)
    control_us: list[float] = field(default_factory=list)
    cold_ms: list[float] = field(default_factory=list)
    cold_bare_ms: list[float] = field(default_factory=list)
    cold_sandboxed_ms: list[float] = field(default_factory=list)
    #: ``python -I -c pass`` (the bare interpreter start) next to the loads.
    bare_python_ms: list[float] = field(default_factory=list)
    #: 50 KB context_prepare chain link vs its own floor (the same frames), interleaved.
    ctx_floor: list[Stats] = field(default_factory=list)
    ctx: list[Stats] = field(default_factory=list)
    #: notify emit burst cost by number of observer extensions (0 = the same stream, no extension).
    notify_obs: dict[int, list[Stats]] = field(default_factory=dict)
    #: delivered notify events per second per observer extension, by number of observers.
    notify_rate: dict[int, list[float]] = field(default_factory=dict)
    pluggy: list[Stats] = field(default_factory=list)
    stdio: list[Stats] = field(default_factory=list)
    #: every emit cut by the hung handler's deadline: time over the deadline (ms).
    hang_over_ms: list[float] = field(default_factory=list)
    sandbox_layers: str = ""
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- 1-4: round trips


def make_floor_op(sock: zmq.Socket[bytes], frame: bytes) -> Callable[[], None]:
    """One floor round trip: send the request frame, poll, receive the reply."""
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    send, recv, poll = sock.send, sock.recv, poller.poll

    def op() -> None:
        send(frame)
        if not poll(1000):
            raise BenchError("floor child did not answer within 1 s")
        recv()

    return op


def bench_round_trips(stack: contextlib.ExitStack, cfg: HostConfig, tmp: Path, res: Results) -> Callable[[], None]:
    """Cases 1-4: floor vs kithost gate (None / Block) and the unsubscribed emit, interleaved run by run.

    Returns the floor operation (its child stays up until ``stack`` closes) for later phases.
    """
    h_gate = stack.enter_context(ExtensionHost(cfg))
    gate = load_ext(h_gate, "gate_none")
    h_block = stack.enter_context(ExtensionHost(cfg))
    block = load_ext(h_block, "gate_block")

    payload = fitted_payload()
    out = h_gate.emit("tool_call", payload)
    require(out.handlers == 1 and not out.stopped and not out.failures, f"gate-none emit: {out}")
    out = h_block.emit("tool_call", payload)
    require(out.stopped and out.stop is not None and not out.stop.failed and out.stop.by == block.name,
            f"gate-block emit: {out}")

    captured = capture_frames(h_gate, gate, payload)
    if captured is not None:
        req, rep = captured
        source = "captured from the host's channel"
    else:
        req, rep = request_frame(payload), reply_frame()
        source = "built with ext_sdk.wire.Sealer (capture failed: channel internals changed)"
    block_cap = capture_frames(h_block, block, payload)
    block_rep = len(block_cap[1]) if block_cap else len(reply_frame({"block": True, "reason": "bench: blocked"}))
    res.notes.append(f"tool_call request frame {len(req)} B (32 B MAC + {len(req) - 32} B msgpack), reply "
                     f"{len(rep)} B (Block reply {block_rep} B); payload `input` {len(payload['input'])} B; "
                     f"frames {source}")

    h_ctx = stack.enter_context(ExtensionHost(cfg))
    ctx_ext = load_ext(h_ctx, "ctx_chain")
    ctx_payload = context_payload()
    out = h_ctx.emit("context_prepare", ctx_payload)
    require(out.handlers == 1 and not out.failures and len(out.payload["messages"]) == len(ctx_payload["messages"]) + 1,
            f"context_prepare chain emit: {out}")
    ctx_cap = capture_frames(h_ctx, ctx_ext, ctx_payload, "context_prepare")
    require(ctx_cap is not None, "could not capture the context_prepare frames")
    assert ctx_cap is not None
    ctx_req, ctx_rep = ctx_cap
    res.notes.append(f"context_prepare request frame {len(ctx_req) / 1024:.1f} KiB, reply {len(ctx_rep) / 1024:.1f} "
                     f"KiB ({len(ctx_payload['messages'])} messages; the handler returns them with one appended)")
    rep_file = tmp / "ctx_reply.bin"
    rep_file.write_bytes(ctx_rep)

    # floor children: this process binds REQ (as the host does), the child connects REP
    zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    stack.callback(zctx.destroy, linger=0)
    floors: list[Callable[[], None]] = []
    floor_pids: list[int] = []
    for i, (host_opts, frame, answer) in enumerate(((False, req, rep.hex()), (True, req, rep.hex()),
                                                    (False, ctx_req, f"@{rep_file}"))):
        sock = zctx.socket(zmq.REQ)
        sock.linger = 0
        if host_opts:
            sock.setsockopt(zmq.REQ_RELAXED, 1)
            sock.setsockopt(zmq.REQ_CORRELATE, 1)
        endpoint = f"ipc://{tmp}/floor{i}"
        sock.bind(endpoint)
        child, _ = spawn([PY, "-I", str(FLOOR_CHILD), endpoint, answer])
        floors.append(make_floor_op(sock, frame))
        floor_pids.append(child.pid)

    assert gate.process is not None and block.process is not None
    floor_name = "FLOOR: raw pyzmq REQ/REP ipc, same frames"
    cases: list[tuple[str, Callable[[], object], int, list[Stats]]] = [
        (floor_name, floors[0], floor_pids[0], res.floor),
        ("floor + REQ_RELAXED/REQ_CORRELATE (host's socket options)", floors[1], floor_pids[1], []),
        ("kithost gate: h.emit('tool_call'), handler returns None", functools.partial(h_gate.emit, "tool_call",
                                                                                     payload), worker_pid(gate),
         res.gate),
        ("kithost gate: handler returns Block(...)", functools.partial(h_block.emit, "tool_call", payload),
         worker_pid(block), res.block),
        ("FLOOR 50 KB: raw pyzmq REQ/REP, the context_prepare frames", floors[2], floor_pids[2], res.ctx_floor),
        ("kithost chain: h.emit('context_prepare') 50 KB, handler returns the window", functools.partial(
            h_ctx.emit, "context_prepare", ctx_payload), worker_pid(ctx_ext), res.ctx),
    ]
    clocks = {pid: process_cpu_clock(pid) for _, _, pid, _ in cases}
    out = h_gate.emit("step_start", {"step_number": 1})
    require(out.handlers == 0 and not h_gate.subscribed("step_start"), "step_start must be unsubscribed")
    unsub = functools.partial(h_gate.emit, "step_start", {"step_number": 1})
    for run in range(1, RUNS + 1):
        for name, op, pid, sink in cases:
            st = run_timed(op, N_RT, WARM_RT, peer_cpu=clocks[pid])
            sink.append(st)
            progress(name, run, st)
        st = run_batched(unsub, UNSUB_BATCHES, UNSUB_BATCH, warmup_batches=5)  # 4. in the same round
        res.unsub.append(st)
        progress("unsubscribed emit", run, st)
    cols = ["x floor (same run)", "CPU us/op: this process", "CPU us/op: child/extension"]
    table = Table("1-3. tool_call round trip: floor vs kithost gate dispatch", cols,
                  note=f"Runs interleaved (floor, floor+opts, gate, block, unsubscribed; x{RUNS}); the ratio "
                       "divides each p50 "
                       "by the floor's p50 of the same run. CPU us/op: CPU time per round trip of this process "
                       "and of the child (floor) or extension process, all threads (libzmq I/O threads included).")
    for name, _, _, sink in cases:
        for run, st in enumerate(sink, 1):
            base = res.ctx_floor if "50 KB" in name else res.floor  # each case against the floor of its own bytes
            table.rows.append((name, str(run), st, {cols[0]: fmt_ratio(st.p50 / base[run - 1].p50),
                                                    cols[1]: fmt_us(st.own_cpu), cols[2]: fmt_us(st.peer_cpu)}))
    table.print()

    # the same after an idle gap (agent events are sporadic)
    gap_cases = [(floor_name, floors[0]), ("kithost gate, handler returns None", cases[2][1])]
    gap_res: dict[str, list[Stats]] = {name: [] for name, _ in gap_cases}
    for run in range(1, RUNS + 1):
        for name, op in gap_cases:
            st = run_gapped(op, N_GAP, GAP_S, warmup=10)
            gap_res[name].append(st)
            progress(f"{name} (gap)", run, st)
    gap_table = Table(f"1-2b. the same, {GAP_S * 1000:.0f} ms idle before each event (not timed)",
                      ["x floor (same run)"], note="ops/s is not meaningful here (it includes the idle gaps).")
    for name, runs in gap_res.items():
        for run, st in enumerate(runs, 1):
            ratio = st.p50 / gap_res[floor_name][run - 1].p50
            gap_table.rows.append((name, str(run), st, {"x floor (same run)": fmt_ratio(ratio)}))
    gap_table.print()

    for ext in (gate, block, ctx_ext):
        snap = ext.stats.snapshot()
        if snap["failures"]:
            res.notes.append(f"WARNING: {ext.name} had handler failures during the runs: {snap['failures']}")

    t4 = Table("4. unsubscribed event: h.emit('step_start') with no subscriber", ["x floor (same run)"],
               note=f"Measured in the rounds of table 1-3 (right after the gate runs), timed in batches of "
                    f"{UNSUB_BATCH} calls; per-call figures; ratio to the floor of the same round.")
    for run, st in enumerate(res.unsub, 1):
        t4.rows.append(("unsubscribed h.emit (a host with one extension loaded)", str(run), st,
                        {"x floor (same run)": fmt_ratio(st.p50 / res.floor[run - 1].p50)}))
    t4.print()
    return floors[0]


# ----------------------------------------------------------------------------- 5: notify


NOTIFY_OBSERVERS = (1, 4, 8)


def bench_notify(stack: contextlib.ExitStack, cfg: HostConfig, tmp: Path, res: Results,
                 floor: Callable[[], None]) -> None:
    """Case 5: notify emit cost to the caller with 0/1/4/8 observer extensions (burst, and from idle with one),
    and the delivery rate per observer.

    Each round is preceded by a short floor run, so every ratio uses a floor measured next to it.
    """
    payload = {"chunk": "Let me check the fil"}
    hosts: dict[int, ExtensionHost] = {0: stack.enter_context(ExtensionHost(cfg))}
    sinks: dict[int, list[RunningExtension]] = {0: []}
    for k in NOTIFY_OBSERVERS:
        root = tmp / f"observers{k}"
        root.mkdir()
        h = hosts[k] = stack.enter_context(ExtensionHost(cfg))
        report = h.load_many([clone_ext(EXTS / "notify_sink", root, f"{k}x{i}") for i in range(k)])
        require(len(report.loaded) == k, f"{k} notify sinks: {report.failed}")
        sinks[k] = report.loaded
        steady(h)
        for ext in report.loaded:
            for pid in tree_pids(ext):
                place_child(pid)
    for k, h in hosts.items():
        out = h.emit("message_update", payload)
        require(out.handlers == k, f"message_update must reach {k} sinks: {out}")
        for _ in range(200):
            h.emit("message_update", payload)
        require(h.flush(20), f"warm-up notify events were not delivered in 20 s ({k} observers)")
    pc = time.perf_counter_ns

    burst_table = Table("5a. notify: h.emit('message_update') cost to the caller, burst, by observer extensions; "
                        "delivery rate",
                        ["observers", "delivered", "dropped", "delivered events/s per observer",
                         "floor p50 (just before)", "emit x floor"],
                        note=f"{NOTIFY_BURST} emits back to back, each timed (the delivery thread runs meanwhile "
                             "and competes for the GIL), then h.flush(). ops/s = emit calls/s; delivered events/s per "
                             "observer = N / (first emit -> flush returned), every observer having received all N. "
                             "0 observers: the same stream on a host with no extension (the agent's cost without "
                             f"any). Before each round: {N_FLOOR_NEAR} floor round trips, that round's floor.")
    for run in range(1, RUNS + 1):
        res.notify_floor.append(run_timed(floor, N_FLOOR_NEAR, 50))
        for k, h in hosts.items():
            emit = functools.partial(h.emit, "message_update", payload)
            snap0 = [ext.stats.snapshot() for ext in sinks[k]]
            samples = [0] * NOTIFY_BURST
            start = pc()
            for i in range(NOTIFY_BURST):
                t0 = pc()
                emit()
                samples[i] = pc() - t0
            emitted = pc()
            flushed = h.flush(60)
            end = pc()
            require(flushed, f"notify burst was not delivered within 60 s ({k} observers)")
            snap1 = [ext.stats.snapshot() for ext in sinks[k]]
            delivered = sum(int(str(b["notified"])) - int(str(a["notified"]))
                            for a, b in zip(snap0, snap1, strict=True))
            dropped = sum(int(str(b["notify_dropped"])) - int(str(a["notify_dropped"]))
                          for a, b in zip(snap0, snap1, strict=True))
            st = summarize(samples, emitted - start)
            rate = NOTIFY_BURST / ((end - start) / 1e9) if k else float("nan")
            res.notify_obs.setdefault(k, []).append(st)
            res.notify_rate.setdefault(k, []).append(rate)
            if k == 1:
                res.notify_burst.append(st)
                res.notify_thr.append(rate)
            progress(f"notify emit (burst, {k} observers)", run, st)
            burst_table.rows.append((f"emit only, burst, {k} observers", str(run), st, {
                "observers": str(k), "delivered": f"{delivered}/{NOTIFY_BURST * k}", "dropped": str(dropped),
                "delivered events/s per observer": fmt_ops(rate) if k else "-",
                "floor p50 (just before)": fmt_us(res.notify_floor[-1].p50),
                "emit x floor": fmt_ratio(st.p50 / res.notify_floor[-1].p50)}))
    burst_table.print()
    h = hosts[1]
    emit = functools.partial(h.emit, "message_update", payload)
    sink = sinks[1][0]

    idle_table = Table("5b. notify: one emit from idle (delivery thread idle, queue empty)",
                       ["floor p50 (just before)", "emit x floor"],
                       note="Before each timed emit, h.flush() (not timed) so the delivery thread is idle. "
                            f"ops/s includes the untimed delivery and flush. Before each run: {N_FLOOR_NEAR} floor "
                            "round trips.")
    idle_floor: list[Stats] = []
    for run in range(1, RUNS + 1):
        idle_floor.append(run_timed(floor, N_FLOOR_NEAR, 50))
        samples = [0] * NOTIFY_IDLE
        start = pc()
        for i in range(NOTIFY_IDLE):
            h.flush(10)
            t0 = pc()
            emit()
            samples[i] = pc() - t0
        require(h.flush(10), "notify events were not delivered")
        st = summarize(samples, pc() - start)
        res.notify_idle.append(st)
        progress("notify emit (idle)", run, st)
        idle_table.rows.append(("emit only, from idle", str(run), st,
                                {"floor p50 (just before)": fmt_us(idle_floor[-1].p50),
                                 "emit x floor": fmt_ratio(st.p50 / idle_floor[-1].p50)}))
    res.notify_idle_floor = idle_floor
    idle_table.print()
    snap = sink.stats.snapshot()
    if snap["failures"] or snap["notify_dropped"]:
        res.notes.append(f"WARNING: notify sink failures {snap['failures']}, dropped {snap['notify_dropped']}")


# ----------------------------------------------------------------------------- 6: in-process / subprocess

SUBPROC_CODE = ("import json,sys; e=json.load(sys.stdin); "
                "json.dump({'block': False, 'tool': e['tool_name']}, sys.stdout)")


def _noop_hook(event: Any) -> None:
    """An in-process handler with no opinion."""
    return None


def bench_in_process(stack: contextlib.ExitStack, cfg: HostConfig, res: Results) -> None:
    """Case 6: no-isolation baselines (direct call, pluggy, kithost h.on), codec parts, subprocess per event."""
    payload = fitted_payload()
    cases: list[tuple[str, Callable[[], object]]] = [("direct Python call fn(payload)", functools.partial(
        _noop_hook, payload))]
    if pluggy is not None:
        spec_marker, impl_marker = pluggy.HookspecMarker("bench"), pluggy.HookimplMarker("bench")

        class _Spec:
            @spec_marker
            def tool_call(self, payload: dict[str, Any]) -> None:
                """Hook spec."""

        class _Impl:
            @impl_marker
            def tool_call(self, payload: dict[str, Any]) -> None:
                return None

        pm = pluggy.PluginManager("bench")
        pm.add_hookspecs(_Spec)
        pm.register(_Impl())
        cases.append(("pluggy hook, 1 impl", functools.partial(pm.hook.tool_call, payload=payload)))
    h = stack.enter_context(ExtensionHost(cfg))
    h.on("tool_call", _noop_hook)
    require(h.emit("tool_call", payload).handlers == 1, "in-process hook not called")
    cases.append(("kithost in-process hook: h.on + h.emit('tool_call')", functools.partial(h.emit, "tool_call",
                                                                                           payload)))
    spec = spec_for("tool_call")
    assert spec is not None
    cases.append(("part: host payload check (spec.payload.check)", functools.partial(spec.payload.check, payload,
                                                                                     "payload")))
    key = os.urandom(32)
    req_sealer, req_opener = Sealer(key), Opener(key, frozenset({"event"}))
    rep_sealer, rep_opener = Sealer(key), Opener(key, frozenset({"reply"}))
    fields = {"id": 1, "event": "tool_call", "handler": 0, "data": payload}
    rep_fields = {"id": 1, "results": [{"ok": True, "result": None}]}

    def req_codec() -> None:
        req_opener.open(req_sealer.seal("event", fields))

    def rep_codec() -> None:
        rep_opener.open(rep_sealer.seal("reply", rep_fields))

    def plain_msgpack() -> None:
        msgpack.unpackb(msgpack.packb(fields))

    cases += [("part: request seal (HMAC+pack) + open (verify, unpack, schema)", req_codec),
              ("part: reply seal + open", rep_codec),
              ("part: plain msgpack pack+unpack of the same request", plain_msgpack)]
    table = Table("6a. in-process (no isolation) and the parts of one kithost round trip",
                  note=f"Hot loops in this process, timed in batches of {INPROC_BATCH}; per-call figures. The "
                       "'part' rows are CPU work that the floor does not do (in a real round trip it runs with "
                       "cold caches, typically 2-3x slower).")
    for name, op in cases:
        for run in range(1, RUNS + 1):
            st = run_batched(op, INPROC_BATCHES, INPROC_BATCH, warmup_batches=5)
            if name.startswith("pluggy"):
                res.pluggy.append(st)
            progress(name, run, st)
            table.rows.append((name, str(run), st, {}))
    table.print()

    # one subprocess per event
    data = json.dumps(payload).encode()
    preexec = cross_preexec if PIN == "cross" else None

    def subproc() -> None:
        r = subprocess.run([PY, "-I", "-c", SUBPROC_CODE], input=data, capture_output=True, timeout=30,
                           check=True, preexec_fn=preexec)
        if json.loads(r.stdout)["block"]:
            raise BenchError("subprocess hook blocked")

    t6b = Table("6b. one subprocess per event: python -I -c (JSON on stdin, JSON on stdout)", ["x gate p50"],
                note="x gate p50 = this p50 / the kithost gate p50 of the same run index (case 2).")
    for run in range(1, RUNS + 1):
        st = run_timed(subproc, SUBPROC_N, SUBPROC_WARM)
        res.subproc.append(st)
        progress("subprocess per event", run, st)
        t6b.rows.append(("subprocess per event", str(run), st,
                         {"x gate p50": fmt_ratio(st.p50 / res.gate[run - 1].p50)}))
    t6b.print()

    # JSON lines over a stdio pipe to one long-lived child (no MAC, no schema, no deadline)
    child, _ = spawn([PY, "-I", str(STDIO_CHILD)], stdin_pipe=True)
    assert child.stdin is not None and child.stdout is not None
    write, flush, readline = child.stdin.write, child.stdin.flush, child.stdout.readline
    seq = iter(range(1, 1 << 62))

    def stdio_round_trip() -> None:
        write(json.dumps({"id": next(seq), "event": "tool_call", "data": payload}).encode() + b"\n")
        flush()
        if json.loads(readline())["result"] is not None:
            raise BenchError("stdio child answered a result")

    t6c = Table("6c. JSON lines over a stdio pipe to a child (json.dumps / json.loads both sides)", ["x gate p50"],
                note="One long-lived child (bench/_stdio_child.py), the same tool_call payload; x gate p50 = this "
                     "p50 / the kithost gate p50 of the same run index.")
    for run in range(1, RUNS + 1):
        st = run_timed(stdio_round_trip, N_RT, WARM_RT)
        res.stdio.append(st)
        progress("stdio JSON lines", run, st)
        t6c.rows.append(("stdio JSON lines round trip", str(run), st,
                         {"x gate p50": fmt_ratio(st.p50 / res.gate[run - 1].p50)}))
    t6c.print()


# ----------------------------------------------------------------------------- 7: hung handler


def bench_hang(stack: contextlib.ExitStack, cfg: HostConfig, res: Results) -> None:
    """Case 7: a 2 s handler under a 50 ms deadline: emit time, the next emit, recovery after it returned."""
    h = stack.enter_context(ExtensionHost(cfg))
    ext = load_ext(h, "gate_hang")
    require(abs(ext.declared.handlers[0].deadline_s - HANG_DEADLINE_MS / 1000) < 1e-9,
            f"gate_hang deadline is {ext.declared.handlers[0].deadline_s} s, expected {HANG_DEADLINE_MS} ms")
    normal = fitted_payload()
    hang = dict(normal, tool_name="hang")
    for _ in range(50):
        out = h.emit("tool_call", normal)
    require(not out.failures, f"warm-up emit failed: {out.failures}")
    pc = time.perf_counter_ns

    def timed(p: dict[str, Any]) -> tuple[float, str]:
        t0 = pc()
        o = h.emit("tool_call", p)
        dt = (pc() - t0) / 1000
        what = "ok" if not o.failures else ",".join(f.kind for f in o.failures)
        if o.stopped:
            what += " (blocked: fail-closed)" if o.stop is not None and o.stop.failed else " (blocked)"
        return dt, what

    rows = []
    for run in range(1, HANG_RUNS + 1):
        t_start = time.monotonic()
        hang_us, hang_what = timed(hang)
        next_us, next_what = timed(normal)  # the extension is still inside its 2 s sleep
        res.hang_over_ms += [hang_us / 1000 - HANG_DEADLINE_MS, next_us / 1000 - HANG_DEADLINE_MS]
        while time.monotonic() < t_start + HANG_S - 0.12:  # more samples: each emit meets the same deadline
            more_us, more_what = timed(normal)
            require("timeout" in more_what, f"an emit during the 2 s sleep did not time out: {more_what}")
            res.hang_over_ms.append(more_us / 1000 - HANG_DEADLINE_MS)
        t_idle = time.monotonic()
        time.sleep(max(0.0, t_start + HANG_S + 0.15 - time.monotonic()))  # the hung handler has returned
        gap_s = time.monotonic() - t_idle
        rec_us, rec_what = timed(normal)
        rec2_us, rec2_what = timed(normal)
        time.sleep(gap_s)  # control: the same idle gap, no hang before it
        ctl_us, ctl_what = timed(normal)
        res.hang_ms.append(hang_us / 1000)
        res.recover_us.append(rec_us)
        res.control_us.append(ctl_us)
        print(f"  .. hung handler run {run}: emit {hang_us / 1000:.1f} ms ({hang_what}), next {next_us / 1000:.1f} "
              f"ms ({next_what}), recovery {rec_us:.0f} us, control {ctl_us:.0f} us", file=sys.stderr, flush=True)
        rows.append([str(run), f"{hang_us / 1000:.1f}", f"{hang_us / 1000 - HANG_DEADLINE_MS:+.2f}", hang_what,
                     f"{next_us / 1000:.1f}", next_what, f"{rec_us:.0f} ({rec_what})", f"{rec2_us:.0f} ({rec2_what})",
                     f"{ctl_us:.0f} ({ctl_what})"])
    print(markdown_table(
        f"7. hung handler: sleeps {HANG_S:.0f} s, deadline_ms={HANG_DEADLINE_MS} (policy closed, the gate default)",
        ["run", "hung emit ms", "over deadline ms", "outcome", "next emit ms (handler still sleeping)", "outcome",
         "1st emit after the handler returned, us", "2nd emit, us",
         "control: 1st emit after the same idle gap, no hang, us"],
        rows,
        note="One sample per run (each run costs the full 2 s sleep plus the control gap). 'next emit' is sent at "
             "once after the timeout: the extension serves one request at a time, so it cannot answer before its "
             f"sleep ends. The emits after the hang follow ~{HANG_S:.0f} s of idle, so the control repeats that "
             "idle gap without a hang: recovery costs nothing beyond it if the two match."),
        flush=True)


# ----------------------------------------------------------------------------- 8: cold start

#: Reference rows of case 8: (label, argv after the interpreter). The first is the cold_start_ratio's
#: denominator; the ``-S`` row shows what skipping ``site`` saves (an extension's interpreter runs ``-I -S``).
COLD_REFS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("reference: python -I -c pass", ("-I", "-c", "pass")),
    ("reference: python -I -S -c pass (no site)", ("-I", "-S", "-c", "pass")),
    ("reference: python -I -c 'import ext_sdk.runtime'", ("-I", "-c", "import ext_sdk.runtime")),
)


def bench_cold(stack: contextlib.ExitStack, cfg: HostConfig, res: Results) -> None:
    """Case 8: h.load() call to return (spawn -> handshake done), first emit after it, h.unload()."""
    h = stack.enter_context(ExtensionHost(cfg))
    payload = fitted_payload()
    pc = time.perf_counter_ns
    load_ns, first_ns, unload_ns, rungs = [], [], [], []
    for i in range(COLD_LOADS):
        t0 = pc()
        ext = h.load(EXTS / "gate_none")
        load_ns.append(pc() - t0)
        for pid in tree_pids(ext):
            place_child(pid)
        t0 = pc()
        out = h.emit("tool_call", payload)
        first_ns.append(pc() - t0)
        require(out.handlers == 1 and not out.failures, f"first emit after load {i + 1} failed: {out}")
        t0 = pc()
        h.unload(ext.name)
        unload_ns.append(pc() - t0)
        rungs.append(ext.last_shutdown.value if ext.last_shutdown is not None else "?")
        print(f"  .. load {i + 1}: {load_ns[-1] / 1e6:.1f} ms, first emit {first_ns[-1] / 1e3:.0f} us, unload "
              f"{unload_ns[-1] / 1e6:.1f} ms", file=sys.stderr, flush=True)
    res.cold_ms = [v / 1e6 for v in load_ns]
    # The same loads with every sandbox layer off (the boot still runs: rlimits, capabilities): the cost of
    # confinement is the difference, interleaved with the sandboxed loads so both see the same machine.
    bare_cfg = dataclasses.replace(cfg, sandbox=Sandbox(trust=TrustMode.ALL, allow_weak=True,
                                                        disable=tuple(SandboxLayer)))
    bare_h = stack.enter_context(ExtensionHost(bare_cfg))
    bare_ns, sandboxed_ns = [], []
    for _ in range(COLD_LOADS):
        for host, samples in ((bare_h, bare_ns), (h, sandboxed_ns)):
            t0 = pc()
            ext = host.load(EXTS / "gate_none")
            samples.append(pc() - t0)
            host.unload(ext.name)
    res.cold_bare_ms = [v / 1e6 for v in bare_ns]
    res.cold_sandboxed_ms = [v / 1e6 for v in sandboxed_ns]
    res.sandbox_layers = ", ".join(ext.confined.layers) if ext.confined else ""
    preexec = cross_preexec if PIN == "cross" else None
    table = Table(f"8. cold start: {COLD_LOADS} loads of one extension (unload between)", ["each (ms)"],
                  note="p99 of a handful of samples is the maximum. An unload not ended by the polite shutdown "
                       "request shows its rung (SIGTERM after a 1 s wait). Reference rows: interpreter start alone, "
                       "and the SDK import the extension process does.")
    table.rows.append(("h.load(): call -> return (spawn, handshake)", "-", summarize(load_ns),
                       {"each (ms)": ", ".join(f"{v / 1e6:.0f}" for v in load_ns)}))
    table.rows.append(("h.load(), every sandbox layer off (interleaved)", "-", summarize(bare_ns),
                       {"each (ms)": ", ".join(f"{v / 1e6:.0f}" for v in bare_ns)}))
    table.rows.append(("h.load(), sandboxed (interleaved)", "-", summarize(sandboxed_ns),
                       {"each (ms)": ", ".join(f"{v / 1e6:.0f}" for v in sandboxed_ns)}))
    table.rows.append(("first h.emit('tool_call') after load", "-", summarize(first_ns),
                       {"each (ms)": ", ".join(f"{v / 1e6:.2f}" for v in first_ns)}))
    each_unload = [f"{v / 1e6:.0f}" + ("" if r == "shutdown request" else f" ({r})")
                   for v, r in zip(unload_ns, rungs, strict=True)]
    table.rows.append(("h.unload() (right after the first emit)", "-", summarize(unload_ns),
                       {"each (ms)": ", ".join(each_unload)}))
    if any(r != "shutdown request" for r in rungs):
        res.notes.append(f"{sum(r != 'shutdown request' for r in rungs)}/{len(rungs)} unloads were not ended by the "
                         "polite shutdown request (see the rung in table 8)")
    for index, (name, args) in enumerate(COLD_REFS):
        samples = []
        for _ in range(COLD_LOADS):
            t0 = pc()
            subprocess.run([PY, *args], check=True, preexec_fn=preexec)
            samples.append(pc() - t0)
        if index == 0:
            res.bare_python_ms = [v / 1e6 for v in samples]
        table.rows.append((name, "-", summarize(samples), {"each (ms)": ", ".join(f"{v / 1e6:.0f}" for v in samples)}))
    table.print()


# ----------------------------------------------------------------------------- summary


def _status(ok: bool) -> str:
    return "met" if ok else "**not met**"


def ratios(num: list[Stats], den: list[Stats], attr: str = "p50") -> list[float]:
    """Per-run ratios ``num[i].attr / den[i].attr``."""
    return [getattr(a, attr) / getattr(b, attr) for a, b in zip(num, den, strict=True)]


def figures(res: Results) -> dict[str, Any]:
    """The machine-readable figures (``latest.json`` keys of issue 10, item 8, plus their raw numbers)."""
    over = sorted(res.hang_over_ms)
    out: dict[str, Any] = {
        "floor_p50_us": med_p50(res.floor),
        "gate_p50_us": med_p50(res.gate),
        "gate_p50_ratio": median(ratios(res.gate, res.floor)),
        "gate_p99_ratio": median(ratios(res.gate, res.floor, "p99")),
        "block_p50_ratio": median(ratios(res.block, res.floor)),
        "context_prepare_p50_ratio": median(ratios(res.ctx, res.ctx_floor)),
        "context_prepare_p50_us": med_p50(res.ctx),
        "context_prepare_floor_p50_us": med_p50(res.ctx_floor),
        "cpu_per_round_trip_us": {
            "gate_host": median([s.own_cpu for s in res.gate]),
            "gate_extension": median([s.peer_cpu for s in res.gate]),
            "floor_this_process": median([s.own_cpu for s in res.floor]),
            "floor_child": median([s.peer_cpu for s in res.floor]),
        },
        "unsubscribed_emit_us": med_p50(res.unsub),
        "notify_emit_us": {str(k): med_p50(v) for k, v in sorted(res.notify_obs.items())},
        "notify_emit_us_8_observers": med_p50(res.notify_obs[8]) if 8 in res.notify_obs else None,
        "notify_delivered_per_s_per_observer": {str(k): median(v) for k, v in sorted(res.notify_rate.items()) if k},
        "hang_overshoot_ms_p50": pct(over, 50),
        "hang_overshoot_ms_p99": pct(over, 99),
        "hang_samples": len(over),
        "cold_start_ms": median(res.cold_ms),
        "bare_python_start_ms": median(res.bare_python_ms),
        "cold_start_ratio": median(res.cold_ms) / median(res.bare_python_ms),
        "sandbox_cold_start_cost_ms": median(res.cold_sandboxed_ms) - median(res.cold_bare_ms),
        "subprocess_per_event_p50_us": med_p50(res.subproc),
        "subprocess_per_event_speedup": med_p50(res.subproc) / med_p50(res.gate),
        "pluggy_p50_us": med_p50(res.pluggy) if res.pluggy else None,
        "stdio_json_p50_us": med_p50(res.stdio),
    }
    return out


def summary(res: Results) -> str:
    """The ratio table (targets are information only)."""
    floor = med_p50(res.floor)
    gate = med_p50(res.gate)
    gate_ratios = [g.p50 / f.p50 for g, f in zip(res.gate, res.floor, strict=True)]
    block_ratios = [b.p50 / f.p50 for b, f in zip(res.block, res.floor, strict=True)]
    unsub = med_p50(res.unsub)
    unsub_ratio = median([u.p50 / f.p50 for u, f in zip(res.unsub, res.floor, strict=True)])
    burst = med_p50(res.notify_burst)
    burst_ratio = median([b.p50 / f.p50 for b, f in zip(res.notify_burst, res.notify_floor, strict=True)])
    idle = med_p50(res.notify_idle)
    idle_ratio = median([b.p50 / f.p50 for b, f in zip(res.notify_idle, res.notify_idle_floor, strict=True)])
    notify_floor = med_p50(res.notify_floor)
    over = [v - HANG_DEADLINE_MS for v in res.hang_ms]
    cold = median(res.cold_ms)
    sandbox_cost = median(res.cold_sandboxed_ms) - median(res.cold_bare_ms)
    sub = med_p50(res.subproc)

    def rng(vals: list[float], fmt: Callable[[float], str]) -> str:
        return f"{fmt(min(vals))}-{fmt(max(vals))}" if len(vals) > 1 else fmt(vals[0])

    rows = [
        ["gate / floor (tool_call, handler returns None)", fmt_ratio(median(gate_ratios)),
         f"per run {rng(gate_ratios, fmt_ratio)}; gate p50 {fmt_us(gate)} us, floor p50 {fmt_us(floor)} us",
         "<= 1.5x", _status(median(gate_ratios) <= 1.5)],
        ["CPU per round trip: gate vs floor (this process + peer)",
         f"{fmt_us(median([s.own_cpu + s.peer_cpu for s in res.gate]))} vs "
         f"{fmt_us(median([s.own_cpu + s.peer_cpu for s in res.floor]))} us",
         f"gate: host {fmt_us(median([s.own_cpu for s in res.gate]))} + extension "
         f"{fmt_us(median([s.peer_cpu for s in res.gate]))} us; floor: {fmt_us(median([s.own_cpu for s in res.floor]))}"
         f" + {fmt_us(median([s.peer_cpu for s in res.floor]))} us", "-", "info"],
        ["gate with Block result / floor", fmt_ratio(median(block_ratios)),
         f"per run {rng(block_ratios, fmt_ratio)}; p50 {fmt_us(med_p50(res.block))} us", "<= 1.7x",
         _status(median(block_ratios) <= 1.7)],
        ["unsubscribed emit (step_start)", f"{fmt_us(unsub)} us",
         f"= {unsub_ratio:.2%} of the floor (same round)", "<= 1 us", _status(unsub <= 1.0)],
        ["notify emit, burst (message_update) / floor", fmt_ratio(burst_ratio),
         f"emit p50 {fmt_us(burst)} us, p99 {fmt_us(median([s.p99 for s in res.notify_burst]))} us; floor next to "
         f"it {fmt_us(notify_floor)} us", "< 1x (never waits for IPC)", _status(burst_ratio < 1.0)],
        ["notify emit from idle / floor", fmt_ratio(idle_ratio), f"emit p50 {fmt_us(idle)} us", "-", "info"],
        ["notify delivered throughput", f"{fmt_ops(median(res.notify_thr))} events/s",
         f"= {median(res.notify_thr) / (1e6 / notify_floor):.2f}x the floor's round trips/s", "-", "info"],
        ["hung handler: overshoot over the 50 ms deadline", f"{median(over):+.2f} ms",
         f"emit took {rng(res.hang_ms, lambda v: f'{v:.1f}')} ms", "<= 5 ms ('a few ms')",
         _status(median(over) <= 5.0)],
        ["recovery: first emit after the hung handler returned", f"{fmt_us(median(res.recover_us))} us",
         f"control, same idle gap without a hang: {fmt_us(median(res.control_us))} us", "-", "info"],
        ["cold start: h.load() spawn -> ready", f"{cold:.0f} ms",
         f"loads {rng(res.cold_ms, lambda v: f'{v:.0f}')} ms", "<= 150 ms", _status(cold <= 150.0)],
        ["sandboxed cold start over no sandbox layer", f"{sandbox_cost:+.0f} ms",
         f"median load {median(res.cold_sandboxed_ms):.0f} vs {median(res.cold_bare_ms):.0f} ms; in force: "
         f"{res.sandbox_layers or 'none'}", "<= +20 ms", _status(sandbox_cost <= 20.0)],
        ["subprocess per event / gate", fmt_ratio(sub / gate), f"subprocess p50 {sub / 1000:.1f} ms", ">= 300x",
         _status(sub / gate >= 300)],
        ["context_prepare 50 KB chain / its floor (same frames)", fmt_ratio(median(ratios(res.ctx, res.ctx_floor))),
         f"p50 {fmt_us(med_p50(res.ctx))} us, floor {fmt_us(med_p50(res.ctx_floor))} us", "-", "info"],
        ["notify emit, 8 observers (burst)", f"{fmt_us(med_p50(res.notify_obs[8]))} us",
         "by observers: " + ", ".join(f"{k}: {fmt_us(med_p50(v))} us" for k, v in sorted(res.notify_obs.items())),
         "<= 10 us", _status(med_p50(res.notify_obs[8]) <= 10.0)],
        ["hung handler: overshoot p99 over the deadline", f"{pct(sorted(res.hang_over_ms), 99):+.2f} ms",
         f"{len(res.hang_over_ms)} emits cut at the deadline", "<= 1 ms",
         _status(pct(sorted(res.hang_over_ms), 99) <= 1.0)],
        ["cold start / bare interpreter start", fmt_ratio(cold / median(res.bare_python_ms)),
         f"h.load() {cold:.0f} ms vs python -I -c pass {median(res.bare_python_ms):.0f} ms", "<= 2x",
         _status(cold / median(res.bare_python_ms) <= 2.0)],
        ["alternatives: pluggy / stdio JSON lines, p50",
         f"{fmt_us(med_p50(res.pluggy)) if res.pluggy else '-'} / {fmt_us(med_p50(res.stdio))} us",
         f"kithost gate {fmt_us(gate)} us", "-", "info"],
    ]
    return markdown_table("Summary: ratios against the floor measured in this run", [
        "metric", "value", "raw numbers (median of runs' p50)", "target", "status"], rows,
        note="Targets are information only (exit status is 0 either way). Judge ratios, not absolute times: "
             "unpinned runs on a 2-vCPU VM flip ~3x with CPU placement."
             + ("" if PIN == "same" else " Unpinned (or cross), even the ratios move: the floor and kithost can "
                "land in different placement modes, and kithost's two processes can overlap on two CPUs while "
                "the floor's ping-pong cannot gain from that. Compare code changes with BENCH_PIN=same."))


def main() -> int:
    """Run every case, print the tables and the summary; always clean up."""
    install_signal_handlers()
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    quiet = logging.getLogger("kithost")  # the hung-handler case logs expected timeout warnings
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    meter = LoadMeter()
    t_start = time.monotonic()
    header("dispatch: kithost extension dispatch cost vs a raw pyzmq floor", [
        f"timer: perf_counter_ns pair costs {timer_overhead_ns():.0f} ns",
        f"sizes: {N_RT} round trips per run (+{WARM_RT} warm-up), {N_GAP} with {GAP_S * 1000:.0f} ms gaps, "
        f"notify burst {NOTIFY_BURST}, subprocess {SUBPROC_N}, hung runs {HANG_RUNS}, cold loads {COLD_LOADS}",
    ])
    tmp = Path(tempfile.mkdtemp(prefix=f"kb{os.getpid()}-"))  # run.py removes it if this process dies
    os.chmod(tmp, 0o700)
    cfg = HostConfig(runtime_dir=tmp / "rt", search_dirs=(), sandbox=Sandbox(trust=TrustMode.ALL))
    res = Results()
    status = 0
    try:
        def round_trips_and_notify(stack: contextlib.ExitStack) -> None:
            floor = bench_round_trips(stack, cfg, tmp, res)
            bench_notify(stack, cfg, tmp, res, floor)

        for phase in (round_trips_and_notify, lambda s: bench_in_process(s, cfg, res),
                      lambda s: bench_hang(s, cfg, res), lambda s: bench_cold(s, cfg, res)):
            with contextlib.ExitStack() as stack:  # each phase closes its hosts and children
                phase(stack)
                stop_all()
        for note in res.notes:
            print(f"- {note}")
        print()
        print(summary(res), flush=True)
        write_results("dispatch", figures(res))
    except BenchError as exc:
        print(f"\nBENCHMARK BROKEN: {exc}", flush=True)
        status = 1
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        left = leftover_check()
        if left:
            print(f"WARNING: {len(left)} leftover process(es) were still running and have been killed: "
                  + "; ".join(left), flush=True)
        else:
            print("_cleanup: no leftover child processes (psutil check)_")
        print(f"_machine load after: {load_note()}_")
        faulthandler.cancel_dump_traceback_later()
        print(f"_run: {meter.report()}; total {time.monotonic() - t_start:.1f} s_", flush=True)
        if meter.foreign_share() > 0.10:
            print(f"WARNING: other processes used {meter.foreign_share():.2f} of a core during this run; the "
                  "numbers may be disturbed (ratios less so): rerun on a quieter machine to confirm.", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
