"""Remote benchmark: a gate extension on a ``kithost worker`` (loopback TCP + CURVE) vs the same extension
over local ipc, in one run.

Cases (each: warm-up, then ``N`` timed ``h.emit("tool_call", payload)`` to the one extension, whose handler
returns ``None``):

1. **local** — the extension loaded by the host itself (its ipc sockets, sandboxed as the machine allows);
2. **remote, loopback** — the same extension launched by a ``kithost worker`` subprocess listening on
   ``tcp://127.0.0.1``: every frame goes host → TCP + CURVE → the worker's relay → ipc → the extension;
3. **link round trip** — one ``status`` request on the worker link (CURVE, msgpack), for reference.

Reported as the ratio remote p50 / local p50 (key ``remote_gate_p50_ratio``). Nothing leaves loopback.
``BENCH_QUICK=1`` runs a smoke version; ``BENCH_PIN`` as in ``_common``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common as c  # sets CPU placement before zmq starts

from host import ExtensionHost, HostConfig
from host.config import Remote, Sandbox, TrustMode
from host.remote.keys import new_keypair

EXT = Path(__file__).resolve().parent / "_exts" / "gate_none"
ROOT = Path(__file__).resolve().parent.parent
N = 200 if c.QUICK else 3000
WARMUP = 50 if c.QUICK else 300
PAYLOAD: dict[str, Any] = {"tool_call_id": "c1", "tool_name": "bash", "tool_kind": "execute",
                           "input": json.dumps({"command": "ls"}), "parsed_args": {"command": "ls"}, "source": "llm"}


def _config(tmp: Path, **extra: Any) -> HostConfig:
    return HostConfig(search_dirs=(), state_path=tmp / "s.json", sandbox=Sandbox(trust=TrustMode.ALL), **extra)


def _start_worker(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    argv = [sys.executable, "-m", "host", "worker", "--listen", "tcp://127.0.0.1:0",
            "--key", str(tmp / "keys" / "worker.key_secret"), "--allow", str(tmp / "keys" / "host.key"), "-e", str(EXT)]
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if "listening on" not in line:
        c.stop(proc)
        raise RuntimeError(f"the worker did not start: {line!r}")
    c.place_child(proc.pid)
    return proc, line.split("listening on ", 1)[1].split(" ", 1)[0]


def main() -> int:
    c.install_signal_handlers()
    c.header("remote: gate on a worker (loopback TCP + CURVE) vs local ipc", [f"extension: {EXT.name}; N={N}"])
    worker: subprocess.Popen[bytes] | None = None
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            for name in ("host", "worker"):
                new_keypair(tmp / "keys", name)
            with ExtensionHost(_config(tmp)) as host:
                host.load(EXT)
                local = c.run_timed(lambda: host.emit("tool_call", PAYLOAD), N, WARMUP)
            print(f"  .. local p50 {local.p50:.1f} us", file=sys.stderr, flush=True)
            worker, address = _start_worker(tmp)
            remote_cfg = Remote(worker=address, key=str(tmp / "keys" / "worker.key"),
                                host_key=tmp / "keys" / "host.key_secret", extension="bench-gate-none")
            with ExtensionHost(_config(tmp, remote={"bench-gate-none": remote_cfg})) as host:
                report = host.load_remotes()
                if report.failed:
                    raise RuntimeError(f"remote load failed: {report.failed[0][1]}")
                remote = c.run_timed(lambda: host.emit("tool_call", PAYLOAD), N, WARMUP)
                source = host.extension("bench-gate-none").remote
                assert source is not None
                link = c.run_timed(lambda: source.link.request("status", 5.0), N // 10, WARMUP // 10)  # type: ignore[attr-defined]
        ratio = remote.p50 / local.p50
        print(c.markdown_table(
            "gate tool_call (µs), ratio = p50 / local ipc p50",
            ["case", "n", "p50 µs", "p90 µs", "p99 µs", "ratio"],
            [["local ipc (the host's own extension)", str(local.n), c.fmt_us(local.p50), c.fmt_us(local.p90),
              c.fmt_us(local.p99), "1.00x"],
             ["remote: worker on loopback, TCP + CURVE + relay", str(remote.n), c.fmt_us(remote.p50),
              c.fmt_us(remote.p90), c.fmt_us(remote.p99), c.fmt_ratio(ratio)],
             ["worker link round trip (status)", str(link.n), c.fmt_us(link.p50), c.fmt_us(link.p90),
              c.fmt_us(link.p99), c.fmt_ratio(link.p50 / local.p50)]],
        ))
        c.write_results("remote", {"remote_gate_p50_ratio": ratio, "remote_gate_p50_us": remote.p50,
                                   "local_gate_p50_us": local.p50, "remote_link_rtt_p50_us": link.p50})
        print(f"_machine load after: {c.load_note()}_")
    finally:
        if worker is not None:
            c.stop(worker, timeout=10)
        c.warn_leftovers()
    return 0


if __name__ == "__main__":
    sys.exit(main())
