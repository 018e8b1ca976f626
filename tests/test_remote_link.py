"""The worker link, the keys CLI, the ``[remote."NAME"]`` config and the remote grant, in one process.

The worker here is a :class:`~host.remote.worker.Worker` served from a thread of the test on
``tcp://127.0.0.1`` (loopback only); the end-to-end tests with a worker process are in
``test_remote_worker.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from conftest import EXTENSIONS

from host.cli import main
from host.config import HostConfig, Sandbox, TrustMode, load_config
from host.errors import ConfigError
from host.exthost.manifest import load_manifest
from host.exthost.trust import decide_remote
from host.remote.keys import allow_list, load_keypair, new_keypair
from host.remote.link import LinkClient, LinkDown, LinkError
from host.remote.worker import Worker, WorkerError

WAIT_S = 5.0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Worker, Path]]:
    keys = tmp_path / "keys"
    for name in ("host", "worker", "stranger"):
        new_keypair(keys, name)
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    config = HostConfig(sandbox=Sandbox(trust_file=tmp_path / "trust.json", allow_weak=True))
    worker = Worker(config, load_keypair(keys / "worker.key_secret"), allow_list([str(keys / "host.key")]),
                    "tcp://127.0.0.1:0", [load_manifest(EXTENSIONS / "permission_gate")], runtime)
    thread = threading.Thread(target=worker.serve, kwargs={"tick_s": 0.02}, daemon=True)
    thread.start()
    yield worker, keys
    worker.stop()
    thread.join(10)
    worker.close()


def _client(zctx: zmq.Context[zmq.Socket[bytes]], worker: Worker, keys: Path, who: str = "host") -> LinkClient:
    return LinkClient(zctx, worker.address, load_keypair(keys / f"{who}.key_secret"), worker.keys.public,
                      heartbeat_ms=200, backoff_initial_ms=50, backoff_max_ms=500)


def test_the_link_describes_the_offer_and_refuses_bad_requests_in_one_line(served: tuple[Worker, Path]) -> None:
    worker, keys = served
    assert worker.address.startswith("tcp://127.0.0.1:")
    zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    link = _client(zctx, worker, keys)
    try:
        offer = link.request("describe", WAIT_S)
        gate = offer["extensions"]["permission-gate"]
        assert gate["events"] == ["tool_call"] and gate["permissions"] == ["conversation"]
        assert offer["sandbox"] in ("strong", "reduced", "weak")  # the worker's own probe, as `ext sandbox` shows
        with pytest.raises(LinkError, match="does not offer 'nope' \\(it offers: permission-gate\\)"):
            link.request("launch", WAIT_S, name="nope")
        with pytest.raises(LinkError, match="unknown link request 'explode'"):
            link.request("explode", WAIT_S)
        with pytest.raises(LinkError, match="no launch 'x'"):
            link.request("stop", WAIT_S, launch="x", kill=True)
        assert link.request("status", WAIT_S, mine=[])["launches"] == {}
        assert link.last_rtt is not None and link.last_rtt < WAIT_S
    finally:
        link.close()
        zctx.term()


def test_a_launch_runs_there_and_stops_on_request(served: tuple[Worker, Path]) -> None:
    worker, keys = served
    zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    link = _client(zctx, worker, keys)
    try:
        reply = link.request("launch", WAIT_S * 2, name="permission-gate")
        ends = reply["endpoints"]
        assert all(ends[k].startswith("tcp://127.0.0.1:") for k in ("events", "calls", "control"))
        assert len(reply["secret"]) == 32 and reply["pid"] > 0
        status = link.request("status", WAIT_S, mine=[reply["launch"]])["launches"][reply["launch"]]
        assert status["alive"] and status["exit"] is None
        link.request("stop", WAIT_S * 2, launch=reply["launch"], kill=True)
        status = link.request("status", WAIT_S, mine=[])["launches"][reply["launch"]]
        assert not status["alive"] and status["exit"] == -9
    finally:
        link.close()
        zctx.term()


def test_a_stranger_gets_no_answer_and_is_counted(served: tuple[Worker, Path]) -> None:
    worker, keys = served
    zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    link = _client(zctx, worker, keys, who="stranger")
    try:
        with pytest.raises(LinkDown, match="not connected"):
            link.request("describe", 1.0)
        assert sum(worker.refusals.values()) >= 1
    finally:
        link.close()
        zctx.term()


def test_a_worker_refuses_a_bad_setup_in_words(tmp_path: Path) -> None:
    new_keypair(tmp_path / "k", "w")
    pair = load_keypair(tmp_path / "k" / "w.key_secret")
    gate = load_manifest(EXTENSIONS / "permission_gate")
    with pytest.raises(WorkerError, match="no host key is allowed"):
        Worker(HostConfig(), pair, frozenset(), "tcp://127.0.0.1:0", [gate], tmp_path)
    with pytest.raises(WorkerError, match="expected tcp://HOST:PORT"):
        Worker(HostConfig(), pair, frozenset({pair.public}), "ipc:///tmp/x", [gate], tmp_path)


def test_keys_new_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "box2", "--dir", str(tmp_path / "keys")]) == 0
    out = capsys.readouterr().out
    public = load_keypair(tmp_path / "keys" / "box2.key_secret").public.decode()
    assert public in out and "0600" in out
    assert main(["keys", "show", str(tmp_path / "keys" / "box2.key")]) == 0
    assert capsys.readouterr().out.strip() == public
    assert main(["keys", "new", "box2", "--dir", str(tmp_path / "keys")]) == 1
    assert "already exists" in capsys.readouterr().err


def test_remote_config_is_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[remote."gate"]\nworker = "tcp://10.0.0.5:7600"\nkey = "k.key"\nhost_key = "~/h.key_secret"\n')
    remote = load_config(good).remote["gate"]
    assert remote.worker == "tcp://10.0.0.5:7600" and remote.extension is None
    assert remote.host_key == Path("~/h.key_secret").expanduser()
    bad = tmp_path / "bad.toml"
    bad.write_text('[remote."gate"]\nworker = "10.0.0.5"\nkey = "k"\nhost_key = "h"\n')
    with pytest.raises(ConfigError, match="must be tcp://HOST:PORT"):
        load_config(bad)


def test_a_remote_extension_gets_host_calls_only_from_the_config() -> None:
    gate = load_manifest(EXTENSIONS / "permission_gate")  # asks for "conversation"
    refused = decide_remote(gate, HostConfig())
    assert refused.grant is None and '[permissions] "permission-gate"' in refused.reason
    granted = decide_remote(gate, HostConfig(permissions={"permission-gate": ("conversation",)}))
    assert granted.grant is not None and "conversation" in granted.grant.permissions
    assert granted.grant.source == "config" and granted.grant.access.empty
    trusting = decide_remote(gate, HostConfig(sandbox=Sandbox(trust=TrustMode.ALL)))
    assert trusting.grant is not None and trusting.grant.source == "trust-all"

