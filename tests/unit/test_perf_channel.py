"""The host channel's reply matching: a reply to another request is refused, counted, and its error names
both ids (the request id is read before it is cleared)."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from ext_sdk.wire import Opener, Sealer
from host.exthost.channel import EVENT_KINDS, Channel, ChannelFailure


class _Events:
    """Stands in for the events link: hands out one frame."""

    version = 0

    def __init__(self, frame: bytes) -> None:
        self.frame = frame

    def service(self, item: object, flags: int) -> bytes:
        return self.frame

    def poll_items(self) -> list[tuple[int, int]]:
        return []

    def forget_request(self) -> None:
        pass


def _channel(key: bytes, in_flight: int | None, frame: bytes) -> Channel:
    channel = Channel.__new__(Channel)  # no sockets, no launch: only what service() reads for a reply
    channel.events = _Events(frame)  # type: ignore[assignment]
    channel.calls = object()  # type: ignore[assignment]
    channel._events_in = Opener(key, EVENT_KINDS)
    channel.frame_errors = Counter()
    channel.in_flight = in_flight
    channel.received_ns = 0
    return channel


def test_a_reply_to_another_request_names_both_ids() -> None:
    key = os.urandom(32)
    frame = Sealer(key).seal("reply", {"id": 90, "results": [{"ok": True}]})
    channel = _channel(key, 91, frame)
    with pytest.raises(ChannelFailure) as info:
        channel.service(0, 1, lambda *a: None)
    assert info.value.kind == "bad_frame"
    assert info.value.detail == "reply id 90 does not match request 91"
    assert channel.in_flight is None and channel.frame_errors["wrong_id"] == 1


def test_the_awaited_reply_is_returned_and_timed() -> None:
    key = os.urandom(32)
    frame = Sealer(key).seal("reply", {"id": 7, "results": [{"ok": True, "us": 3}]})
    channel = _channel(key, 7, frame)
    reply = channel.service(0, 1, lambda *a: None)
    assert reply is not None and reply["results"] == [{"ok": True, "us": 3}]
    assert channel.in_flight is None and channel.received_ns > 0


class _Clock:
    """A fake ``time`` module for the channel: monotonic time moves only when the channel waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[tuple[str, float]] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(("sleep", seconds * 1000))
        self.now += seconds


@pytest.mark.parametrize(("timeout_s", "waits"), [
    (0.0504, ["poll", "sleep", "poll"]),
    (0.0509, ["poll", "sleep", "poll", "sleep", "poll"]),
])
def test_a_request_never_waits_past_its_deadline(monkeypatch: pytest.MonkeyPatch, timeout_s: float,
                                                 waits: list[str]) -> None:
    import host.exthost.channel as channel_module

    clock = _Clock()
    monkeypatch.setattr(channel_module, "time", clock)

    class _Poller:
        def poll(self, timeout_ms: int) -> list[object]:
            clock.waits.append(("poll", timeout_ms))
            clock.now += timeout_ms / 1000 + 0.0003  # the poll returns a little late, as real ones do
            return []

    channel = _channel(os.urandom(32), None, b"")
    channel._poller = _Poller()  # type: ignore[assignment]
    channel._polled = 0
    monkeypatch.setattr(Channel, "send_request", lambda self, kind, fields, timeout_s: 1)
    with pytest.raises(ChannelFailure) as info:
        channel.request("event", {}, timeout_s, lambda *a: None)
    assert info.value.kind == "timeout"
    # whole milliseconds by poll, never rounded up past the deadline; the last fraction in naps of <= 0.2 ms,
    # each followed by one look
    assert [kind for kind, _ in clock.waits] == waits
    assert clock.waits[0] == ("poll", 50) and clock.waits[-1] == ("poll", 0)
    assert all(ms <= 0.2 + 1e-9 for kind, ms in clock.waits if kind == "sleep")
    assert clock.now - 1000.0 <= timeout_s + 0.0003 + 1e-9
