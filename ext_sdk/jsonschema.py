"""The protocol as one JSON Schema document, generated from the definitions in this package.

``kithost schema`` prints it; ``docs/protocol.schema.json`` is the committed
copy (a test fails when it differs from what this module generates). Layout::

    $defs/message.<kind>          every envelope kind (hello, event, reply, ...)
    $defs/event.<name>.payload    every event's payload (and custom events: event.custom)
    $defs/event.<name>.result     every gate/chain event's result
    $defs/call.<method>.args      every host call's arguments
    $defs/call.<method>.result    every host call's return value
    x-kithost.events              name → {mode, default_policy, stop, chain, exposes_content, hot, doc}
    x-kithost.calls               method → {permission, doc}
"""

from __future__ import annotations

import json
from typing import Any

from .events import CUSTOM_PAYLOAD, EVENTS
from .hostcalls import ALWAYS_GRANTED, HOST_CALLS, PERMISSIONS
from .wire import MAC_SIZE, MESSAGES, PROTOCOL_VERSIONS

__all__ = ["protocol_schema", "render"]


def protocol_schema() -> dict[str, Any]:
    """The whole protocol as a JSON Schema (draft 2020-12) document."""
    defs: dict[str, Any] = {}
    for kind, struct in MESSAGES.items():
        defs[f"message.{kind}"] = struct.json_schema()
    events: dict[str, Any] = {}
    for name, spec in EVENTS.items():
        defs[f"event.{name}.payload"] = spec.payload.json_schema()
        if spec.result is not None:
            defs[f"event.{name}.result"] = spec.result.json_schema()
        events[name] = {
            "doc": spec.doc,
            "mode": spec.mode,
            "default_policy": spec.default_policy,
            "stop": None if spec.stop is None else {"field": spec.stop.field, "equals": spec.stop.equals},
            "chain": None if spec.chain is None else {
                "fields": list(spec.chain.fields),
                "when": None if spec.chain.when is None else {"field": spec.chain.when[0],
                                                              "equals": spec.chain.when[1]},
            },
            "exposes_content": spec.exposes_content,
            "hot": spec.hot,
        }
    defs["event.custom.payload"] = CUSTOM_PAYLOAD.json_schema()
    calls: dict[str, Any] = {}
    for name, call in HOST_CALLS.items():
        defs[f"call.{name}.args"] = call.args.json_schema()
        defs[f"call.{name}.result"] = call.result.json_schema()
        calls[name] = {"permission": call.permission, "doc": call.doc}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://kithost.invalid/protocol.schema.json",
        "title": "kithost extension protocol",
        "description": (
            f"Frames are {MAC_SIZE} bytes of HMAC-SHA256 over the body, then the body: a msgpack map "
            "validated by $defs/message.<k>. See docs/PROTOCOL.md."
        ),
        "x-kithost": {
            "protocol_versions": list(PROTOCOL_VERSIONS),
            "permissions": list(PERMISSIONS),
            "always_granted": sorted(ALWAYS_GRANTED),
            "events": events,
            "calls": calls,
        },
        "$defs": dict(sorted(defs.items())),
    }


def render() -> str:
    """The schema as the exact text committed in ``docs/protocol.schema.json``."""
    return json.dumps(protocol_schema(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
