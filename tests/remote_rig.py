"""A ``kithost worker`` subprocess for the remote tests, and the keys and host config to reach it.

Where the worker runs: in a network namespace of its own when this machine allows it (root: ``ip netns``
with a veth pair on a private /30, both ends owned by the test and removed afterwards), otherwise on
loopback in the test's namespace; :attr:`WorkerNet.kind` says which, and the tests print it. Either way
no traffic leaves this machine: the only addresses used are loopback and the test's own veth pair.
``KITHOST_TEST_NETNS=0`` forces loopback (to test that path as root).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from host.config import HostConfig, Remote, Supervision
from host.remote.keys import new_keypair

ROOT = Path(__file__).resolve().parent.parent
EXTENSIONS = ROOT / "extensions"
START_S = 30.0


@dataclass
class Keys:
    """Key pairs of the test: the host's, the worker's, and a stranger's."""

    dir: Path

    def public(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def secret(self, name: str) -> Path:
        return self.dir / f"{name}.key_secret"


def make_keys(tmp: Path) -> Keys:
    """``host``, ``worker`` and ``stranger`` pairs in ``tmp/keys``."""
    keys = Keys(tmp / "keys")
    for name in ("host", "worker", "stranger"):
        new_keypair(keys.dir, name)
    return keys


@dataclass
class WorkerNet:
    """Where a worker listens: ``kind`` is ``netns`` (its own network namespace) or ``loopback``."""

    kind: str
    address: str
    prefix: tuple[str, ...] = ()
    cleanup: list[list[str]] = field(default_factory=list)

    def close(self) -> None:
        for argv in self.cleanup:
            subprocess.run(argv, capture_output=True, timeout=10, check=False)


def worker_net(tag: str) -> WorkerNet:
    """A network namespace joined to this one by a veth pair, or loopback when that cannot be made."""
    if os.geteuid() != 0 or shutil.which("ip") is None or os.environ.get("KITHOST_TEST_NETNS") == "0":
        return WorkerNet("loopback", "127.0.0.1")
    ns = f"kh{os.getpid() % 100000}{tag}"
    here, there = f"kh{os.getpid() % 100000}{tag}h", f"kh{os.getpid() % 100000}{tag}w"
    octet = 16 + (os.getpid() + hash(tag)) % 200
    net = WorkerNet("netns", f"10.213.{octet}.2", ("ip", "netns", "exec", ns),
                    [["ip", "link", "del", here], ["ip", "netns", "del", ns]])
    steps = [["ip", "netns", "add", ns],
             ["ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", ns],
             ["ip", "addr", "add", f"10.213.{octet}.1/30", "dev", here],
             ["ip", "link", "set", here, "up"],
             ["ip", "-n", ns, "addr", "add", f"10.213.{octet}.2/30", "dev", there],
             ["ip", "-n", ns, "link", "set", there, "up"],
             ["ip", "-n", ns, "link", "set", "lo", "up"]]
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
        if done.returncode != 0:
            net.close()
            return WorkerNet("loopback", "127.0.0.1")
    return net


class WorkerProcess:
    """``kithost worker`` as a subprocess (started by :meth:`start`, ended by :meth:`kill` or :meth:`close`)."""

    def __init__(self, tmp: Path, keys: Keys, net: WorkerNet, extensions: list[Path]) -> None:
        self.tmp, self.keys, self.net, self.extensions = tmp, keys, net, extensions
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        config = tmp / "worker.toml"
        # hang 1 s: a launch its host no longer names in a heartbeat is killed after 2 s (host heartbeat: 0.2 s)
        config.write_text(f'[sandbox]\nallow_weak = true\ntrust_file = "{tmp / "worker-trust.json"}"\n'
                          '[supervision]\nhang = "1s"\n')
        self.config = config

    @property
    def address(self) -> str:
        return f"tcp://{self.net.address}:{self.port}"

    def start(self) -> None:
        """Start it (on the port it had before, if any) and wait until it listens."""
        argv = [*self.net.prefix, sys.executable, "-m", "host", "worker", "--config", str(self.config),
                "--listen", f"tcp://{self.net.address}:{self.port}", "--key", str(self.keys.secret("worker")),
                "--allow", str(self.keys.public("host"))]
        for ext in self.extensions:
            argv += ["-e", str(ext)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        first = _readline(self.proc, START_S)
        if "listening on" not in first:
            self.kill()
            raise AssertionError(f"worker did not start: {first!r} {self.stderr_tail()}")
        self.port = int(first.split("listening on ", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1])
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def stderr_tail(self) -> str:
        return "\n".join(self.lines[-30:])

    def kill(self) -> None:
        """SIGKILL the worker (its extensions die with it: the sandbox's parent-death signal)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def close(self) -> None:
        """SIGTERM (it stops its extensions), SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.proc.stdout, self.proc.stderr) if self.proc is not None else ():
            if stream is not None:
                stream.close()


def _readline(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The first stdout line, bounded (a reader thread: pipes have no timeout)."""
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return out[0] if out else ""


def remote_config(base: HostConfig, worker: WorkerProcess, *, host_key: str = "host", name: str = "permission-gate",
                  **supervision: Any) -> HostConfig:
    """``base`` with ``[remote."permission-gate"]`` on ``worker`` and fast supervision."""
    remote = Remote(worker=worker.address, key=str(worker.keys.public("worker")),
                    host_key=worker.keys.secret(host_key), extension="permission-gate")
    sup = replace(Supervision(), **{"heartbeat_ms": 200, "hang_ms": 1500, **supervision})
    return replace(base, remote={name: remote}, supervision=sup)


def wait_for(check: Any, timeout_s: float, what: str) -> float:
    """Poll ``check()`` until true; seconds it took. Fails the test after ``timeout_s``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.02)
    return time.monotonic() - start
