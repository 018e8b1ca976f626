"""The handshake decision: an extension's ``hello`` + its manifest + the operator's config → granted or refused.

A pure function (no sockets, no processes): :func:`check_hello` returns a
:class:`Granted` record or a :class:`Refused` reason. The refusal reasons,
in the order they are checked:

1. no common protocol version;
2. its identity differs from the manifest's, which is its one source (an SDK
   reads name, version and permissions from the manifest; code that restates
   them is checked here): the name, the version, or the permissions — more
   than the manifest declares, or fewer (the groups always granted aside);
3. it subscribes to an unknown event, to an event its manifest does not list,
   or to an event that exposes conversation content without the
   ``conversation`` permission granted.

Grants: what the extension asks for, intersected with what it was granted
before it started (:mod:`.trust`: the operator's config, the trust file, or
the defaults), plus the always-granted groups. Each subscription gets its
effective deadline and failure policy (:mod:`.policy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ext_sdk.combine import HandlerDecl
from ext_sdk.events import spec_for
from ext_sdk.hostcalls import ALWAYS_GRANTED
from ext_sdk.wire import PROTOCOL_VERSIONS, choose_version

from ..config import HostConfig
from .manifest import Manifest
from .policy import effective_deadline_ms, effective_policy

__all__ = ["Granted", "Refused", "check_hello", "identity_mismatch", "welcome_fields"]


@dataclass(frozen=True, slots=True)
class Granted:
    """An accepted handshake: what the extension declared and what it was granted."""

    #: Chosen protocol version.
    protocol: int
    #: The extension's own version string.
    version: str
    #: SDK name/version it reports.
    sdk: str
    #: Its subscriptions with effective deadlines and policies, in registration order.
    handlers: tuple[HandlerDecl, ...]
    #: Tool declarations (``name``, ``description``, ``parameters``).
    tools: tuple[dict[str, Any], ...]
    #: Command declarations (``name``, ``description``).
    commands: tuple[dict[str, Any], ...]
    #: Permissions granted.
    granted: frozenset[str]


#: What an extension declares before any handshake (status views of a never-started extension).
NOTHING_DECLARED = Granted(0, "", "", (), (), (), frozenset())


@dataclass(frozen=True, slots=True)
class Refused:
    """A refused handshake; ``reason`` is sent to the extension and recorded."""

    reason: str


def check_hello(hello: dict[str, Any], manifest: Manifest, config: HostConfig,
                allowed_permissions: frozenset[str]) -> Granted | Refused:
    """Decide on a (schema-valid) ``hello``; see the module doc for the rules.

    ``allowed_permissions`` is what the extension was granted before it started (:class:`.trust.Grant`).
    """
    name = manifest.name
    version = choose_version(hello["versions"])
    if version is None:
        return Refused(f"no common protocol version (extension speaks {hello['versions']}, host speaks "
                       f"{list(PROTOCOL_VERSIONS)})")
    mismatch = identity_mismatch(hello, manifest)
    if mismatch:
        return Refused(mismatch)
    allowed = allowed_permissions
    asked = set(hello["permissions"])
    granted = frozenset((asked & allowed) | ALWAYS_GRANTED)
    handlers: list[HandlerDecl] = []
    for index, sub in enumerate(hello["subscriptions"]):
        event = sub["event"]
        spec = spec_for(event)
        if spec is None:
            return Refused(f"subscribes to unknown event {event!r}")
        if event not in manifest.events:
            return Refused(f"subscribes to {event!r}, which its manifest does not list in events")
        if spec.exposes_content and "conversation" not in granted:
            return Refused(f"subscribes to {event!r}, which exposes conversation content, but 'conversation' "
                           "was not granted")
        deadline = effective_deadline_ms(config, name, spec, event, sub.get("deadline_ms"))
        policy = effective_policy(config, name, spec, event, sub.get("policy"))
        handlers.append(HandlerDecl(index, event, sub["priority"], deadline / 1000, policy))
    return Granted(version, hello["version"], hello["sdk"], tuple(handlers), tuple(hello["tools"]),
                   tuple(hello["commands"]), granted)


#: How to fix an identity mismatch, said after each one.
_ONE_SOURCE = ("the manifest is the one source: leave it out of the code (the SDK reads extension.toml) or state "
               "the manifest's value")


def identity_mismatch(hello: dict[str, Any], manifest: Manifest) -> str:
    """Why ``hello``'s name, version or permissions differ from ``manifest``'s ('' when they agree)."""
    if hello["name"] != manifest.name:
        return f"extension calls itself {hello['name']!r} but its manifest says {manifest.name!r}; {_ONE_SOURCE}"
    if hello["version"] != manifest.version:
        return (f"its code says version {hello['version']!r} but its manifest says {manifest.version!r}; "
                f"{_ONE_SOURCE}")
    asked = set(hello["permissions"]) - ALWAYS_GRANTED
    declared = set(manifest.permissions) - ALWAYS_GRANTED
    if asked - declared:
        return (f"asks for permission(s) {sorted(asked - declared)} that its manifest does not declare; "
                f"{_ONE_SOURCE}")
    if declared - asked:
        return (f"its code leaves out permission(s) {sorted(declared - asked)} that its manifest declares; "
                f"{_ONE_SOURCE}")
    return ""


def welcome_fields(granted: Granted) -> dict[str, Any]:
    """The ``welcome`` answer to an accepted handshake."""
    return {"version": granted.protocol, "granted": sorted(granted.granted),
            "deadlines_ms": [round((h.deadline_s or 0.0) * 1000) for h in granted.handlers]}
