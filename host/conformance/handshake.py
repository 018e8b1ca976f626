"""The handshake checks: what arrived first on the calls channel, judged part by part, and the host's decision.

Contract of :func:`judge_hello`: from a :class:`~.session.HelloWait` it makes
the five ``handshake.*`` results and returns the host's decision on it —
:func:`host.exthost.handshake.check_hello`, the host's own pure function, with
the manifest (for a command: the one learned from ``hello``) and the
permissions the kit grants (what the manifest asks). So the kit accepts
exactly what the host would accept. Each part is judged on its own, with a
message that says what to change; should the host refuse for a reason no
part caught, ``handshake.hello`` fails with the host's reason. With no
usable ``hello``, the other four are skipped. (A folder the dedicated uid
cannot read never gets this far: the host's confiner refuses to launch it and
says why.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ext_sdk.events import spec_for
from ext_sdk.hostcalls import ALWAYS_GRANTED
from ext_sdk.wire import PROTOCOL_VERSIONS

from ..config import HostConfig
from ..exthost.handshake import Granted, Refused, check_hello
from ..exthost.manifest import Manifest
from ..exthost.process import describe_exit
from .catalog import CheckResult, fail, passed, skipped
from .judge import FRAME_HINTS
from .launcher import KitRuntime, Launched
from .session import HelloWait
from .target import Target, learned_manifest

__all__ = ["HANDSHAKE_CHECKS", "HelloVerdict", "judge_hello"]

#: The handshake check ids, in report order.
HANDSHAKE_CHECKS = ("handshake.hello", "handshake.name", "handshake.version", "handshake.subscriptions",
                    "handshake.permissions")
_NAME_OK = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True, slots=True)
class HelloVerdict:
    """The handshake results, the hello (if one was usable), and the host's decision."""

    results: list[CheckResult]
    hello: dict[str, Any] | None
    manifest: Manifest
    decision: Granted | Refused


def _no_hello(wait: HelloWait, launched: Launched, start_s: float) -> str:
    if wait.exit_status is not None:
        tail = launched.stderr_tail()
        return (f"the process {describe_exit(wait.exit_status)} before sending hello"
                + (f"; stderr: {tail}" if tail else ""))
    return (f"no frame on the calls channel within {start_s * 1000:.0f} ms of the start (deadlines.start_ms): "
            "connect the three sockets, then send hello on the calls channel")


def _name(hello: dict[str, Any], target: Target) -> CheckResult:
    name = hello["name"]
    if target.from_command:
        if _NAME_OK.match(name):
            return passed("handshake.name", f"named {name!r} (no manifest: the kit takes the name from hello)")
        return fail("handshake.name", f"hello names it {name!r}, which no manifest can name: use lowercase letters, "
                                      "digits, '.', '_' or '-' (at most 63, starting with a letter or digit)")
    expected = target.manifest.name
    if name == expected:
        return passed("handshake.name", f"named {name!r}, as its manifest")
    return fail("handshake.name", f"hello names the extension {name!r}, but its manifest says {expected!r}: "
                                  "use the manifest's name (the host also passes it in KITHOST_EXTENSION)")


def _version(hello: dict[str, Any]) -> CheckResult:
    offered = hello["versions"]
    if set(offered) & set(PROTOCOL_VERSIONS):
        return passed("handshake.version", f"offers {offered}")
    return fail("handshake.version", f"hello offers protocol version(s) {offered}, but the host speaks "
                                     f"{list(PROTOCOL_VERSIONS)}: offer 1 (the versions the host speaks are in "
                                     "KITHOST_PROTOCOL_VERSIONS)")


def _subscriptions(hello: dict[str, Any], manifest: Manifest) -> CheckResult:
    subs = hello["subscriptions"]
    for index, sub in enumerate(subs):
        event = sub["event"]
        if spec_for(event) is None:
            return fail("handshake.subscriptions", f"subscription {index} names {event!r}, which is no event: "
                                                   "see x-kithost.events in the protocol schema, or use "
                                                   "'custom:<name>'")
        if event not in manifest.events:
            return fail("handshake.subscriptions", f"subscription {index} is to {event!r}, which the manifest does "
                                                   f"not list in events {list(manifest.events)}: add it to events "
                                                   "in extension.toml (that list is what the operator reviews)")
    if not subs:
        return passed("handshake.subscriptions", "no subscriptions")
    return passed("handshake.subscriptions", f"{len(subs)}: " + ", ".join(s["event"] for s in subs))


def _permissions(hello: dict[str, Any], manifest: Manifest, allowed: frozenset[str]) -> CheckResult:
    asked = list(dict.fromkeys(hello["permissions"]))
    undeclared = [p for p in asked if p not in manifest.permissions and p not in ALWAYS_GRANTED]
    if undeclared:
        return fail("handshake.permissions", f"hello asks for {undeclared}, which the manifest does not declare: add "
                                             "them to permissions in extension.toml, or stop asking")
    granted = (set(asked) & allowed) | ALWAYS_GRANTED
    for sub in hello["subscriptions"]:
        spec = spec_for(sub["event"])
        if spec is not None and spec.exposes_content and "conversation" not in granted:
            return fail("handshake.permissions", f"subscribes to {sub['event']!r}, which carries conversation "
                                                 "content, without the 'conversation' permission: declare it in "
                                                 "the manifest and ask for it in hello")
    return passed("handshake.permissions", f"asks for {asked or 'nothing'}")


def judge_hello(wait: HelloWait, target: Target, launched: Launched, config: HostConfig) -> HelloVerdict:
    """The handshake results and the host's decision (see the module doc)."""
    start_s = config.deadlines.start_ms / 1000
    rest = HANDSHAKE_CHECKS[1:]
    incoming = wait.incoming
    problem: str | None = None
    if incoming is None:
        problem = _no_hello(wait, launched, start_s)
    elif incoming.error is not None:
        hint = FRAME_HINTS.get(incoming.error.reason, "")
        if incoming.error.reason == "schema":
            hint = "hello must match $defs/message.hello exactly (every field, no others)"
        problem = (f"the first frame on the calls channel was rejected ({incoming.error.reason}: "
                   f"{incoming.error.detail})" + (f" — {hint}" if hint else ""))
    elif incoming.kind != "hello":
        problem = f"the first message on the calls channel was {incoming.kind!r}: send hello first"
    if problem is not None or incoming is None or incoming.msg is None:
        reason = problem or "no hello"
        results = [fail("handshake.hello", reason)]
        results += [skipped(check, "no usable hello (see handshake.hello)") for check in rest]
        return HelloVerdict(results, None, target.manifest, Refused(reason))
    hello = incoming.msg
    manifest = learned_manifest(target, hello)
    allowed = KitRuntime.granted_permissions(manifest)
    results = [
        passed("handshake.hello", f"hello after {wait.elapsed_s * 1000:.0f} ms ({hello['sdk']}; "
                                  f"{len(hello['subscriptions'])} subscription(s), {len(hello['tools'])} tool(s), "
                                  f"{len(hello['commands'])} command(s))"),
        _name(hello, target),
        _version(hello),
        _subscriptions(hello, manifest),
        _permissions(hello, manifest, allowed),
    ]
    decision = check_hello(hello, manifest, config, allowed)
    if isinstance(decision, Refused) and all(r.status == "pass" for r in results):
        results[0] = fail("handshake.hello", f"the host refuses this hello: {decision.reason}")
    return HelloVerdict(results, hello, manifest, decision)
