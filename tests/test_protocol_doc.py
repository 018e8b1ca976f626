"""``docs/PROTOCOL.md`` and ``docs/MANIFEST.md`` are true of the host.

What is checked, and how:

* the launch environment table is exactly what a real extension sees (every variable, its value, the working
  directory, stdin, its session), with the sandbox as this machine gives it and with every layer off;
* the defaults, fixed values and exit statuses the document states are the code's (parsed from its tables);
* the worked examples' bytes and MACs are what ``ext_sdk.wire.Sealer`` produces, and the document's own
  Python snippet reproduces them;
* the reference sections (message kinds, shared shapes, host calls, events) are generated from the code:
  a test fails when they drift (regenerate: ``.venv/bin/python tests/test_protocol_doc.py --write``);
* a raw extension written from the document alone (pyzmq + msgpack + hmac, no SDK) goes through a real host:
  handshake, deadlines in ``welcome``, batches, host calls, refusals, heartbeats, shutdown, bad frames;
* the batch wire form (§6.2), with the notify delivery thread held busy so that nothing races: queued notify
  items ride ahead of a gate (the only item with ``handler``, last), go as a batch of their own before an
  ``invoke``, are capped at ``[limits] notify_batch`` by the delivery thread only, and ``dropped`` counts what
  a full ``[limits] notify_queue`` refused;
* ``docs/MANIFEST.md`` lists exactly the manifest model's keys and its examples load.

The committed JSON Schema's drift check is ``tests/test_cli_and_docs.py::test_committed_schema_is_in_sync``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import statistics
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_type_hints

import psutil
import pytest
import zmq
from conftest import ROOT, MakeExt, tool_call

from ext_sdk import schema as sch
from ext_sdk.events import CONTEXT_MESSAGE, CUSTOM_PAYLOAD, EVENTS, EventSpec, Mode
from ext_sdk.hostcalls import ALWAYS_GRANTED, HOST_CALLS, PERMISSIONS
from ext_sdk.sandbox.plan import ENV_ACTIVE, ENV_PLAN, EXIT_SANDBOX
from ext_sdk.wire import (
    EXIT_BAD_EXTENSION,
    EXIT_REJECTED,
    EXIT_USAGE,
    FRAME_ERRORS,
    MAC_SIZE,
    MESSAGES,
    PROTOCOL_VERSIONS,
    Opener,
    Sealer,
)
from host import ExtensionHost, ExtensionStartError, HostConfig
from host.config import Access, Limits, Sandbox, SandboxLayer, TrustMode, _to_unit, file_key
from host.exthost import channel as host_channel
from host.exthost.events_link import EventsLink
from host.exthost.hostcalls import HostCallRouter
from host.exthost.manifest import _ManifestFile, load_manifest
from host.exthost.process import ShutdownRung
from host.exthost.sandbox.cgroups import EXIT_JOIN
from host.exthost.services import AGENT_CALLS
from host.exthost.state_store import sidecar_path

PROTOCOL = ROOT / "docs" / "PROTOCOL.md"
MANIFEST = ROOT / "docs" / "MANIFEST.md"
SCHEMA = ROOT / "docs" / "protocol.schema.json"

NewHost = Callable[..., ExtensionHost]


# --------------------------------------------------------------------------- reading the markdown


def _cells(line: str) -> list[str]:
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)]


def table(text: str, name: str) -> list[dict[str, str]]:
    """The table right after ``<!-- table: NAME -->``, as one dict per row (header → cell)."""
    marker = f"<!-- table: {name} -->"
    assert text.count(marker) == 1, f"the document must have exactly one {marker}"
    lines = text.split(marker, 1)[1].strip().splitlines()
    header = _cells(lines[0])
    assert set(lines[1].replace("|", "").strip()) <= set("-: "), f"{marker}: not a table"
    rows = []
    for line in lines[2:]:
        if not line.lstrip().startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == len(header), f"{marker}: row {line!r} has {len(cells)} cells, header {len(header)}"
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def spans(cell: str) -> list[str]:
    """The inline code spans of a cell."""
    return re.findall(r"`([^`]+)`", cell)


def only_span(cell: str) -> str | None:
    """The cell's content when the cell is exactly one code span (a literal), else ``None``."""
    match = re.fullmatch(r"`([^`]+)`", cell.strip())
    return match.group(1) if match else None


def fenced(text: str, info: str) -> list[str]:
    """Every fenced code block whose info string is ``info``."""
    return re.findall(rf"^```{re.escape(info)}\n(.*?)^```$", text, re.S | re.M)


def after(text: str, marker: str) -> str:
    assert text.count(marker) == 1, f"the document must have exactly one {marker}"
    return text.split(marker, 1)[1]


# --------------------------------------------------------------------------- generated reference sections

#: Shapes the reference names instead of spelling them out wherever they occur.
NAMED: dict[str, sch.Struct] = {
    "Subscription": MESSAGES["hello"].fields["subscriptions"].type.item,  # type: ignore[attr-defined]
    "ToolDecl": MESSAGES["hello"].fields["tools"].type.item,  # type: ignore[attr-defined]
    "CommandDecl": MESSAGES["hello"].fields["commands"].type.item,  # type: ignore[attr-defined]
    "EventItem": MESSAGES["batch"].fields["events"].type.item,  # type: ignore[attr-defined]
    "ResultItem": MESSAGES["reply"].fields["results"].type.item,  # type: ignore[attr-defined]
    "ContextMessage": CONTEXT_MESSAGE,
    "ToolCallInfo": CONTEXT_MESSAGE.fields["tool_calls"].type.item,  # type: ignore[attr-defined]
}
_NAME_OF = {id(struct): name for name, struct in NAMED.items()}


def type_text(t: sch.Type) -> str:
    """A type in the document's notation (see its "Notation" section)."""
    if id(t) in _NAME_OF:
        return _NAME_OF[id(t)]
    scalars = {id(sch.Str): "string", id(sch.Int): "int", id(sch.Float): "float", id(sch.Bool): "bool",
               id(sch.Any): "any"}
    if id(t) in scalars:
        return scalars[id(t)]
    if isinstance(t, sch.Nullable):
        return f"{type_text(t.inner)} | nil"
    if isinstance(t, sch.Nil):
        return "nil"
    if isinstance(t, sch.Enum):
        return " | ".join(json.dumps(v) for v in t._ordered)
    if isinstance(t, sch.List):
        return f"list[{type_text(t.item)}]"
    if isinstance(t, sch.Map):
        return f"map[string, {type_text(t.value)}]"
    if isinstance(t, sch.Struct):
        if not t.fields:
            return "{}"
        inner = ", ".join(f"{n}{'' if f.required else '?'}: {type_text(f.type)}" for n, f in t.fields.items())
        return "{" + inner + "}"
    raise TypeError(f"no notation for {t!r}")


def _esc(text: str) -> str:
    return text.replace("|", "\\|")


#: What a field means where the code's definition has no words for it: ``(kind or shape, field) → text``.
MEANINGS = {
    ("hello", "name"): "The extension's name; must be the manifest's `name`.",
    ("hello", "version"): "The extension's version: exactly its manifest's `version` (default `\"0.0.0\"`).",
    ("hello", "subscriptions"): "Its handlers in registration order: handler *i* is item *i*.",
    ("hello", "tools"): "Tools it provides to the model.",
    ("hello", "commands"): "Slash commands it provides.",
    ("reject", "reason"): "Why, in words (§5).",
    ("call", "method"): "Host call name (§16).",
    ("call", "args"): "Its arguments (§16).",
    ("answer", "ok"): "Whether the call was answered (true) or refused (false).",
    ("answer", "value"): "The method's result, when `ok`.",
    ("answer", "error"): "Why the call was refused, when not `ok`.",
    ("event", "event"): "Event name, or `custom:<name>`.",
    ("event", "handler"): "Index of the subscription to run (this host always sets it).",
    ("event", "data"): "The event's payload (§17).",
    ("batch", "events"): "The events, oldest first; at most one item has a `handler`, and it is last (§6.2).",
    ("invoke", "target"): "Run a tool or a slash command.",
    ("invoke", "name"): "The tool's or command's name, as declared in `hello`.",
    ("invoke", "args"): "A tool: the model's arguments (a map); a command: the text after its name (a string).",
    ("reply", "results"): "One per event of the request, in order.",
    ("shutdown", "reason"): "Why, in words.",
    ("ToolDecl", "name"): "Tool name, as the model sees it.",
    ("ToolDecl", "description"): "What the tool does, for the model.",
    ("CommandDecl", "name"): "Command name, without the leading `/`.",
    ("CommandDecl", "description"): "What the command does, for the user.",
    ("EventItem", "event"): "Event name, or `custom:<name>`.",
    ("EventItem", "data"): "The event's payload (§17).",
}


def fields_table(struct: sch.Struct, skip: tuple[str, ...] = (), owner: str = "") -> list[str]:
    rows = [(n, f) for n, f in struct.fields.items() if n not in skip]
    if not rows:
        return ["(no fields: an empty map)"]
    out = ["| field | type | meaning |", "|---|---|---|"]
    for name, f in rows:
        meaning = f.doc or MEANINGS.get((owner, name), "")
        out.append(f"| `{name}{'' if f.required else '?'}` | `{_esc(type_text(f.type))}` | {_esc(meaning)} |")
    return out


#: Who sends each kind, on which channel (the host's sockets accept exactly the kinds it receives).
KIND_ROUTES = {
    "hello": ("calls", "extension → host", "first message; answered by `welcome` or `reject`"),
    "welcome": ("calls", "host → extension", "answer to `hello`"),
    "reject": ("calls", "host → extension", "answer to `hello`; the host then stops the process"),
    "call": ("calls", "extension → host", "answered by `answer`"),
    "answer": ("calls", "host → extension", "answer to `call`"),
    "event": ("events", "host → extension", "answered by `reply`"),
    "batch": ("events", "host → extension", "answered by `reply`"),
    "invoke": ("events", "host → extension", "answered by `reply`"),
    "reply": ("events", "extension → host", "answer to `event`, `batch` or `invoke`"),
    "ping": ("control", "host → extension", "answered by `pong`"),
    "pong": ("control", "extension → host", "answer to `ping`"),
    "shutdown": ("control", "host → extension", "answered by `bye`"),
    "bye": ("control", "extension → host", "answer to `shutdown`; the process exits next"),
}


def render_messages() -> str:
    out: list[str] = []
    for kind, struct in MESSAGES.items():
        channel, direction, role = KIND_ROUTES[kind]
        out += [f"#### `{kind}`", "", f"{channel} channel · {direction} · {role}", "", struct.doc, ""]
        out += fields_table(struct, skip=("k", "seq"), owner=kind)
        out.append("")
    out.append("Shared shapes:")
    out.append("")
    for name, struct in NAMED.items():
        out += [f"#### `{name}`", "", struct.doc or "", ""]
        out += fields_table(struct, owner=name)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


#: Host calls that return nothing: their answer's ``value`` is nil (checked against the host's handlers).
#: Calls whose answer carries no value (``nil``), derived from their definitions.
RETURN_NOTHING = tuple(name for name, call in HOST_CALLS.items() if isinstance(call.result, sch.Nil))


def render_calls() -> str:
    out = ["| method | permission | `args` | `value` of a successful `answer` | what it does |",
           "|---|---|---|---|---|"]
    for name, call in HOST_CALLS.items():
        value = "nil" if name in RETURN_NOTHING else type_text(call.result)
        out.append(f"| `{name}` | `{call.permission}` | `{_esc(type_text(call.args))}` | `{_esc(value)}`"
                   f" | {_esc(call.doc)} |")
    return "\n".join(out) + "\n"


def default_deadline_key(spec: EventSpec) -> str:
    if spec.hot:
        return "hot_ms"
    return {Mode.GATE: "gate_ms", Mode.CHAIN: "chain_ms", Mode.NOTIFY: "notify_ms"}[spec.mode]


def setting(section: str, attribute: str) -> str:
    """How the config file names ``<section>.<attribute>`` (``deadlines.hot_ms`` → ``[deadlines] hot``)."""
    record = getattr(HostConfig(), section)
    found = next(f for f in dataclasses.fields(record) if f.name == attribute)
    return f"[{section}] {file_key(found)[0]}"


def _event_block(name: str, spec: EventSpec) -> list[str]:
    deadlines = HostConfig().deadlines
    key = default_deadline_key(spec)
    facts = [f"`{spec.mode}`", f"default deadline {getattr(deadlines, key)} ms (`{setting('deadlines', key)}`)",
             f"default policy `{spec.default_policy}`"]
    facts.append("needs `conversation`" if spec.exposes_content else "needs no permission")
    if spec.stop is not None:
        facts.append(f"stops when `{spec.stop.field}` = `{json.dumps(spec.stop.equals)}`")
    if spec.chain is not None:
        chained = ", ".join(f"`{f}`" for f in spec.chain.fields)
        when = f" (when `{spec.chain.when[0]}` = `{json.dumps(spec.chain.when[1])}`)" if spec.chain.when else ""
        facts.append(f"chains {chained}{when}")
    out = [f"#### `{name}`", "", " · ".join(facts), "", spec.doc, "", "Payload (`data`):", ""]
    out += fields_table(spec.payload)
    if spec.result is not None:
        out += ["", "Result:", ""]
        out += fields_table(spec.result)
    out.append("")
    return out


def render_events() -> str:
    out: list[str] = []
    for mode in (Mode.GATE, Mode.CHAIN, Mode.NOTIFY):
        out += [f"### {mode.capitalize()} events", ""]
        for name, spec in EVENTS.items():
            if spec.mode is mode:
                out += _event_block(name, spec)
    out += ["### Custom events: `custom:<name>`", "",
            "`notify` · default deadline "
            f"{HostConfig().deadlines.notify_ms} ms (`{setting('deadlines', 'notify_ms')}`) · needs no permission", "",
            CUSTOM_PAYLOAD.doc, "", "Payload (`data`):", ""]
    out += fields_table(CUSTOM_PAYLOAD)
    return "\n".join(out).rstrip() + "\n"


GENERATED: dict[str, Callable[[], str]] = {"messages": render_messages, "calls": render_calls,
                                           "events": render_events}


def _generated_re(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated: {name} [^\n]*-->\n)(.*?)(<!-- end generated: {name} -->)", re.S)


def write_generated(path: Path = PROTOCOL) -> None:
    text = path.read_text()
    for name, render in GENERATED.items():
        text, count = _generated_re(name).subn(lambda m, r=render: m.group(1) + "\n" + r() + "\n" + m.group(3), text)
        assert count == 1, f"no generated block {name!r} in {path}"
    path.write_text(text)


# --------------------------------------------------------------------------- (4) every kind, event, call documented


def test_generated_reference_sections_match_the_code() -> None:
    text = PROTOCOL.read_text()
    for name, render in GENERATED.items():
        match = _generated_re(name).search(text)
        assert match is not None, f"PROTOCOL.md has no generated block {name!r}"
        assert match.group(2).strip() == render().strip(), (
            f"the {name!r} section of docs/PROTOCOL.md is stale: "
            "run .venv/bin/python tests/test_protocol_doc.py --write")


def test_every_message_kind_event_call_and_frame_error_is_documented() -> None:
    text = PROTOCOL.read_text()
    for kind in MESSAGES:
        assert f"`{kind}`" in text, kind
    for event in EVENTS:
        assert f"#### `{event}`" in text, event
    assert f"There are {len(EVENTS)} agent events" in text
    for method in HOST_CALLS:
        assert f"`{method}`" in text, method
    for reason in (*FRAME_ERRORS, "wrong_id", "dropped", "unauthenticated"):
        assert f"`{reason}`" in text, reason
    for permission in PERMISSIONS:
        assert f"`{permission}`" in text, permission
    assert "`ui`, `state` and `events` are always granted" in text and ALWAYS_GRANTED == {"ui", "state", "events"}


def test_calls_documented_as_returning_nil_return_nothing() -> None:
    assert {"print", "set_state", "delete_state", "send_message", "set_model", "abort"} <= set(RETURN_NOTHING)
    for name in HOST_CALLS:
        if name in AGENT_CALLS:  # answered by HostServices.agent_call (checked in tests/agent/test_ctx_calls.py)
            continue
        hints = get_type_hints(getattr(HostCallRouter, f"_call_{name}"))
        assert (hints["return"] is type(None)) == (name in RETURN_NOTHING), name


def test_hot_path_events_are_listed() -> None:
    text = after(PROTOCOL.read_text(), "<!-- hot-events -->").strip().split("\n\n", 1)[0]
    assert spans(text) == sorted(name for name, spec in EVENTS.items() if spec.hot)


def test_channel_table_matches_what_each_host_socket_accepts() -> None:
    rows = table(PROTOCOL.read_text(), "channels")
    by_channel = {spans(r["channel"])[0]: r for r in rows}
    assert set(by_channel) == {"events", "calls", "control"}
    received = {"events": host_channel.EVENT_KINDS, "calls": host_channel.CALL_KINDS,
                "control": host_channel.CONTROL_KINDS}
    for name, row in by_channel.items():
        kinds = set(spans(row["requests → replies"]))
        routed = {k for k, (channel, _, _) in KIND_ROUTES.items() if channel == name}
        assert kinds == routed, name
        assert {k for k in routed if KIND_ROUTES[k][1].startswith("extension")} == received[name], name
    assert set(KIND_ROUTES) == set(MESSAGES)


def test_schema_references_exist_in_the_committed_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    for ref in set(re.findall(r"\$defs/([A-Za-z_.<>]+)", PROTOCOL.read_text())):
        if "<" in ref:  # a pattern such as message.<kind>
            prefix = ref.split("<", 1)[0]
            assert any(d.startswith(prefix) for d in schema["$defs"]), ref
        else:
            assert ref in schema["$defs"], ref
    assert schema["x-kithost"]["protocol_versions"] == list(PROTOCOL_VERSIONS)


# --------------------------------------------------------------------------- (2) defaults, fixed values, exit statuses


def _number(cell: str) -> Any:
    """A table cell's literal: a TOML scalar (``3``, ``0.5``, ``true``), or ints separated by commas (a tuple)."""
    text = cell.replace("`", "").strip()
    if "," in text:
        return tuple(int(v) for v in text.split(","))
    return tomllib.loads(f"v = {text}")["v"]


def test_defaults_table_is_the_config() -> None:
    """Keys as the config file writes them (``[deadlines] hot``), durations with their unit (``"250ms"``)."""
    rows = table(PROTOCOL.read_text(), "defaults")
    config = HostConfig()
    for row in rows:
        key = spans(row["key"])[0]
        match = re.fullmatch(r"\[(\w+)\] (\w+)", key)
        assert match, f"{key}: write a setting as the config file does, '[section] key'"
        record = getattr(config, match[1])
        found = [f for f in dataclasses.fields(record) if file_key(f)[0] == match[2]]
        assert found, f"{key}: no such setting"
        value, unit = getattr(record, found[0].name), file_key(found[0])[1]
        cell = row["default"].replace("`", "").strip()
        shown = _to_unit(cell.strip('"'), key, unit) if unit is not None else _number(cell)
        assert shown == value, f"{key}: the document says {row['default']}, the code {value!r}"
    keys = {spans(r["key"])[0] for r in rows}
    must = {setting("deadlines", f.name) for f in dataclasses.fields(config.deadlines)}
    must |= {setting("supervision", name) for name in ("heartbeat_ms", "hang_ms", "stuck_ms", "no_retry_exit_codes")}
    must |= {setting("limits", name) for name in ("max_frame", "notify_queue", "notify_batch")}
    assert must <= keys, must - keys


def test_exit_status_table_is_the_code() -> None:
    rows = table(PROTOCOL.read_text(), "exit-statuses")
    constants = {"EXIT_USAGE": EXIT_USAGE, "EXIT_BAD_EXTENSION": EXIT_BAD_EXTENSION, "EXIT_REJECTED": EXIT_REJECTED,
                 "EXIT_SANDBOX": EXIT_SANDBOX, "EXIT_JOIN": EXIT_JOIN}
    statuses = set()
    for row in rows:
        status = int(row["status"])
        statuses.add(status)
        names = [s for s in spans(row["name"]) if s.startswith("EXIT_")]
        for name in names:
            assert constants[name] == status, name
    assert statuses == {0, *constants.values()}
    never = {int(r["status"]) for r in rows if r["retried"].startswith("never")}
    assert never == set(HostConfig().supervision.no_retry_exit_codes)


def test_fixed_values_are_the_code(new_host: NewHost, make_ext: MakeExt) -> None:
    rows = {spans(r["key"])[0]: _number(r["value"]) for r in table(PROTOCOL.read_text(), "fixed")}
    opener = Opener(b"k" * 32, frozenset({"reply"}))
    limits = opener._limits
    assert rows.pop("mac_size") == MAC_SIZE
    assert rows.pop("max_depth") == sch.MAX_DEPTH
    assert rows.pop("max_array_len") == limits["max_array_len"]
    assert rows.pop("max_map_len") == limits["max_map_len"]
    assert rows.pop("protocol_versions") == PROTOCOL_VERSIONS[-1] and len(PROTOCOL_VERSIONS) == 1
    control_max = rows.pop("control_max_frame")
    assert rows == {}, f"no check for {sorted(rows)}"
    # The frame limits as a real host sets them on its sockets (libzmq cuts a connection that sends more).
    directory = make_ext("limits", """
from ext_sdk import Extension
ext = Extension("limits")
""", [], permissions=[])
    host = new_host()
    ext = host.load(directory)
    assert ext.channel is not None
    max_frame = host.config.limits.max_frame
    assert isinstance(ext.channel.events, EventsLink) and ext.channel.events.limit == max_frame + MAC_SIZE
    assert ext.channel.calls.getsockopt(zmq.MAXMSGSIZE) == max_frame + MAC_SIZE
    assert ext.channel.control.getsockopt(zmq.MAXMSGSIZE) == control_max


def test_state_file_name_and_format(tmp_path: Path) -> None:
    text = PROTOCOL.read_text()
    assert "`s.jsonl` → `s.ext-state.json`" in text
    assert sidecar_path(Path("/x/s.jsonl")) == Path("/x/s.ext-state.json")
    assert sidecar_path(Path("/x/s")) == Path("/x/s.ext-state.json")


# --------------------------------------------------------------------------- (3) the worked examples


def test_worked_examples_are_what_the_sealer_produces() -> None:
    text = after(PROTOCOL.read_text(), "<!-- worked-example -->").split("<!-- end worked-example -->", 1)[0]
    key_hex = "".join(fenced(text, "key-hex")[0].split())
    key = bytes.fromhex(key_hex)
    assert key == bytes([1]) * 32
    envelopes = [json.loads(block) for block in fenced(text, "json")]
    bodies = ["".join(b.split()) for b in fenced(text, "msgpack-hex")]
    macs = ["".join(b.split()) for b in fenced(text, "hmac-hex")]
    assert len(envelopes) == len(bodies) == len(macs) == 2
    assert [e["k"] for e in envelopes] == ["hello", "reply"]
    for envelope, body, mac in zip(envelopes, bodies, macs, strict=True):
        fields = {k: v for k, v in envelope.items() if k not in ("k", "seq")}
        frame = Sealer(key, first_seq=envelope["seq"]).seal(envelope["k"], fields)
        assert frame[MAC_SIZE:].hex() == body, envelope["k"]
        assert frame[:MAC_SIZE].hex() == mac, envelope["k"]
        assert Opener(key, frozenset({envelope["k"]})).open(frame) == envelope
    # The byte-by-byte breakdown of the reply adds up to its body.
    breakdown = table(text, "reply-bytes")
    assert "".join("".join(spans(r["bytes"])[0].split()) for r in breakdown) == bodies[1]
    # The document's own snippet (hmac + msgpack, no SDK) reproduces the reply frame.
    snippet = fenced(text, "python")[0]
    scope: dict[str, Any] = {}
    exec(snippet, scope)
    assert scope["frame"].hex() == macs[1] + bodies[1]


# --------------------------------------------------------------------------- (1) the launch environment

RECORDER = """
import os, stat, sys
from ext_sdk import Extension

SECRET = os.environ.get("KITHOST_SECRET_FILE", "")
info = os.stat(SECRET)
with open(SECRET, "rb") as fh:
    size = len(fh.read())
stdin = os.fstat(0)
SEEN = {"env": dict(os.environ), "cwd": os.getcwd(), "secret_size": size, "secret_mode": stat.S_IMODE(info.st_mode),
        "isolated": sys.flags.isolated, "stdin_chr": stat.S_ISCHR(stdin.st_mode), "stdin_rdev": stdin.st_rdev,
        "ids": {"pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0), "pgid": os.getpgid(0)}}

ext = Extension("recorder")

@ext.on("session_start")
def record(event, ctx):
    home = os.environ["HOME"]
    SEEN["home_is_dir"] = os.path.isdir(home)
    SEEN["home_mode"] = stat.S_IMODE(os.stat(home).st_mode)
    probe = os.path.join(home, "probe")
    with open(probe, "w") as fh:
        fh.write("ok")
    SEEN["home_writable"] = open(probe).read() == "ok"
    SEEN["secret_left_after_handshake"] = os.path.exists(SECRET)
    ctx.set_state("seen", SEEN)
"""

#: Every layer off (then nothing but the boot's rlimits runs between the host and the extension).
NO_LAYERS = Sandbox(trust=TrustMode.ALL, allow_weak=True, disable=tuple(SandboxLayer))


@pytest.mark.parametrize("sandbox", [None, NO_LAYERS], ids=["sandbox-as-available", "every-layer-off"])
def test_launch_environment_is_exactly_the_documented_one(make_ext: MakeExt, new_host: NewHost, tmp_path: Path,
                                                           sandbox: Sandbox | None) -> None:
    directory = make_ext("recorder", RECORDER, ["session_start"], permissions=[])
    # [env]: the extension's own settings; a name the host sets itself is overridden by the host.
    with open(directory / "extension.toml", "a") as fh:
        fh.write('[env]\nRECORDER_MODE = "strict"\nPATH = "/nowhere"\nLANG = "xx_XX"\n')
    host = new_host(HostConfig(sandbox=sandbox) if sandbox else None)
    ext = host.load(directory)
    assert ext.channel is not None and ext.confined is not None
    assert host.emit("session_start", {"session_id": "s1"}).handlers == 1
    assert host.flush(10)
    seen = host.state.get("recorder", "seen")
    assert seen is not None, ext.log.tail()
    env: dict[str, str] = seen["env"]
    endpoints = ext.channel.endpoints
    layers = " ".join(ext.confined.layers)

    rows = table(PROTOCOL.read_text(), "environment")
    documented: dict[str, dict[str, str]] = {}
    for row in rows:
        names = spans(row["variable"])
        if len(names) == 1 and re.fullmatch(r"[A-Z_]+", names[0]):
            documented[names[0]] = row
    assert "[env]" in " ".join(r["variable"] for r in rows), "the table must have the manifest's [env] row"

    expected_present = {name for name, row in documented.items() if row["present"] == "always"}
    conditional = {name for name, row in documented.items() if row["present"] != "always"}
    assert conditional == set(), conditional  # the same environment at every isolation level
    assert set(env) == expected_present | {"RECORDER_MODE"}, (
        f"undocumented: {sorted(set(env) - expected_present - {'RECORDER_MODE'})}, "
        f"missing: {sorted(expected_present - set(env))}")
    assert env["RECORDER_MODE"] == "strict"
    assert ENV_PLAN not in env  # the boot plan is removed before extension code runs

    path_dirs = list(dict.fromkeys([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]))
    derived = {
        "PATH": os.pathsep.join(path_dirs),
        "HOME": str(endpoints.work_dir),
        "TMPDIR": str(endpoints.work_dir),
        "KITHOST_EVENTS": endpoints.events,
        "KITHOST_CALLS": endpoints.calls,
        "KITHOST_CONTROL": endpoints.control,
        "KITHOST_SECRET_FILE": str(endpoints.secret_file),
        "KITHOST_EXTENSION": "recorder",
        "KITHOST_EXTENSION_VERSION": "0.1.0",
        "KITHOST_EXTENSION_PERMISSIONS": "",
        "KITHOST_PROTOCOL_VERSIONS": ",".join(str(v) for v in PROTOCOL_VERSIONS),
        "KITHOST_RUNTIME": str(endpoints.directory.parent),
    }
    for name, row in documented.items():
        if name not in env:
            continue
        literal = only_span(row["value"])
        if literal is not None:
            assert env[name] == literal, f"{name}: the document says {literal!r}, the extension saw {env[name]!r}"
        elif name == ENV_ACTIVE:
            assert env[name] and all(part.strip() for part in env[name].split("; "))
        else:
            assert name in derived, f"no check for the documented value of {name}: {row['value']}"
            assert env[name] == derived[name], f"{name}: {env[name]!r} != {derived[name]!r}"
    assert env["KITHOST_PROTOCOL_VERSIONS"] == ",".join(str(v) for v in PROTOCOL_VERSIONS)
    for name in ("KITHOST_EVENTS", "KITHOST_CALLS", "KITHOST_CONTROL"):
        assert env[name].startswith("ipc://")

    assert seen["cwd"] == str(directory.resolve())  # the working directory is the extension's folder
    assert seen["secret_size"] == 32  # 32 raw bytes
    assert seen["secret_mode"] == (0o640 if "uid " in layers else 0o600)
    assert seen["secret_left_after_handshake"] is False
    assert seen["home_is_dir"] and seen["home_writable"] and seen["home_mode"] == 0o700
    assert seen["isolated"] == 1  # runtime python: the interpreter runs with -I
    # §2.1: stdin is /dev/null. A new session and process group, no controlling terminal: the process leads them,
    # or under bubblewrap its parent does (bubblewrap's process inside the sandbox, pid 1 of its pid namespace).
    assert seen["stdin_chr"] and seen["stdin_rdev"] == os.stat("/dev/null").st_rdev, seen
    ids = seen["ids"]
    leader = 1 if layers.startswith("bwrap") else ids["pid"]
    assert ids["sid"] == ids["pgid"] == leader, (ids, layers)
    if leader == 1:
        assert ids["ppid"] == 1
    assert ext.process is not None
    tree = [psutil.Process(ext.process.pid), *psutil.Process(ext.process.pid).children(recursive=True)]
    for proc in tree:  # seen from the host: not the host's session, and no controlling terminal
        assert os.getsid(proc.pid) != os.getsid(0) and proc.terminal() is None, proc
    assert os.getsid(ext.process.pid) == os.getpgid(ext.process.pid) == ext.process.pid

    # State written with set_state is on disk, in the documented format, before the answer arrives.
    on_disk = json.loads(host.config.state_path.read_text())  # type: ignore[union-attr]
    assert on_disk["kithost_state"] == 1 and on_disk["extensions"]["recorder"]["seen"]["cwd"] == seen["cwd"]


# --------------------------------------------------------------------------- a raw extension, from the document alone

RAW = r'''
"""A kithost extension without the SDK: pyzmq + msgpack + hmac, written from docs/PROTOCOL.md."""
import hashlib, hmac, json, os, sys, threading, time
import msgpack, zmq

MODE = os.environ["RAW_MODE"]
with open(os.environ["KITHOST_SECRET_FILE"], "rb") as fh:
    KEY = fh.read()
ctx = zmq.Context()
events = ctx.socket(zmq.REP)
events.connect(os.environ["KITHOST_EVENTS"])
calls = ctx.socket(zmq.REQ)
calls.connect(os.environ["KITHOST_CALLS"])
control = ctx.socket(zmq.REP)
control.connect(os.environ["KITHOST_CONTROL"])
REPORT = {"requests": [], "pings": [], "calls": [], "seq_errors": []}


def say(obj):
    print(json.dumps(obj), file=sys.stderr, flush=True)


class Sealer:
    def __init__(self, key):
        self.key, self.seq = key, 0

    def __call__(self, kind, **fields):
        self.seq += 1
        body = msgpack.packb({"k": kind, "seq": self.seq, **fields})
        return hmac.new(self.key, body, hashlib.sha256).digest() + body


class Opener:
    def __init__(self):
        self.last = 0

    def __call__(self, frame):
        mac, body = frame[:32], frame[32:]
        if not hmac.compare_digest(mac, hmac.new(KEY, body, hashlib.sha256).digest()):
            raise ValueError("bad mac")
        msg = msgpack.unpackb(body)
        if msg["seq"] <= self.last:
            REPORT["seq_errors"].append([msg["seq"], self.last])
        self.last = msg["seq"]
        return msg


seal_calls, open_calls = Sealer(KEY), Opener()
subscriptions = [{"event": "tool_call", "priority": 50},
                 {"event": "session_start", "priority": 50},
                 {"event": "tool_result", "priority": 50, "deadline_ms": 999999},
                 {"event": "agent_end", "priority": 50, "deadline_ms": 0}]
tools = [{"name": "raw_echo", "description": "Says hi.", "parameters": {"type": "object", "properties": {}}}]
hello = {"versions": [99] if MODE == "version" else [1], "name": os.environ["KITHOST_EXTENSION"],
         "version": "0.1.0", "sdk": "raw/1", "subscriptions": subscriptions, "tools": tools, "commands": [],
         "permissions": ["conversation"]}
sealer = Sealer(b"\x00" * 32) if MODE == "badmac" else seal_calls
calls.send(sealer("hello", **hello))
answer = open_calls(calls.recv())
if answer["k"] == "reject":
    say({"answer": answer})
    sys.exit(4)
REPORT["welcome"] = answer
REPORT["welcome_at"] = time.monotonic()


def serve_control():
    seal, opener = Sealer(KEY), Opener()
    while True:
        msg = opener(control.recv())
        if msg["k"] == "ping":
            REPORT["pings"].append([time.monotonic(), msg["id"]])
            control.send(seal("pong", id=msg["id"], busy=False, busy_ms=0))
        else:
            REPORT["shutdown"] = msg
            control.send(seal("bye", id=msg["id"]))
            time.sleep(0.05)
            os._exit(0)


threading.Thread(target=serve_control, daemon=True).start()


def call(method, args, event_id, call_id, key=KEY):
    sealer = seal_calls if key == KEY else Sealer(key)
    calls.send(sealer("call", id=call_id, event_id=event_id, method=method, args=args))
    return open_calls(calls.recv())


seal_events, open_events = Sealer(KEY), Opener()
while True:
    msg = open_events(events.recv())
    record = {"k": msg["k"], "id": msg["id"], "keys": sorted(msg)}
    if msg["k"] == "invoke":
        record["name"] = msg["name"]
        REPORT["requests"].append(record)
        events.send(seal_events("reply", id=msg["id"], results=[{"ok": True, "result": {"content": "hi"}}]))
        continue
    if msg["k"] == "batch":
        items = msg["events"]
        record["dropped"] = msg["dropped"]
    else:
        items = [{key: msg[key] for key in ("event", "handler", "data") if key in msg}]
    record["items"] = [{"event": i["event"], "keys": sorted(i), "handler": i.get("handler"),
                        "session": i["data"].get("session_id")} for i in items]
    REPORT["requests"].append(record)
    results = []
    for item in items:
        if item["event"] == "session_start":
            REPORT["calls"].append(["in batch", msg["id"],
                                    call("set_state", {"key": "batch", "value": msg["id"]}, msg["id"], 501)])
            results.append({"ok": True, "result": None})
        elif item["event"] == "tool_call":
            command = item["data"]["parsed_args"]["command"]
            if command == "calls":
                REPORT["calls"].append(["good", msg["id"], call("list_state", {}, msg["id"], 4242)])
                REPORT["calls"].append(["stale", msg["id"], call("list_state", {}, msg["id"] - 1, 4243)])
                REPORT["calls"].append(["bad mac", msg["id"], call("list_state", {}, msg["id"], 4244,
                                                                    key=b"\x00" * 32)])
                REPORT["calls"].append(["not granted", msg["id"], call("send_message", {"text": "hi"}, msg["id"],
                                                                        4245)])
            elif command == "report":
                call("set_state", {"key": "report", "value": REPORT}, msg["id"], 9000)
            results.append({"ok": True, "result": {"block": True, "reason": "raw says no"}})
        else:
            results.append({"ok": True, "result": None})
    events.send(seal_events("reply", id=msg["id"], results=results))
'''


def _raw_ext(make_ext: MakeExt, name: str, mode: str) -> Path:
    directory = make_ext(name, "", ["tool_call", "session_start", "tool_result", "agent_end"],
                         runtime="command", command=[sys.executable, "raw.py"], files={"raw.py": RAW})
    with open(directory / "extension.toml", "a") as fh:
        fh.write(f'[env]\nRAW_MODE = "{mode}"\n')
    return directory


def test_a_raw_extension_written_from_the_document_runs_under_a_real_host(make_ext: MakeExt,
                                                                          new_host: NewHost) -> None:
    host = new_host()
    ext = host.load(_raw_ext(make_ext, "raw", "good"))

    # Notify events always arrive in a batch (even a batch of one), their items without a handler key.
    host.emit("session_start", {"session_id": "s1"})
    assert host.flush(10)
    # A gate event: its handler index, the result combined by the host.
    out = host.emit("tool_call", tool_call("calls"))
    assert out.stopped and out.reason == "raw says no" and out.stop is not None and out.stop.by == "raw"
    time.sleep(3.4)  # heartbeats: one ping every supervision.heartbeat_ms
    host.emit("tool_call", tool_call("report"))
    report = host.state.get("raw", "report")
    assert report is not None, ext.log.tail()

    # welcome: the chosen version, what was granted, the deadline in force for each subscription.
    welcome = report["welcome"]
    assert welcome["version"] == 1
    assert welcome["granted"] == ["conversation", "events", "state", "ui"]
    d = host.config.deadlines
    assert welcome["deadlines_ms"] == [d.hot_ms, d.notify_ms, d.max_ms, d.min_ms]

    requests = report["requests"]
    batch, gate = requests[0], requests[1]
    assert batch["k"] == "batch" and batch["dropped"] == 0 and batch["keys"] == ["dropped", "events", "id", "k", "seq"]
    assert batch["items"] == [{"event": "session_start", "keys": ["data", "event"], "handler": None, "session": "s1"}]
    assert gate["k"] == "event" and gate["items"][0]["handler"] == 0
    assert gate["keys"] == ["data", "event", "handler", "id", "k", "seq"]
    ids = [r["id"] for r in requests]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and min(ids) >= 1
    assert report["seq_errors"] == []

    calls = {label: (event_id, answer) for label, event_id, answer in report["calls"]}
    # A call inside a batch carries the batch's id.
    assert calls["in batch"][0] == batch["id"] and calls["in batch"][1]["ok"] is True
    assert host.state.get("raw", "batch") == batch["id"]
    # The extension allocates call ids; the answer echoes them.
    good = calls["good"][1]
    assert good["k"] == "answer" and good["id"] == 4242 and good["ok"] is True and good["value"] == ["batch"]
    stale = calls["stale"][1]
    assert stale["id"] == 4243 and stale["ok"] is False and "is no longer being handled" in stale["error"]
    bad = calls["bad mac"][1]
    assert bad["id"] == 0 and bad["ok"] is False and bad["error"].startswith("rejected: bad_mac")
    denied = calls["not granted"][1]
    assert denied["ok"] is False and "permission denied" in denied["error"] and "'agent'" in denied["error"]
    assert ext.channel is not None and ext.channel.frame_errors["bad_mac"] == 1

    # Heartbeats: a ping every heartbeat_ms from the handshake on.
    pings = [at for at, _ in report["pings"]]
    assert len(pings) >= 3, pings
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    beat = host.config.supervision.heartbeat_ms / 1000
    assert all(0.8 * beat <= g <= 1.6 * beat for g in gaps), gaps
    assert 0.8 * beat <= pings[0] - report["welcome_at"] <= 1.6 * beat
    assert statistics.median(gaps) == pytest.approx(beat, abs=0.2)

    # Shutdown: the polite request is answered with bye and the process exits 0.
    host.close()
    assert ext.last_shutdown is ShutdownRung.POLITE
    assert ext.last_exit == "exited with status 0"


# --------------------------------------------------------------------------- (6.2) batches on the wire

#: An observer that keeps the notify delivery thread busy: its ``agent_start`` handler says it started
#: (``entered``), then runs until the file ``release`` appears in its folder (bounded).
BLOCKER = """
import os, time
from ext_sdk import Extension

ext = Extension("blocker", permissions=["conversation"])  # agent_start carries the prompt

@ext.on("agent_start", deadline_ms=20000)
def hold(event, ctx):
    ctx.set_state("entered", True)
    end = time.monotonic() + 15
    while not os.path.exists("release") and time.monotonic() < end:
        time.sleep(0.01)
"""


class HeldPump:
    """The host's notify delivery thread held inside one batch (to :class:`BLOCKER`) until :meth:`release`.

    While it is held, notify events for other extensions stay queued: nothing else delivers them, so what the
    next request to an extension carries is decided by the host's composition rule alone, not by a race.
    """

    def __init__(self, host: ExtensionHost, make_ext: MakeExt) -> None:
        self.host = host
        self.directory = make_ext("blocker", BLOCKER, ["agent_start"])
        host.load(self.directory)
        host.emit("agent_start", {"prompt": "hold"})
        end = time.monotonic() + 10
        while host.state.get("blocker", "entered") is None:
            assert time.monotonic() < end, host.extension("blocker").log.tail()
            time.sleep(0.01)

    def release(self) -> None:
        (self.directory / "release").write_text("")
        assert self.host.flush(15)


def _sessions(n: int, first: int = 0) -> list[str]:
    return [f"n{i}" for i in range(first, first + n)]


def _emit_sessions(host: ExtensionHost, names: list[str]) -> None:
    for name in names:
        host.emit("session_start", {"session_id": name})


def _raw_report(host: ExtensionHost) -> dict[str, Any]:
    host.emit("tool_call", tool_call("report"))
    report = host.state.get("raw", "report")
    assert report is not None, host.extension("raw").log.tail()
    return report  # type: ignore[no-any-return]


def _notify_items(sessions: list[str]) -> list[dict[str, Any]]:
    return [{"event": "session_start", "keys": ["data", "event"], "handler": None, "session": name}
            for name in sessions]


def test_queued_notify_events_ride_ahead_of_a_gate_and_as_their_own_batch_before_an_invoke(
        make_ext: MakeExt, new_host: NewHost) -> None:
    """§6.2: the gate is the last item of one batch (the only one with ``handler``) after the whole queue —
    more than ``notify_batch`` items, which caps only the delivery thread; before an ``invoke`` the queue goes
    as a batch of its own; the delivery thread sends at most ``notify_batch`` items per batch, oldest first."""
    cap = 3
    host = new_host(HostConfig(limits=dataclasses.replace(Limits(), notify_batch=cap)))
    host.load(_raw_ext(make_ext, "raw", "good"))
    held = HeldPump(host, make_ext)

    ahead = _sessions(cap + 2)  # the whole queue rides with the gate, however long
    _emit_sessions(host, ahead)
    out = host.emit("tool_call", tool_call("gate"))
    assert out.stopped and out.reason == "raw says no"  # the gate's result is the reply's last result
    before_invoke = _sessions(2, first=len(ahead))
    _emit_sessions(host, before_invoke)
    assert host.invoke_tool("raw", "raw_echo", {}) == ("hi", False)
    delivered = _sessions(2 * cap + 1, first=len(ahead) + len(before_invoke))
    _emit_sessions(host, delivered)
    held.release()
    requests = _raw_report(host)["requests"][:-1]  # the last one is the report's own tool_call

    gate = requests[0]
    assert gate["k"] == "batch" and gate["dropped"] == 0, gate
    assert gate["items"][:-1] == _notify_items(ahead)
    assert gate["items"][-1] == {"event": "tool_call", "keys": ["data", "event", "handler"], "handler": 0,
                                 "session": None}
    assert [item["handler"] for item in gate["items"]].count(None) == len(ahead)

    backlog, invoke = requests[1], requests[2]
    assert backlog["k"] == "batch" and backlog["items"] == _notify_items(before_invoke) and backlog["dropped"] == 0
    assert invoke["k"] == "invoke" and invoke["name"] == "raw_echo" and invoke["id"] > backlog["id"]

    pumped = requests[3:]
    assert [r["k"] for r in pumped] == ["batch"] * 3, pumped
    assert [len(r["items"]) for r in pumped] == [cap, cap, 1]
    assert [item for r in pumped for item in r["items"]] == _notify_items(delivered)
    ids = [r["id"] for r in requests]
    assert ids == sorted(ids)


def test_dropped_counts_the_events_a_full_queue_refused(make_ext: MakeExt, new_host: NewHost) -> None:
    """§6.2: with ``[limits] notify_queue`` events queued, later ones are dropped, and the next batch's
    ``dropped`` says how many; the count starts again from zero after it was reported."""
    queue = 2
    host = new_host(HostConfig(limits=dataclasses.replace(Limits(), notify_queue=queue)))
    host.load(_raw_ext(make_ext, "raw", "good"))
    held = HeldPump(host, make_ext)

    sent = _sessions(queue + 3)
    _emit_sessions(host, sent)
    host.emit("tool_call", tool_call("gate"))
    later = _sessions(1, first=len(sent))
    _emit_sessions(host, later)
    held.release()
    requests = _raw_report(host)["requests"][:-1]

    gate, pumped = requests
    assert gate["k"] == "batch" and gate["dropped"] == len(sent) - queue, gate
    assert gate["items"][:-1] == _notify_items(sent[:queue])  # the oldest were kept
    assert gate["items"][-1]["handler"] == 0
    assert pumped["k"] == "batch" and pumped["dropped"] == 0 and pumped["items"] == _notify_items(later)


@pytest.mark.parametrize(("mode", "reason"), [
    ("badmac", "bad handshake frame: bad_mac: signature does not match"),
    ("version", "no common protocol version (extension speaks [99], host speaks [1])"),
])
def test_a_refused_handshake_is_answered_with_reject(make_ext: MakeExt, new_host: NewHost, mode: str,
                                                     reason: str) -> None:
    host = new_host()
    with pytest.raises(ExtensionStartError) as failed:
        host.load(_raw_ext(make_ext, f"raw-{mode}", mode))
    assert reason in failed.value.reason
    ext = host.extension(f"raw-{mode}")
    answers = [json.loads(line) for _, stream, line in ext.log.lines() if line.startswith('{"answer"')]
    assert answers, ext.log.tail()
    answer = answers[0]["answer"]
    assert answer["k"] == "reject" and answer["seq"] == 1 and reason in answer["reason"]
    assert ext.state.value == "dead"  # a first start that fails is not retried


# --------------------------------------------------------------------------- (5) MANIFEST.md


def test_manifest_doc_lists_exactly_the_manifest_keys() -> None:
    text = MANIFEST.read_text()
    rows = table(text, "manifest-keys")
    keys = {spans(r["key"])[0]: r for r in rows}
    assert set(keys) == set(_ManifestFile.model_fields), set(keys) ^ set(_ManifestFile.model_fields)
    access = {spans(r["key"])[0]: r for r in table(text, "access-keys")}
    assert set(access) == {f.name for f in dataclasses.fields(Access)}
    for name, field in _ManifestFile.model_fields.items():
        literal = only_span(keys[name]["default"])
        if field.is_required():
            assert keys[name]["default"].startswith("required"), name
        elif field.default is None:
            assert keys[name]["default"].startswith("none"), name
        elif name == "access":
            assert literal == "{}" and field.default == Access()
        else:
            assert literal is not None, f"{name}: default must be one TOML literal"
            documented = tomllib.loads(f"v = {literal}")["v"]
            assert documented == field.default, f"{name}: {documented!r} != {field.default!r}"
    for f in dataclasses.fields(Access):
        literal = only_span(access[f.name]["default"])
        assert literal is not None
        assert tomllib.loads(f"v = {literal}")["v"] == (list(f.default) if isinstance(f.default, tuple)
                                                        else f.default), f.name


def test_manifest_doc_examples_load(tmp_path: Path) -> None:
    blocks = fenced(MANIFEST.read_text(), "toml")
    assert len(blocks) >= 4
    runtimes = set()
    for i, block in enumerate(blocks):
        directory = tmp_path / f"ex{i}"
        directory.mkdir()
        raw = tomllib.loads(block)
        if raw.get("main"):
            (directory / raw["main"]).write_text("")
        (directory / "extension.toml").write_text(block)
        manifest = load_manifest(directory)
        runtimes.add(manifest.runtime)
    assert runtimes == {"python", "node", "command"}


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_generated()
        print(f"rewrote the generated sections of {PROTOCOL.relative_to(ROOT)}")
    else:
        for name, render in GENERATED.items():
            print(f"<!-- {name} -->\n{render()}")
