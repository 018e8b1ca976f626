"""One peer per socket (:class:`host.exthost.peers.PeerGate`): the gate's decisions, without processes.

The launch's process is this test process; "another process of its tree" is any other pid with the
process-tree check replaced (the real check, against real child processes, is
``tests/security/test_peer_sockets.py``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest
import zmq

from host.exthost import peers
from host.exthost.peers import UNAUTHENTICATED, PeerGate, socket_domain

LAUNCH = "kithost/victim/0123456789ab"
EVENTS = socket_domain(LAUNCH, "events")
ME = os.getpid()
CHILD = ME + 1


def address(pid: int) -> str:
    return f"localhost:0:0:{pid}"


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[PeerGate, Counter[str]]]:
    monkeypatch.setattr(peers, "_descends_from", lambda pid, root: pid in (ME, CHILD) and root == ME)
    zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    the_gate = PeerGate(zctx)
    refusals: Counter[str] = Counter()
    the_gate.admit(LAUNCH, "victim", refusals)
    the_gate.started(LAUNCH, ME)
    try:
        yield the_gate, refusals
    finally:
        the_gate.close()
        zctx.term()


def test_a_second_process_is_refused_and_counted_until_the_first_connection_is_reported_closed(
        gate: tuple[PeerGate, Counter[str]]) -> None:
    the_gate, refusals = gate
    assert the_gate.decide(EVENTS, address(ME))
    assert not the_gate.decide(EVENTS, address(CHILD)) and refusals[UNAUTHENTICATED] == 1
    assert not the_gate.released(EVENTS, seen=0)  # the monitor has not seen the admitted handshake yet
    assert not the_gate.decide(EVENTS, address(CHILD)) and refusals[UNAUTHENTICATED] == 2
    assert the_gate.released(EVENTS, seen=1)
    assert the_gate.decide(EVENTS, address(CHILD))  # now it holds the socket
    assert not the_gate.decide(EVENTS, address(ME)) and refusals[UNAUTHENTICATED] == 3


def test_the_holder_may_reconnect_before_the_report_and_the_slot_waits_for_every_admitted_connection(
        gate: tuple[PeerGate, Counter[str]]) -> None:
    the_gate, refusals = gate
    assert the_gate.decide(EVENTS, address(ME))
    assert the_gate.decide(EVENTS, address(ME))  # its reconnect: libzmq would never retry after a refusal
    assert refusals == Counter()
    assert not the_gate.released(EVENTS, seen=1)  # the old connection closed; the new one is not seen yet
    assert not the_gate.decide(EVENTS, address(CHILD))
    assert the_gate.released(EVENTS, seen=2)
    assert the_gate.decide(EVENTS, address(CHILD))


def test_each_socket_has_its_own_slot_and_strangers_never_get_one(gate: tuple[PeerGate, Counter[str]]) -> None:
    the_gate, refusals = gate
    assert the_gate.decide(EVENTS, address(ME))
    assert the_gate.decide(socket_domain(LAUNCH, "calls"), address(ME))
    assert the_gate.decide(socket_domain(LAUNCH, "control"), address(ME))
    assert not the_gate.decide(socket_domain(LAUNCH, "calls"), address(CHILD))
    assert not the_gate.decide(socket_domain(LAUNCH, "ghost"), address(ME + 2))  # not of its tree
    assert not the_gate.decide(socket_domain(LAUNCH, "ghost"), "no credentials")
    assert refusals[UNAUTHENTICATED] == 3


def test_the_launchs_whole_domain_has_the_tree_rule_alone(gate: tuple[PeerGate, Counter[str]]) -> None:
    the_gate, refusals = gate
    assert the_gate.decide(LAUNCH, address(ME)) and the_gate.decide(LAUNCH, address(CHILD))
    assert not the_gate.decide(LAUNCH, address(ME + 2)) and refusals[UNAUTHENTICATED] == 1


def test_a_forgotten_launch_admits_nobody_and_ignores_late_reports(gate: tuple[PeerGate, Counter[str]]) -> None:
    the_gate, _ = gate
    assert the_gate.decide(EVENTS, address(ME))
    the_gate.forget(LAUNCH)
    assert not the_gate.released(EVENTS, seen=1)
    assert not the_gate.decide(EVENTS, address(ME))


def test_a_context_finds_its_gate_until_it_is_closed() -> None:
    zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        the_gate = PeerGate(zctx)
        assert PeerGate.of(zctx) is the_gate
        the_gate.close()
        assert PeerGate.of(zctx) is None
    finally:
        zctx.term()
