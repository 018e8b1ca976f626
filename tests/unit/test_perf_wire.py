"""The wire's hot-path reply check (``ext_sdk.wire._plain_reply``) agrees with the reply schema, case by case.

The host skips the generic schema walk for a reply the fast check accepts, so
the fast check must never accept what the schema refuses; and a frame it
refuses is still opened by the schema (same error as before).
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from ext_sdk.schema import MAX_DEPTH, SchemaError
from ext_sdk.wire import MAC_OPENSSL_ABOVE, MESSAGES, FrameError, Mac, Opener, Sealer, _plain_reply


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def _schema_ok(msg: dict[str, Any]) -> bool:
    try:
        MESSAGES["reply"].check(msg)
    except SchemaError:
        return False
    return True


def _cases() -> list[dict[str, Any]]:
    base = {"k": "reply", "seq": 1, "id": 7}
    items: list[Any] = [
        {"ok": True}, {"ok": True, "result": None}, {"ok": False, "error": "boom"}, {"ok": True, "us": 12},
        {"ok": True, "us": None, "error": None}, {"ok": True, "result": {"block": True, "reason": "r"}},
        {"ok": True, "result": {"messages": [{"index": 0, "role": "user", "content": "x"}]}},
        {"ok": 1}, {"ok": True, "us": True}, {"ok": True, "us": 1.5}, {"ok": True, "error": 3},
        {"ok": True, "extra": 1}, {"result": None}, "not a map", None, {"ok": True, "result": b"bytes"},
        {"ok": True, "result": {1: "int key"}}, {"ok": True, "result": _nested(MAX_DEPTH - 1)},
        {"ok": True, "result": _nested(MAX_DEPTH)}, {"ok": True, "result": _nested(MAX_DEPTH + 1)},
        {"ok": True, "result": [1, 2.5, None, True, "s", {"a": [b"x"]}]},
    ]
    out: list[dict[str, Any]] = [dict(base, results=[item]) for item in items]
    out += [dict(base, results=[]), dict(base, results="x"), dict(base, id="7", results=[]),
            dict(base, id=True, results=[]), dict(base, results=[], extra=1), {"k": "reply", "seq": 1, "results": []}]
    rng = random.Random(10)
    for _ in range(300):
        out.append(dict(base, results=rng.sample(items, rng.randint(1, 4))))
    return out


@pytest.mark.parametrize("msg", _cases())
def test_the_fast_reply_check_accepts_exactly_what_the_schema_accepts(msg: dict[str, Any]) -> None:
    assert _plain_reply(msg) == _schema_ok(msg)


def test_a_reply_the_fast_check_refuses_still_gets_the_schema_error() -> None:
    key = os.urandom(32)
    frame = Sealer(key).seal("reply", {"id": 1, "results": [{"ok": True, "us": "slow"}]})
    with pytest.raises(FrameError) as info:
        Opener(key, frozenset({"reply"})).open(frame)
    assert info.value.reason == "schema" and "results[0].us" in str(info.value)


def test_a_deep_result_is_refused_as_too_deep() -> None:
    key = os.urandom(32)
    frame = Sealer(key).seal("reply", {"id": 1, "results": [{"ok": True, "result": _nested(MAX_DEPTH + 1)}]})
    with pytest.raises(FrameError) as info:
        Opener(key, frozenset({"reply"})).open(frame)
    assert info.value.reason == "too_deep"


@pytest.mark.parametrize("key_len", [1, 32, 64, 65, 200])
@pytest.mark.parametrize("size", [0, 1, 63, 64, 450, MAC_OPENSSL_ABOVE, MAC_OPENSSL_ABOVE + 1, 60_000])
@pytest.mark.parametrize("openssl", [False, True, None])
def test_the_mac_is_hmac_sha256_whichever_sha256_computes_it(key_len: int, size: int, openssl: bool | None) -> None:
    import hmac

    key, body = os.urandom(key_len), os.urandom(size)
    mac = Mac(key, openssl=openssl)
    assert mac.sign(body) == hmac.digest(key, body, "sha256")
    assert mac.sign(body) == hmac.digest(key, body, "sha256")  # the keyed state is copied, never consumed


def test_a_large_body_switches_a_builtin_mac_to_openssl_for_good() -> None:
    mac = Mac(b"k" * 32, openssl=False)
    mac.sign(b"small")
    assert mac._openssl is None
    mac.sign(b"x" * (MAC_OPENSSL_ABOVE + 1))
    assert mac._openssl is not None
