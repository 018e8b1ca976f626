"""The operator channel of a running host: ``kithost ext status|logs|restart`` talk to it.

Every :class:`~host.exthost.host.ExtensionHost` binds a REP socket at
``<its private 0700 dir>/ops`` and writes ``host.json`` (pid, start time,
working directory) and ``ops.key`` (0600, random) beside it. The CLI finds
running hosts by listing the runtime base directory, so only the same user
can reach them; every frame is also HMAC-signed with ``ops.key``.

Frame: 32-byte HMAC-SHA256 over the body, then msgpack
``{"op": "status" | "logs" | "restart", "args": {...}}``; the reply is
``{"ok": true, "data": ...}`` or ``{"ok": false, "error": "..."}``.
Requests are served from the supervisor thread (at most one tick late).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import psutil
import zmq

__all__ = ["OpsClient", "OpsServer", "RunningHost", "find_hosts"]

_MAC = 32


def _seal(key: bytes, msg: dict[str, Any]) -> bytes:
    body: bytes = msgpack.packb(msg, use_bin_type=True)
    return hmac.digest(key, body, "sha256") + body


def _open(key: bytes, frame: bytes) -> dict[str, Any] | None:
    if len(frame) <= _MAC or not hmac.compare_digest(frame[:_MAC], hmac.digest(key, frame[_MAC:], "sha256")):
        return None
    try:
        msg = msgpack.unpackb(frame[_MAC:], raw=False, max_str_len=1 << 20, max_array_len=100_000)
    except Exception:  # noqa: BLE001 - a bad frame is just ignored
        return None
    return msg if isinstance(msg, dict) else None


class OpsServer:
    """Serves ops requests for one host (call :meth:`serve` from one thread only)."""

    def __init__(self, zctx: zmq.Context[zmq.Socket[bytes]], directory: Path,
                 handlers: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
        self._key = secrets.token_bytes(32)
        key_file = directory / "ops.key"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self._key)
        self._sock = zctx.socket(zmq.REP)
        self._sock.linger = 0
        self._sock.setsockopt(zmq.MAXMSGSIZE, 1 << 20)
        self._sock.bind(f"ipc://{directory}/ops")
        (directory / "host.json").write_text(json.dumps({"pid": os.getpid(), "started": time.time(),
                                                         "cwd": os.getcwd()}))
        self._handlers = handlers

    def serve(self) -> None:
        """Answer every request already waiting (non-blocking)."""
        while self._sock.poll(0):
            msg = _open(self._key, self._sock.recv())
            if msg is None:
                self._sock.send(_seal(self._key, {"ok": False, "error": "bad request frame"}))
                continue
            handler = self._handlers.get(str(msg.get("op")))
            try:
                if handler is None:
                    raise ValueError(f"unknown op {msg.get('op')!r}")
                reply = {"ok": True, "data": handler(dict(msg.get("args") or {}))}
            except Exception as exc:  # noqa: BLE001 - the operator sees the error text
                reply = {"ok": False, "error": str(exc)}
            self._sock.send(_seal(self._key, reply))

    def close(self) -> None:
        self._sock.close(linger=0)


@dataclass(frozen=True, slots=True)
class RunningHost:
    """A host found in the runtime directory."""

    pid: int
    started: float
    cwd: str
    directory: Path


def find_hosts(base: Path) -> list[RunningHost]:
    """Running hosts of this user under ``base``, oldest first (stale directories are skipped)."""
    hosts = []
    for info in sorted(base.glob("h*/host.json")):
        try:
            meta = json.loads(info.read_text())
            pid = int(meta["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not psutil.pid_exists(pid) or not (info.parent / "ops").exists():
            continue
        hosts.append(RunningHost(pid, float(meta.get("started", 0)), str(meta.get("cwd", "")), info.parent))
    return sorted(hosts, key=lambda h: h.started)


class OpsClient:
    """Talks to one running host."""

    def __init__(self, host: RunningHost, timeout_s: float = 3.0) -> None:
        self.host = host
        self._timeout_ms = int(timeout_s * 1000)
        self._key = (host.directory / "ops.key").read_bytes()

    def call(self, op: str, **args: Any) -> Any:
        """One request; raises ``RuntimeError`` with the host's error or a timeout."""
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        sock = ctx.socket(zmq.REQ)
        sock.linger = 0
        try:
            sock.connect(f"ipc://{self.host.directory}/ops")
            sock.send(_seal(self._key, {"op": op, "args": args}))
            if not sock.poll(self._timeout_ms):
                raise RuntimeError(f"kithost pid {self.host.pid} did not answer within {self._timeout_ms} ms")
            reply = _open(self._key, sock.recv())
        finally:
            sock.close(linger=0)
        if reply is None:
            raise RuntimeError(f"kithost pid {self.host.pid} sent a bad reply")
        if not reply.get("ok"):
            raise RuntimeError(str(reply.get("error")))
        return reply.get("data")
