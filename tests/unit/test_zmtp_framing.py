"""``ext_sdk.zmtp.correlated_body``: the one-message fast path of both ends of the events channel takes exactly
``[4-byte id, empty, body]`` and nothing else (everything else goes through the frame-by-frame walk)."""

from __future__ import annotations

import pytest

from ext_sdk.zmtp import COMMAND, LONG, MORE, correlated_body, frame_header

ENVELOPE = frame_header(4, MORE) + b"\x00\x00\x00\x07" + frame_header(0, MORE)


@pytest.mark.parametrize("body", [b"", b"x", b"y" * 255, b"z" * 256, b"w" * 70_000])
def test_one_whole_message_gives_where_its_body_starts(body: bytes) -> None:
    data = ENVELOPE + frame_header(len(body), 0) + body
    start = correlated_body(data, 1 << 20)
    assert start and data[start:] == body and data[2:6] == b"\x00\x00\x00\x07"


@pytest.mark.parametrize(("data", "why"), [
    (ENVELOPE + frame_header(3, 0) + b"ab", "part of the body"),
    (ENVELOPE + frame_header(3, 0) + b"abc" + b"\x01", "the start of the next message too"),
    (ENVELOPE + frame_header(3, MORE) + b"abc", "a body of more than one frame"),
    (ENVELOPE + frame_header(3, COMMAND) + b"abc", "a command"),
    (frame_header(0, MORE) + frame_header(3, 0) + b"abc", "no routing id (a plain REQ)"),
    (frame_header(5, MORE) + b"\x00" * 5 + frame_header(0, MORE) + frame_header(1, 0) + b"a", "a 5-byte id"),
    (ENVELOPE + bytes((LONG,)) + (3).to_bytes(8, "big")[:7], "a LONG header cut short"),
    (ENVELOPE[:9], "the envelope alone, cut short"),
])
def test_anything_else_is_left_to_the_frame_walk(data: bytes, why: str) -> None:
    assert correlated_body(data, 1 << 20) == 0, why


def test_a_body_over_the_limit_is_left_to_the_frame_walk_which_cuts_it() -> None:
    body = b"x" * 300
    data = ENVELOPE + frame_header(len(body), 0) + body
    assert correlated_body(data, 299) == 0 and correlated_body(data, 300) > 0
