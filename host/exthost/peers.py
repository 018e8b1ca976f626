"""Who may connect to an extension's sockets: per-launch CurveZMQ keys and the ZAP handler that admits them.

Every socket the host binds for an extension is a CURVE server
(``ZMQ_CURVE_SERVER``) in a ZAP domain of its own launch
(``ZMQ_ZAP_DOMAIN``, with ``ZMQ_ZAP_ENFORCE_DOMAIN`` so that a missing
handler fails closed). A connection is admitted only when its CURVE client
key is the one generated for that launch and handed to the extension in its
launch-secret file (:class:`ext_sdk.wire.LaunchSecret`). So no other
process — another extension, or anything else of the same user that did not
read that file before the host deleted it — can connect to an extension's
endpoints, receive its events, or send frames as it; frames are encrypted on
the wire besides. Every refused connection is counted on the extension
(``frame_errors["unauthenticated"]``) and logged.

The ZAP handler is pyzmq's :class:`zmq.auth.thread.ThreadAuthenticator` (one
thread per host), consulted only when a connection is made, never per frame.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import Counter
from dataclasses import dataclass

import zmq
from zmq.auth.thread import ThreadAuthenticator

from ext_sdk.wire import LaunchSecret

__all__ = ["UNAUTHENTICATED", "LaunchKeys", "PeerGate", "new_launch_keys", "secure_server_socket"]

log = logging.getLogger("kithost.peers")

#: The ``frame_errors`` key under which refused connections are counted.
UNAUTHENTICATED = "unauthenticated"


@dataclass(frozen=True, slots=True)
class LaunchKeys:
    """The keys of one launch: what the extension gets, and the host's CURVE secret key."""

    #: Written to the extension's secret file.
    secret: LaunchSecret
    #: The host's CURVE secret key for this launch's sockets (Z85).
    server_secret: str


def new_launch_keys() -> LaunchKeys:
    """Fresh keys for one launch: an HMAC key and two CURVE key pairs."""
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    secret = LaunchSecret(secrets.token_bytes(32), server_public.decode(), client_public.decode(),
                          client_secret.decode())
    return LaunchKeys(secret, server_secret.decode())


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, answering with an empty User-Id.

    With a non-empty User-Id (pyzmq's default is the client's key), libzmq 4.3.5
    drops every connection on which a CURVE-server REQ socket receives a reply
    (the host's events and control sockets): the peer is admitted, then
    disconnected at its first answer. Nothing here reads the User-Id.
    """

    def curve_user_id(self, client_public_key: bytes) -> str:
        return ""


class PeerGate:
    """The host's ZAP handler: admits, per launch domain, exactly that launch's client key."""

    def __init__(self, zctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        self._auth = _Authenticator(zctx, log=logging.getLogger("kithost.zap"))
        self._auth.start()
        self._lock = threading.Lock()
        #: domain → (admitted client key, where refusals are counted, extension name)
        self._admitted: dict[str, tuple[bytes, Counter[str], str]] = {}

    def admit(self, domain: str, client_public: str, refusals: Counter[str], name: str) -> None:
        """From now on, connections in ``domain`` need ``client_public``; refusals go to ``refusals``."""
        with self._lock:
            self._admitted[domain] = (client_public.encode(), refusals, name)
        self._auth.configure_curve_callback(domain, credentials_provider=self)

    def forget(self, domain: str) -> None:
        """The launch ended: nobody is admitted in ``domain`` any more."""
        with self._lock:
            self._admitted.pop(domain, None)

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP decision (called on the authenticator's thread); ``key`` is the client's Z85 public key."""
        with self._lock:
            entry = self._admitted.get(domain)
        if entry is not None and secrets.compare_digest(entry[0], key):
            return True
        if entry is not None:
            entry[1][UNAUTHENTICATED] += 1
            log.warning("extension %s: refused a connection with an unknown key", entry[2])
        else:
            log.warning("refused a connection to a closed launch (%s)", domain)
        return False

    def close(self) -> None:
        """Stop the handler thread (before the context is destroyed)."""
        self._auth.stop()


def secure_server_socket(sock: zmq.Socket[bytes], keys: LaunchKeys, domain: str) -> None:
    """Make ``sock`` (not yet bound) a CURVE server in ``domain``, failing closed without a ZAP handler."""
    sock.curve_server = True
    sock.curve_secretkey = keys.server_secret.encode()
    sock.zap_domain = domain.encode()
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
