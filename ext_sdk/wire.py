"""The kithost wire protocol: frames, envelopes, message kinds. Both ends import this.

Frame layout (one ZeroMQ message part, every socket, both directions)::

    +-------------------------------+------------------------------------+
    | MAC: 32 bytes                 | body: msgpack map (the envelope)   |
    | HMAC-SHA256(secret, body)     | {"k": kind, "seq": n, ...fields}   |
    +-------------------------------+------------------------------------+

* ``secret`` is a per-launch random key the host hands the extension outside
  argv (a 0600 file named by ``KITHOST_SECRET_FILE``, deleted after the
  handshake).
* ``seq`` is a per-socket, per-direction counter starting at 1. A receiver
  accepts a frame only if its ``seq`` is greater than the last one it
  accepted on that socket: replayed and out-of-order frames are dropped.
  Gaps are fine (a reply dropped after a deadline consumes a number).
* Limits on every inbound frame: at most ``max_frame`` bytes; msgpack strings,
  binaries, arrays and maps bounded; nesting at most :data:`MAX_DEPTH`; map
  keys strings; then the envelope is checked against its kind's schema
  (:data:`MESSAGES`).

Channels (ipc sockets the host binds in a private 0700 directory; the
extension connects):

=========  ==================  =============================================
channel    sockets             kinds (request → reply)
=========  ==================  =============================================
events     host REQ → ext REP  ``event`` | ``batch`` | ``invoke`` → ``reply``
calls      ext REQ → host REP  ``hello`` → ``welcome`` | ``reject``;
                               ``call`` → ``answer``
control    host REQ → ext REP  ``ping`` → ``pong``; ``shutdown`` → ``bye``
=========  ==================  =============================================

Every request carries an ``id``; its reply echoes it and the receiver drops a
reply whose ``id`` is not the one it waits for. :func:`open_frame` raises
:class:`FrameError` with a short machine ``reason`` (one of
:data:`FRAME_ERRORS`), which the host counts per extension.
"""

from __future__ import annotations

import functools
import sys
from _operator import _compare_digest  # what hmac.compare_digest is, without importing OpenSSL
from collections.abc import Callable

import msgpack

from .events import Policy
from .schema import MAX_DEPTH, Any, Bool, Enum, Field, Int, List, Map, SchemaError, Str, Struct

TYPE_CHECKING = False  # not typing's: ``import typing`` is ~3 ms of an extension's start-up
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "CONTROL_FRAME",
    "DEFAULT_MAX_FRAME",
    "ENV_CONTROL",
    "ENV_CALLS",
    "ENV_EVENTS",
    "ENV_NAME",
    "ENV_PERMISSIONS",
    "ENV_SECRET_FILE",
    "ENV_VERSION",
    "ENV_VERSIONS",
    "EXIT_BAD_EXTENSION",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "FRAME_ERRORS",
    "MAC_OPENSSL_ABOVE",
    "MAC_SIZE",
    "MESSAGES",
    "PROTOCOL_VERSIONS",
    "FrameError",
    "Mac",
    "Opener",
    "Sealer",
    "choose_version",
]

#: Protocol versions this implementation speaks, oldest first.
PROTOCOL_VERSIONS: Final = (1,)
#: Size of the MAC prefix of every frame.
MAC_SIZE: Final = 32
#: Default maximum frame size (bytes) accepted by either side.
DEFAULT_MAX_FRAME: Final = 8 * 1024 * 1024
#: Largest control-channel frame body, either way (pings, pongs, shutdown, bye are tiny).
CONTROL_FRAME: Final = 64 * 1024

#: Environment variables the host sets for an extension process.
ENV_EVENTS: Final = "KITHOST_EVENTS"
ENV_CALLS: Final = "KITHOST_CALLS"
ENV_CONTROL: Final = "KITHOST_CONTROL"
ENV_SECRET_FILE: Final = "KITHOST_SECRET_FILE"
ENV_VERSIONS: Final = "KITHOST_PROTOCOL_VERSIONS"
ENV_NAME: Final = "KITHOST_EXTENSION"
#: The manifest's ``version``, and its ``permissions`` comma-separated (an SDK need not read the manifest).
ENV_VERSION: Final = "KITHOST_EXTENSION_VERSION"
ENV_PERMISSIONS: Final = "KITHOST_EXTENSION_PERMISSIONS"

#: Exit status: started without a host, or bad command line.
EXIT_USAGE: Final = 2
#: Exit status: the extension's own code or declaration is broken (do not retry).
EXIT_BAD_EXTENSION: Final = 3
#: Exit status: the host refused the handshake, e.g. no common version (do not retry).
EXIT_REJECTED: Final = 4

#: Every reason :class:`FrameError` can carry.
FRAME_ERRORS: Final = (
    "too_large",
    "short",
    "bad_mac",
    "decode",
    "too_deep",
    "not_a_map",
    "unknown_kind",
    "replay",
    "schema",
)


class FrameError(ValueError):
    """An inbound frame was rejected. ``reason`` is one of :data:`FRAME_ERRORS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        #: Machine-readable reason, one of :data:`FRAME_ERRORS`.
        self.reason = reason
        #: Human detail.
        self.detail = detail


# --------------------------------------------------------------------------- message kinds

_SUBSCRIPTION = Struct(
    "One handler an extension registers.",
    event=Field(Str, "Event name, or 'custom:<name>'."),
    priority=Field(Int, "Lower runs first; default 50."),
    deadline_ms=Field(Int, "Requested deadline (clamped to the operator's bounds).", required=False),
    policy=Field(Enum(*Policy), "Failure policy; default derived from the event.", required=False),
)
_TOOL_DECL = Struct(
    "A tool the extension provides to the model.",
    name=Str,
    description=Str,
    parameters=Field(Map(Any), "JSON Schema of the arguments."),
)
_COMMAND_DECL = Struct("A slash command the extension provides.", name=Str, description=Str)
_RESULT_ITEM = Struct(
    "Outcome of one handler (or one notify item).",
    ok=Bool,
    result=Field(Any, "The handler's result map, or null for 'no result'.", required=False),
    error=Field(Str, "Why the handler failed (ok = false).", required=False),
    us=Field(Int, "Optional: microseconds the extension spent on this item (its handlers and the result check), "
                  "for the host's latency split (host / transit / extension); omitted by SDKs that do not "
                  "measure it.", required=False),
)
_EVENT_ITEM = Struct(
    "One event to deliver.",
    event=Str,
    handler=Field(Int, "Index of the subscription to run; null runs every subscription for the event.",
                  required=False),
    data=Map(Any),
)
_HEAD = {"k": Str, "seq": Int}
_ID = Field(Int, "Request id; a reply echoes it.")

#: Schema of every message kind, by kind. The envelope fields ``k`` and
#: ``seq`` are part of each.
MESSAGES: Final[dict[str, Struct]] = {
    "hello": Struct(
        "First message of an extension (calls channel): who it is and what it wants.",
        **_HEAD,
        versions=Field(List(Int), "Protocol versions the extension speaks."),
        name=Str,
        version=Str,
        sdk=Field(Str, "SDK name/version, e.g. 'python/0.1.0'."),
        subscriptions=List(_SUBSCRIPTION),
        tools=List(_TOOL_DECL),
        commands=List(_COMMAND_DECL),
        permissions=Field(List(Str), "Permissions asked for."),
    ),
    "welcome": Struct(
        "The host accepts the handshake.",
        **_HEAD,
        version=Field(Int, "Chosen protocol version."),
        granted=Field(List(Str), "Permissions granted."),
        deadlines_ms=Field(List(Int), "Effective deadline of each subscription, in order."),
    ),
    "reject": Struct("The host refuses the handshake.", **_HEAD, reason=Str),
    "call": Struct(
        "A host call from a handler (ctx.*).",
        **_HEAD,
        id=_ID,
        event_id=Field(Int, "Id of the events-channel request being handled.", required=False),
        method=Str,
        args=Map(Any),
    ),
    "answer": Struct(
        "The host's answer to a call.",
        **_HEAD,
        id=_ID,
        ok=Bool,
        value=Field(Any, required=False),
        error=Field(Str, required=False),
    ),
    "event": Struct("One event for one handler (or all, for notify).", **_HEAD, id=_ID,
                    event=Str, handler=Field(Int, required=False), data=Map(Any)),
    "batch": Struct(
        "Several events in order, e.g. a notify backlog followed by a gate event.",
        **_HEAD,
        id=_ID,
        events=List(_EVENT_ITEM),
        dropped=Field(Int, "Notify events dropped for this extension since the last batch (queue full)."),
    ),
    "invoke": Struct(
        "Run an extension-provided tool or command.",
        **_HEAD,
        id=_ID,
        target=Enum("tool", "command"),
        name=Str,
        args=Any,
    ),
    "reply": Struct("Results, one per event of the request, in order.", **_HEAD, id=_ID,
                    results=List(_RESULT_ITEM)),
    "ping": Struct("Heartbeat request (control channel).", **_HEAD, id=_ID),
    "pong": Struct(
        "Heartbeat reply, sent from a thread independent of handlers.",
        **_HEAD,
        id=_ID,
        busy=Field(Bool, "A handler is running."),
        current=Field(Str, "Event being handled, if busy.", required=False),
        busy_ms=Field(Int, "How long the current handler has run."),
    ),
    "shutdown": Struct("Please exit (control channel).", **_HEAD, id=_ID, reason=Str),
    "bye": Struct("Acknowledges shutdown; the process exits next.", **_HEAD, id=_ID),
}


def choose_version(offered: list[int], supported: tuple[int, ...] = PROTOCOL_VERSIONS) -> int | None:
    """Highest version both sides speak, or ``None``."""
    common = set(offered).intersection(supported)
    return max(common) if common else None


# --------------------------------------------------------------------------- sealing / opening

_PACK = msgpack.Packer(use_bin_type=True).pack
_SCALARS: Final = (str, int, float, bool)
_REPLY_KEYS: Final = frozenset({"k", "seq", "id", "results"})
_ITEM_KEYS: Final = frozenset({"ok", "result", "error", "us"})


try:
    from _sha256 import sha256 as _builtin_sha256  # type: ignore[import-not-found]  # CPython's own: no OpenSSL
except ImportError:  # pragma: no cover - a build without the built-in hashes
    _builtin_sha256 = None

if TYPE_CHECKING:
    import hmac

#: HMAC's inner and outer pads as byte-translation tables: ``key.translate(_IPAD)`` is ``key XOR 0x36..``.
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))

#: Frame bodies above this many bytes are signed with OpenSSL (about 6x faster there) even in a process
#: that has not loaded it yet; see :class:`Mac`.
MAC_OPENSSL_ABOVE: Final = 4096


def _openssl_keyed(key: bytes) -> hmac.HMAC:
    import hashlib
    import hmac

    return hmac.new(key, digestmod=hashlib.sha256)


class Mac:
    """HMAC-SHA256 under one key, set up once: each frame's MAC starts from a copy of the keyed state.

    The same MAC as ``hmac.digest(key, body, "sha256")``, about three times
    cheaper per frame (no key schedule and no digest lookup per call). Which
    SHA-256 computes it: OpenSSL's when the process has already loaded it (the
    host always has) or for a body over :data:`MAC_OPENSSL_ABOVE` bytes;
    otherwise CPython's built-in one. Loading OpenSSL costs an extension
    process about 3.5 MiB of its own memory, so one that only ever sees small
    frames never loads it. ``openssl`` forces a choice (tests).
    """

    __slots__ = ("_inner", "_key", "_openssl", "_outer")

    def __init__(self, key: bytes, openssl: bool | None = None) -> None:
        self._key = key
        if openssl is None:
            openssl = _builtin_sha256 is None or "_hashlib" in sys.modules
        self._openssl: hmac.HMAC | None = _openssl_keyed(key) if openssl else None
        if _builtin_sha256 is not None:
            block = (key if len(key) <= 64 else _builtin_sha256(key).digest()).ljust(64, b"\0")
            self._inner = _builtin_sha256(block.translate(_IPAD))
            self._outer = _builtin_sha256(block.translate(_OPAD))

    def sign(self, body: bytes) -> bytes:
        """The 32-byte HMAC-SHA256 of ``body``."""
        keyed = self._openssl
        if keyed is None and len(body) > MAC_OPENSSL_ABOVE:
            keyed = self._openssl = _openssl_keyed(self._key)
        if keyed is not None:
            mac = keyed.copy()
            mac.update(body)
            return mac.digest()
        inner = self._inner.copy()
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()  # type: ignore[no-any-return]


def _safe(value: object, depth: int = 0) -> bool:
    """Whether ``value`` passes :func:`ext_sdk.schema.check_safe` (the same rule, without building error paths:
    the hot path; a ``False`` is re-checked by the schema for its message)."""
    if value is None or type(value) in _SCALARS:
        return True
    if depth >= MAX_DEPTH:
        return False
    if type(value) is dict:
        for key, item in value.items():  # type: ignore[var-annotated]
            if type(key) is not str or not (item is None or type(item) in _SCALARS or _safe(item, depth + 1)):
                return False
        return True
    if type(value) is list:
        for item in value:  # type: ignore[var-annotated]
            if not (item is None or type(item) in _SCALARS or _safe(item, depth + 1)):
                return False
        return True
    return False


def _plain_reply(msg: dict[str, object]) -> bool:
    """Whether a ``reply`` envelope matches :data:`MESSAGES` ``["reply"]`` (``k`` and ``seq`` already checked).

    Exactly the schema's rule, written out for the hot path; ``False`` sends the
    envelope through the generic check, which then names what is wrong.
    """
    if msg.keys() != _REPLY_KEYS or type(msg["id"]) is not int or type(msg["results"]) is not list:
        return False
    for item in msg["results"]:  # type: ignore[attr-defined]
        if type(item) is not dict or type(item.get("ok")) is not bool or not item.keys() <= _ITEM_KEYS:
            return False
        if "error" in item and type(item["error"]) is not str and item["error"] is not None:
            return False
        if "us" in item and type(item["us"]) is not int and item["us"] is not None:
            return False
        if "result" in item and not _safe(item["result"]):
            return False
    return True


class Sealer:
    """Packs and signs outbound envelopes for one socket; owns its ``seq`` counter.

    Not thread-safe: one sealer per socket, used by whoever holds that socket.
    """

    __slots__ = ("_mac", "_seq")

    def __init__(self, key: bytes, first_seq: int = 1) -> None:
        self._mac = Mac(key)
        self._seq = first_seq - 1

    def seal(self, kind: str, fields: dict[str, object]) -> bytes:
        """One frame for message ``kind`` with ``fields`` (``k``/``seq`` are added)."""
        self._seq += 1
        body: bytes = _PACK({"k": kind, "seq": self._seq, **fields})
        return self._mac.sign(body) + body

    def seal_raw(self, body: bytes) -> bytes:
        """Sign an already packed body as is (tests and conformance tools only)."""
        return self._mac.sign(body) + body


class Opener:
    """Verifies and decodes inbound frames for one socket; tracks the last ``seq``.

    ``accept`` is the set of kinds valid on this socket in this direction.
    Not thread-safe: one opener per socket.
    """

    __slots__ = ("_accept", "_fast", "_last_seq", "_limits", "_mac", "_max_frame", "_schemas", "_unpack", "_validate")

    def __init__(self, key: bytes, accept: frozenset[str], max_frame: int = DEFAULT_MAX_FRAME,
                 validate: bool = True, schemas: dict[str, Struct] | None = None) -> None:
        self._mac = Mac(key)
        #: Schema of each accepted kind (default :data:`MESSAGES`; the host's operator channel has its own).
        self._schemas = MESSAGES if schemas is None else schemas
        #: Check the envelope against its schema. The host always does (it trusts no
        #: extension); an SDK may skip it for frames from its authenticated host.
        self._validate = validate
        self._accept = accept
        self._max_frame = max_frame
        self._last_seq = 0
        #: The unpacker's limits (``docs/PROTOCOL.md`` states them; a test holds the doc to these).
        self._limits = {
            "max_str_len": max_frame,
            "max_bin_len": max_frame,
            "max_array_len": 1_000_000,
            "max_map_len": 100_000,
            "max_ext_len": 0,
        }
        self._unpack: Callable[[bytes], object] = functools.partial(msgpack.unpackb, raw=False, strict_map_key=True,
                                                                    **self._limits)
        #: Kinds with a hand-written check equal to their schema's (the events channel's replies).
        self._fast = schemas is None and "reply" in accept

    def open(self, frame: bytes) -> dict[str, object]:
        """The verified envelope of ``frame``; raises :class:`FrameError`."""
        if len(frame) > self._max_frame + MAC_SIZE:
            raise FrameError("too_large", f"{len(frame)} bytes > limit {self._max_frame}")
        if len(frame) <= MAC_SIZE:
            raise FrameError("short", f"{len(frame)} bytes")
        body = frame[MAC_SIZE:]
        if not _compare_digest(frame[:MAC_SIZE], self._mac.sign(body)):
            raise FrameError("bad_mac", "signature does not match")
        try:
            msg = self._unpack(body)
        except msgpack.StackError as exc:  # C unpacker's own nesting limit
            raise FrameError("too_deep", "nesting exceeds the unpacker stack") from exc
        except Exception as exc:
            raise FrameError("decode", f"{type(exc).__name__}: {exc}") from exc
        if type(msg) is not dict:
            raise FrameError("not_a_map", f"envelope is {type(msg).__name__}")
        kind = msg.get("k")
        if kind not in self._accept:
            raise FrameError("unknown_kind", f"kind {kind!r} not accepted here")
        seq = msg.get("seq")
        if type(seq) is not int or seq <= self._last_seq:
            raise FrameError("replay", f"seq {seq!r} not after {self._last_seq}")
        if self._validate and not (self._fast and kind == "reply" and _plain_reply(msg)):
            try:
                self._schemas[kind].check(msg)  # type: ignore[index]
            except SchemaError as exc:
                reason = "too_deep" if "deeper" in exc.problem else "schema"
                raise FrameError(reason, str(exc)) from exc
        self._last_seq = seq
        return msg
