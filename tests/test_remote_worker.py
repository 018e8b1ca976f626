"""Remote extension workers end to end (issue 14): a real ``kithost worker`` process, a real host.

The worker runs in a network namespace of its own joined by a veth pair when the test runs as root with
``ip`` available, else on loopback (network namespaces need root); each test prints which. Nothing is sent
anywhere but loopback or that private veth pair. The worker starts the bundled permission gate confined as a
host would; the host reaches it over TCP + CURVE through the worker's relay:

* an agent turn's ``tool_call`` gate runs on the worker and blocks the dangerous command;
* ``kill -9`` of the worker's extension is noticed (the worker's status, the link heartbeat) and the host's
  restart policy launches it again;
* a worker killed with ``SIGKILL`` is detected within the hang limit, the fail-closed gate blocks meanwhile,
  and a worker started again on the same address restores service (the host reconnects with backoff);
* a host that goes away without stopping its extension (its link falls silent) leaves nothing running: the
  worker kills the launch nobody names any more, and a new host finds the worker and is served;
* a host whose key is not on the worker's allow-list gets nothing and the worker counts the refusal.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from agent.harness import checked_host_config, open_rig
from conftest import tool_call
from remote_rig import EXTENSIONS, Keys, WorkerNet, WorkerProcess, make_keys, remote_config, wait_for, worker_net

from host import ExtensionHost, HostConfig
from host.config import Deadlines
from host.exthost.host import runtime_base
from host.exthost.supervisor import ExtState
from host.status_view import show_status

GATE = "permission-gate"


@pytest.fixture
def litellm_ready() -> Iterator[Any]:
    """litellm imported (offline env) with the scripted provider registered, as in tests/agent."""
    from host.agent import scripted
    from host.agent.llm.litellm_loader import litellm_module

    module = litellm_module()
    scripted.ensure_registered()
    yield module
    scripted.reset()


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
def net(request: pytest.FixtureRequest) -> Iterator[WorkerNet]:
    found = worker_net(str(abs(hash(request.node.name)) % 1000))
    print(f"worker network: {found.kind} ({found.address})")
    yield found
    found.close()


@pytest.fixture
def worker(tmp_path: Path, keys: Keys, net: WorkerNet) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(tmp_path, keys, net, [EXTENSIONS / "permission_gate"])
    proc.start()
    yield proc
    proc.close()


def _gate(host: ExtensionHost) -> Any:
    ext = next((e for e in host.extensions() if e.name == GATE), None)
    assert ext is not None, f"{GATE} is not loaded: {host.load_failures}"
    return ext


def test_an_agent_turn_is_gated_by_the_extension_on_the_worker(tmp_path: Path, worker: WorkerProcess,
                                                               litellm_ready: Any) -> None:
    config = remote_config(checked_host_config(), worker)
    rig = open_rig(tmp_path, [[
        {"tool_calls": [{"name": "bash", "arguments": {"command": "echo fine > allowed.txt"}},
                        {"name": "bash", "arguments": {"command": "rm -rf /"}}]},
        {"expect": {"last_role": "tool", "last_contains": "permission-gate blocked this command"}, "text": "ok"},
    ]], [], host_config=config)
    try:
        result = rig.run("make files")
        assert result.stop_reason == "completed", result.error
        assert (tmp_path / "work" / "allowed.txt").read_text() == "fine\n"
        blocked = rig.payloads("tool_result")[1]
        assert blocked["is_error"] and "recursive delete" in blocked["content"]
        assert rig.state(GATE, "blocked") == 1  # its state is kept by the host, written over the relay
        info = _gate(rig.session.host).info()
        assert info["state"] == "ready" and info["remote"]["worker"] == worker.address
        assert info["remote"]["reachable"] and info["remote"]["link_rtt_ms"] is not None
        assert info["stats"]["handled"] >= 1 and info["frame_errors"] == {}
        assert psutil.Process(worker.proc.pid if worker.proc else 0).children(recursive=True)  # it runs there
    finally:
        rig.session.close()


def test_a_killed_remote_extension_is_restarted(new_host: Callable[..., ExtensionHost], worker: WorkerProcess,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    host = new_host(remote_config(HostConfig(), worker))
    report = host.load_remotes()
    assert not report.failed, report.failed
    ext = _gate(host)
    first = ext.process.pid
    assert host.emit("tool_call", tool_call("rm -rf /")).stopped
    os.kill(first, signal.SIGKILL)  # the worker's child: same machine (pid namespaces aside, it is its pid)
    wait_for(lambda: ext.restarts == 1 and ext.state is ExtState.READY, 15, "restart after kill -9")
    assert ext.process.pid != first and "SIGKILL" in ext.last_exit
    assert host.emit("tool_call", tool_call("rm -rf /")).stopped
    assert not host.emit("tool_call", tool_call("ls")).stopped
    capsys.readouterr()
    assert show_status(GATE, False, base=runtime_base(), pid=os.getpid()) == 0  # `kithost ext status`
    table = capsys.readouterr().out
    assert f"on {worker.address}, link rtt" in table and "ready" in table


def test_a_killed_worker_is_detected_and_its_return_restores_service(new_host: Callable[..., ExtensionHost],
                                                                     worker: WorkerProcess) -> None:
    hang_s = 1.5
    host = new_host(remote_config(HostConfig(), worker, hang_ms=int(hang_s * 1000)))
    assert not host.load_remotes().failed
    ext = _gate(host)
    assert host.emit("tool_call", tool_call("rm -rf /")).stopped
    worker.kill()
    took = wait_for(lambda: ext.state is not ExtState.READY, hang_s + 3, "the lost worker noticed")
    assert took <= hang_s + 1.5, f"noticed after {took:.1f} s (hang limit {hang_s} s)"
    out = host.emit("tool_call", tool_call("ls"))  # fail-closed gate: nothing passes while it is away
    assert out.stopped and out.stop is not None and out.stop.failed
    wait_for(lambda: ext.state is ExtState.RESTARTING and "waiting for worker" in ext.transitions[-1].reason,
             10, "waiting for the worker")
    worker.start()  # same address, same keys
    wait_for(lambda: ext.state is ExtState.READY, 20, "service back after the worker returned")
    assert host.emit("tool_call", tool_call("rm -rf /")).stopped
    assert not host.emit("tool_call", tool_call("ls")).stopped


def test_a_host_with_an_unknown_key_is_refused_and_counted(new_host: Callable[..., ExtensionHost],
                                                           worker: WorkerProcess) -> None:
    host = new_host(remote_config(HostConfig(deadlines=Deadlines(start_ms=2000)), worker, host_key="stranger"))
    report = host.load_remotes()
    assert [name for name, _ in report.failed] == [GATE]
    assert "refuses this host's key" in str(report.failed[0][1])
    wait_for(lambda: any("refused" in line for line in worker.lines), 10, "the worker's refusal count")
    assert not psutil.Process(worker.proc.pid if worker.proc else 0).children()  # nothing was launched


def test_a_vanished_host_leaves_nothing_running_and_a_new_host_is_served(new_host: Callable[..., ExtensionHost],
                                                                         worker: WorkerProcess) -> None:
    first = new_host(remote_config(HostConfig(), worker))
    assert not first.load_remotes().failed
    ext = _gate(first)
    pid = ext.process.pid
    ext.remote.close()  # the link falls silent, as when the host is killed: no heartbeat names the launch
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 6,
             "the worker killing the launch of a host that went away")
    wait_for(lambda: any("its host went away" in line for line in worker.lines), 5, "the worker saying why")
    second = new_host(remote_config(HostConfig(), worker))  # a restarted host finds its worker from its config
    assert not second.load_remotes().failed
    assert second.emit("tool_call", tool_call("rm -rf /")).stopped
