"""Frames: signing, sequence numbers, limits, schema — every rejection has a reason."""

from __future__ import annotations

import msgpack
import pytest

from ext_sdk.schema import MAX_DEPTH, Any, Field, Int, SchemaError, Str, Struct
from ext_sdk.wire import MESSAGES, FrameError, Opener, Sealer, choose_version

KEY = b"k" * 32
ACCEPT = frozenset({"reply"})


def reply(sealer: Sealer, **fields: object) -> bytes:
    return sealer.seal("reply", {"id": 1, "results": [{"ok": True, "result": None}], **fields})


def reason(opener: Opener, frame: bytes) -> str:
    with pytest.raises(FrameError) as info:
        opener.open(frame)
    return info.value.reason


def test_round_trip() -> None:
    msg = Opener(KEY, ACCEPT).open(reply(Sealer(KEY)))
    assert msg["k"] == "reply" and msg["seq"] == 1 and msg["results"] == [{"ok": True, "result": None}]


def test_forged_unsigned_and_wrong_key_frames_are_rejected() -> None:
    frame = reply(Sealer(KEY))
    opener = Opener(KEY, ACCEPT)
    assert reason(opener, reply(Sealer(b"x" * 32))) == "bad_mac"
    assert reason(opener, frame[:32] + frame[33:] + b"\x00") == "bad_mac"
    assert reason(opener, b"short") == "short"
    assert reason(opener, b"\x00" * 32 + msgpack.packb({"k": "reply"})) == "bad_mac"


def test_replayed_and_out_of_order_frames_are_rejected() -> None:
    sealer, opener = Sealer(KEY), Opener(KEY, ACCEPT)
    first, second = reply(sealer), reply(sealer)
    opener.open(second)
    assert reason(opener, second) == "replay"
    assert reason(opener, first) == "replay"
    opener.open(reply(sealer))  # a later frame is still fine


def test_size_depth_and_garbage_limits() -> None:
    sealer = Sealer(KEY)
    assert reason(Opener(KEY, ACCEPT, max_frame=100), reply(sealer, pad="x" * 200)) == "too_large"
    nested: object = None
    for _ in range(MAX_DEPTH + 5):
        nested = [nested]
    deep = sealer.seal("reply", {"id": 1, "results": [{"ok": True, "result": {"x": nested}}]})
    assert reason(Opener(KEY, ACCEPT), deep) == "too_deep"
    assert reason(Opener(KEY, ACCEPT), sealer.seal_raw(b"\x91" * 5000 + b"\xc0")) == "too_deep"
    assert reason(Opener(KEY, ACCEPT), sealer.seal_raw(b"\xc1\xc1")) == "decode"
    assert reason(Opener(KEY, ACCEPT), sealer.seal_raw(msgpack.packb([1, 2]))) == "not_a_map"
    assert reason(Opener(KEY, ACCEPT), sealer.seal_raw(msgpack.packb({1: 2}))) == "decode"


def test_kind_and_schema_checks() -> None:
    sealer = Sealer(KEY)
    assert reason(Opener(KEY, ACCEPT), sealer.seal("ping", {"id": 1})) == "unknown_kind"
    assert reason(Opener(KEY, ACCEPT), sealer.seal("reply", {"id": "1", "results": []})) == "schema"
    assert reason(Opener(KEY, ACCEPT), sealer.seal("reply", {"id": 1, "results": [], "extra": 1})) == "schema"
    assert reason(Opener(KEY, ACCEPT), sealer.seal("reply", {"id": 1})) == "schema"


def test_every_kind_has_a_schema_with_the_envelope_fields() -> None:
    for kind, struct in MESSAGES.items():
        assert {"k", "seq"} <= set(struct.fields), kind


def test_version_negotiation() -> None:
    assert choose_version([1, 2], (1,)) == 1
    assert choose_version([2, 3], (1, 2)) == 2
    assert choose_version([7], (1,)) is None


def test_schema_errors_name_the_path() -> None:
    shape = Struct(a=Int, b=Field(Str, required=False), c=Field(Any, required=False))
    shape.check({"a": 1, "b": None})
    with pytest.raises(SchemaError, match=r"x\.a: expected int, got bool"):
        shape.check({"a": True}, "x")
    with pytest.raises(SchemaError, match="unknown field 'z'"):
        shape.check({"a": 1, "z": 2})
    with pytest.raises(SchemaError, match="missing field 'a'"):
        shape.check({})
    with pytest.raises(SchemaError, match="not a safe type"):
        shape.check({"a": 1, "c": {1, 2}})
