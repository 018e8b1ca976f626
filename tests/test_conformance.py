"""The conformance kit (``kithost conformance``) on real extension processes, sandboxed as the host runs them.

* The bundled examples (Python, and JavaScript where Node and the JS SDK's
  packages are installed) pass every required check.
* Deliberately broken extensions — a raw-protocol one broken one way at a
  time (``tests/fixtures/conformance/raw_ext.py --fault ...``) and two SDK
  ones — fail exactly the checks they should, with a message that says what
  to fix. The same raw extension unbroken passes everything: the kit does
  not depend on the Python SDK's choices.
* The CLI: a table and exit status 0 for a conforming folder, ``--json`` for
  a command (``-- COMMAND...``), ``--known-failures`` (known failures do not
  fail the run; one that passes is reported), exit status 1 on a failure.
* No process is left behind (``tests/conftest.py`` checks after every test),
  and the kit's private directory is gone after a run.

Runs are concurrent where they share nothing (a few at a time: each is two
or more sandboxed processes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import EXTENSIONS, FIXTURES, ROOT

from ext_sdk.events import EVENTS
from host import Deadlines, HostConfig
from host.config import Sandbox, Supervision
from host.conformance import CHECKS, Report, Status, describe, load_known_failures, parse_target, run_kit
from host.conformance.catalog import CheckResult
from host.conformance.samples import sample_arguments, sample_payload
from host.errors import ExtensionStartError, HostError
from host.exthost.host import runtime_base
from host.exthost.manifest import load_manifest
from host.exthost.sandbox.confine import Confiner

RAW = FIXTURES / "conformance" / "raw_ext.py"
#: The sandbox as the operator's default, except that a machine with weak isolation may still run tests.
SANDBOX = Sandbox(allow_weak=True)
#: Short heartbeat and shutdown waits: the broken extensions wait them out.
FAST = HostConfig(sandbox=SANDBOX, supervision=replace(Supervision(), heartbeat_ms=400),
                  deadlines=replace(Deadlines(), shutdown_ms=800))
BUNDLED_PY = sorted(p.parent for p in EXTENSIONS.glob("*/extension.toml") if load_manifest(p).runtime == "python")
BUNDLED_JS = sorted(p.parent for p in EXTENSIONS.glob("*/extension.toml") if load_manifest(p).runtime == "node")
JS_READY = shutil.which("node") is not None and (ROOT / "ext_sdk" / "js" / "node_modules").is_dir()

#: fault → (the checks that fail, a phrase each of their messages holds: what to fix).
RAW_FAULTS: dict[str, tuple[set[str], dict[str, str]]] = {
    "none": (set(), {}),
    "bad-mac": ({"event:tool_call", "batch:tool_call", "event:agent_end", "batch:agent_end", "notify.batch"},
                {"event:tool_call": "HMAC-SHA256(key, body)", "notify.batch": "bad_mac"}),
    "wrong-shape": ({"event:tool_call", "batch:tool_call"},
                    {"event:tool_call": "result.block: expected bool, got string",
                     "batch:tool_call": "must match $defs/event.tool_call.result"}),
    "no-control": ({"heartbeat.idle", "heartbeat.in-flight", "bad-frames.control", "shutdown.bye", "shutdown.exit"},
                   {"heartbeat.idle": "answer ping with pong", "heartbeat.in-flight": "thread of its own",
                    "bad-frames.control": "must answer every frame", "shutdown.bye": "answer shutdown with bye",
                    "shutdown.exit": "exit after answering bye"}),
    # Control served only between requests: no pong while the kit holds back its handler's host call.
    "one-thread": ({"heartbeat.in-flight"},
                   {"heartbeat.in-flight": "its handler waiting for the answer to its get_state call: answer control "
                                           "from a thread of its own"}),
    "version": ({"handshake.version"}, {"handshake.version": "offer 1"}),
    "silent": ({"event:agent_end", "batch:agent_end", "notify.batch"},
               {"event:agent_end": "answer every events request with exactly one reply"}),
    "wrong-event-id": ({"calls.event-id"}, {"calls.event-id": "set event_id to the id of the events request"}),
    "crash": ({"handshake.hello", "version-mismatch.exit"},
              {"handshake.hello": "exited with status 1 before sending hello",
               "version-mismatch.exit": "exit with status 4"}),
}

SDK_WRONG_SHAPE = """
    from ext_sdk import Extension

    ext = Extension("sdk-wrong-shape", permissions=["conversation"])

    @ext.on("tool_call", deadline_ms=500)
    def gate(event, ctx):
        return {"block": "yes"}
"""
SDK_MISNAMED = """
    from ext_sdk import Extension

    ext = Extension("not-the-manifest-name", permissions=["conversation"])

    @ext.on("agent_end")
    def seen(event, ctx):
        return None
"""
#: name → (source, events, the checks that fail, phrases).
SDK_BROKEN: dict[str, tuple[str, list[str], set[str], dict[str, str]]] = {
    "sdk-wrong-shape": (SDK_WRONG_SHAPE, ["tool_call"], {"event:tool_call", "batch:tool_call"},
                        {"event:tool_call": "returned a bad result for 'tool_call'"}),
    "sdk-misnamed": (SDK_MISNAMED, ["agent_end"], {"handshake.name"},
                     {"handshake.name": "use the manifest's name"}),
}


def failed(report: Report) -> set[str]:
    return {r.id for r in report.results if r.status is Status.FAIL}


def explain(report: Report) -> str:
    return "\n" + report.table()


def raw_extension(base: Path, fault: str) -> Path:
    """An extension folder running the raw fixture with ``fault``."""
    directory = base / f"raw-{fault}"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(RAW, directory / "raw_ext.py")
    (directory / "extension.toml").write_text(textwrap.dedent(f"""\
        name = "raw-{fault}"
        version = "0.0.1"
        runtime = "command"
        command = {json.dumps([sys.executable, "raw_ext.py", "--fault", fault])}
        events = ["tool_call", "agent_end"]
        permissions = ["conversation"]
        """))
    return directory


def sdk_extension(base: Path, name: str, source: str, events: list[str]) -> Path:
    directory = base / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text(textwrap.dedent(source))
    (directory / "extension.toml").write_text(f'name = "{name}"\nruntime = "python"\nmain = "main.py"\n'
                                              f"events = {json.dumps(events)}\npermissions = [\"conversation\"]\n")
    return directory


def run_all(targets: dict[str, Path], config: HostConfig) -> dict[str, Report]:
    """Run the kit on every target, three at a time."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {key: pool.submit(run_kit, parse_target([str(path)]), config) for key, path in targets.items()}
        return {key: future.result(timeout=120) for key, future in futures.items()}


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Report]]:
    base = tmp_path_factory.mktemp("conformance")
    targets = {fault: raw_extension(base, fault) for fault in RAW_FAULTS}
    targets |= {name: sdk_extension(base, name, source, events) for name, (source, events, _, _) in
                SDK_BROKEN.items()}
    yield run_all(targets, FAST)


# --------------------------------------------------------------------------- the examples


@pytest.fixture(scope="module")
def examples() -> dict[str, Report]:
    """Every bundled example through the kit, with the default deadlines (JavaScript ones where they can run)."""
    targets = {path.name: path for path in BUNDLED_PY + (BUNDLED_JS if JS_READY else [])}
    return run_all(targets, HostConfig(sandbox=SANDBOX))


def assert_example_passes(name: str, report: Report) -> None:
    assert report.ok, f"{name}:{explain(report)}"
    manifest = load_manifest(EXTENSIONS / name)
    for event in manifest.events:  # every declared subscription got its event, alone and in a batch
        assert report.result(f"event:{event}").status is Status.PASS, explain(report)
        assert report.result(f"batch:{event}").status is Status.PASS, explain(report)
    for check in ("handshake.hello", "heartbeat.idle", "bad-frames.bad-mac",
                  "bad-frames.replay", "bad-frames.garbage", "bad-frames.control", "shutdown.bye", "shutdown.exit",
                  "version-mismatch.exit", "version-mismatch.stderr"):
        assert report.result(check).status is Status.PASS, f"{name} {check}:{explain(report)}"
    # A pong before the reply: certain while a host call is held back, else passed only when the ping won the race.
    in_flight = report.result("heartbeat.in-flight")
    if in_flight.status is not Status.PASS:
        assert in_flight.status is Status.SKIP, explain(report)
        assert "not observed: the handler answered before the ping was read" in in_flight.why, explain(report)
        assert "before its reply" not in in_flight.why
    assert report.launches == 2, explain(report)  # nothing disturbed the main launch


@pytest.mark.parametrize("name", [p.name for p in BUNDLED_PY])
def test_bundled_python_examples_pass(name: str, examples: dict[str, Report]) -> None:
    assert len(BUNDLED_PY) >= 4
    assert_example_passes(name, examples[name])


def test_a_pong_is_observed_while_a_handler_runs(examples: dict[str, Report]) -> None:
    usage = examples["usage_budget"]  # its handlers call the host: the kit holds one back and pings
    assert usage.result("heartbeat.busy").status is Status.PASS, explain(usage)
    assert usage.result("calls.event-id").status is Status.PASS, explain(usage)
    in_flight = usage.result("heartbeat.in-flight")
    assert in_flight.status is Status.PASS, explain(usage)
    assert "its handler waiting for the answer to its" in in_flight.why


@pytest.mark.skipif(not JS_READY, reason="node or ext_sdk/js/node_modules is missing: run `make` first")
@pytest.mark.parametrize("name", [p.name for p in BUNDLED_JS])
def test_bundled_javascript_examples_pass(name: str, examples: dict[str, Report]) -> None:
    assert_example_passes(name, examples[name])


# --------------------------------------------------------------------------- broken extensions


@pytest.mark.parametrize("fault", sorted(RAW_FAULTS))
def test_raw_extension_fails_exactly_the_checks_it_should(fault: str, broken: dict[str, Report]) -> None:
    report = broken[fault]
    expected, phrases = RAW_FAULTS[fault]
    assert failed(report) == expected, explain(report)
    assert report.ok is (not expected)
    for check, phrase in phrases.items():
        assert phrase in report.result(check).why, explain(report)


@pytest.mark.parametrize("name", sorted(SDK_BROKEN))
def test_sdk_extension_fails_exactly_the_checks_it_should(name: str, broken: dict[str, Report]) -> None:
    report = broken[name]
    _, _, expected, phrases = SDK_BROKEN[name]
    assert failed(report) == expected, explain(report)
    for check, phrase in phrases.items():
        assert phrase in report.result(check).why, explain(report)


def test_what_follows_a_broken_part_is_skipped_with_the_reason(broken: dict[str, Report]) -> None:
    # No request got a valid reply: recovery after a bad frame cannot be judged.
    bad_mac = broken["bad-mac"]
    assert bad_mac.result("bad-frames.replay").status is Status.SKIP
    assert "no request got a correct reply" in bad_mac.result("bad-frames.replay").why
    # A refused handshake: nothing else can run, and the reason names the failing check.
    version = broken["version"]
    skipped = {r.id for r in version.results if r.status is Status.SKIP}
    assert {"event:tool_call", "notify.batch", "heartbeat.idle", "shutdown.exit"} <= skipped
    assert "see handshake.version" in version.result("shutdown.exit").why
    # ... while the version-mismatch launch of its own still ran.
    assert version.result("version-mismatch.exit").status is Status.PASS
    # No pong at all: whether a pong says busy is not observable.
    assert broken["no-control"].result("heartbeat.busy").status is Status.SKIP
    # No pong while its handler ran: heartbeat.in-flight says so; busy cannot be judged.
    one_thread = broken["one-thread"].result("heartbeat.busy")
    assert one_thread.status is Status.SKIP and "see heartbeat.in-flight" in one_thread.why


def test_a_handler_that_never_answers_fails_only_its_own_checks(broken: dict[str, Report]) -> None:
    report = broken["silent"]
    # Each timeout left the handler running, so the next scenario got a fresh launch (and handshake).
    assert report.launches == 5, explain(report)
    assert report.result("event:tool_call").status is Status.PASS
    assert report.result("heartbeat.busy").status is Status.PASS  # held back its get_state call: busy=true
    assert report.result("shutdown.exit").status is Status.PASS


def test_the_unbroken_raw_extension_exercises_every_check(broken: dict[str, Report]) -> None:
    report = broken["none"]
    statuses = {r.id: r.status for r in report.results}
    assert set(CHECKS) <= set(statuses), "a fixed check did not run"
    assert {check for check, status in statuses.items() if status is not Status.PASS} == set(), explain(report)
    assert all(describe(r.id) for r in report.results)


# --------------------------------------------------------------------------- report and known failures


def test_known_failures_do_not_fail_the_run_and_fixed_ones_are_reported(tmp_path: Path,
                                                                        broken: dict[str, Report]) -> None:
    known = tmp_path / "known-failures.txt"
    known.write_text("# wrong shape on purpose\nevent:tool_call\nbatch:tool_call  # both\n\nshutdown.bye\n"
                     "no.such.check\n")
    report = broken["wrong-shape"]
    assert not report.ok
    report.known, report.known_file = load_known_failures(known), str(known)
    try:
        assert report.ok
        assert report.fixed == ["shutdown.bye"] and report.unknown == ["no.such.check"]
        table = report.table()
        assert "known failure shutdown.bye passes now: remove it from" in table
        assert "known failure no.such.check is not a check of this run" in table
        assert report.summary()["known"] == 2 and report.summary()["fail"] == 0
    finally:
        report.known, report.known_file = frozenset(), None


def test_an_advisory_check_that_fails_does_not_fail_the_run() -> None:
    results = [CheckResult("handshake.hello", Status.PASS, "ok"),
               CheckResult("version-mismatch.stderr", Status.FAIL, "wrote nothing")]
    report = Report("t", "n", "1", "sdk", results, 0.1, 1)
    assert report.ok and report.summary()["warn"] == 1
    assert "version-mismatch.stderr  warn" in report.table()


def test_unreadable_known_failures_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="cannot read the known-failures file"):
        load_known_failures(tmp_path / "missing.txt")


# --------------------------------------------------------------------------- the CLI


def kithost(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[sandbox]\nallow_weak = true\n[supervision]\nheartbeat = "400ms"\n'
                    '[deadlines]\nshutdown = "800ms"\n')
    return path


def test_cli_table_and_exit_status_for_a_conforming_folder(config_file: Path) -> None:
    out = kithost("--config", str(config_file), "conformance", "extensions/permission_gate")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("kithost conformance: permission-gate 1.0.0 (python/")
    for check in ("handshake.hello", "event:tool_call", "batch:tool_call", "heartbeat.in-flight",
                  "bad-frames.replay", "shutdown.exit", "version-mismatch.exit"):
        assert f"  {check} " in out.stdout
    assert out.stdout.rstrip().splitlines()[-1].endswith("→ PASS")


def command_dir(tmp_path: Path) -> Path:
    """A folder holding the raw fixture, readable by others (pytest's own tmp dirs are 0700: a dedicated uid
    could not read them)."""
    directory = tmp_path / "raw"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    shutil.copy(RAW, directory / "raw_ext.py")
    return directory


def test_cli_json_for_a_command_with_known_failures(tmp_path: Path, config_file: Path) -> None:
    cwd = command_dir(tmp_path)
    known = tmp_path / "known.txt"
    known.write_text("event:tool_call\nbatch:tool_call\nshutdown.bye\n")
    out = kithost("--config", str(config_file), "conformance", "--json", "--known-failures", str(known), "--",
                  sys.executable, "raw_ext.py", "--fault", "wrong-shape", cwd=cwd)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) == {"kit", "protocol_versions", "target", "extension", "ok", "seconds", "launches", "summary",
                        "checks", "known_failures"}
    assert doc["ok"] is True and doc["protocol_versions"] == [1]
    assert doc["extension"] == {"name": "raw_ext", "version": "0.0.1", "sdk": "raw/test"}  # learned from hello
    assert doc["target"].endswith("raw_ext.py --fault wrong-shape")
    assert set(doc["summary"]) == {"pass", "fail", "warn", "known", "skip", "fixed"}
    assert doc["summary"]["known"] == 2 and doc["summary"]["fail"] == 0
    for check in doc["checks"]:
        assert set(check) == {"id", "status", "required", "known_failure", "why", "verifies"}
        assert check["status"] in ("pass", "fail", "skip") and check["verifies"]
    by_id = {c["id"]: c for c in doc["checks"]}
    assert by_id["event:tool_call"]["status"] == "fail" and by_id["event:tool_call"]["known_failure"]
    assert by_id["handshake.name"]["why"].startswith("named 'raw_ext' (no manifest")
    assert doc["known_failures"] == {"file": str(known), "fixed": ["shutdown.bye"], "unknown": []}


def test_cli_exit_status_1_when_a_required_check_fails(tmp_path: Path, config_file: Path) -> None:
    out = kithost("--config", str(config_file), "conformance", "--", sys.executable, "raw_ext.py", "--fault",
                  "version", cwd=command_dir(tmp_path))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "handshake.version        FAIL    hello offers protocol version(s) [2]" in out.stdout
    assert out.stdout.rstrip().endswith("→ FAIL")


def test_cli_usage_errors_are_one_line(tmp_path: Path) -> None:
    out = kithost("conformance")
    assert out.returncode == 1 and "name an extension folder" in out.stderr and "Traceback" not in out.stderr
    out = kithost("conformance", str(tmp_path))  # a folder without extension.toml
    assert out.returncode == 1 and "extension.toml" in out.stderr and "Traceback" not in out.stderr


def test_a_folder_a_dedicated_uid_cannot_read_is_named(tmp_path: Path) -> None:
    here = Confiner(FAST).probe
    if not (here.on("uid") and here.on("bwrap")):
        pytest.skip("no dedicated uid here: the extension runs as this user")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    shutil.copy(RAW, private / "raw_ext.py")
    # The host refuses to launch it, naming the cause (before: the process died with a bare "Permission denied").
    with pytest.raises(ExtensionStartError, match=r"cannot read its folder: .* is mode 0700 .*chmod o\+rx"):
        run_kit(parse_target([sys.executable, "raw_ext.py"], private), FAST)


def test_no_private_directory_is_left_behind(broken: dict[str, Report]) -> None:
    mine = []
    for info in runtime_base().glob("h*/host.json"):
        try:
            meta = json.loads(info.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("pid") == os.getpid() and meta.get("conformance"):
            mine.append(info.parent)
    assert mine == []


# --------------------------------------------------------------------------- derived samples and targets


@pytest.mark.parametrize("optional", ["value", "null", "absent"])
def test_sample_payloads_are_derived_for_every_event(optional: Any) -> None:
    for event in [*EVENTS, "custom:budget.exceeded"]:
        payload = sample_payload(event, optional)  # checks itself against the event's schema
        assert isinstance(payload, dict)
    assert sample_payload("custom:budget.exceeded")["name"] == "budget.exceeded"
    assert sample_payload("tool_call")["input"] == "{}"  # a field documented as a JSON string holds JSON
    assert "parsed_args" not in sample_payload("tool_call", "absent")
    assert sample_payload("tool_call", "null")["parsed_args"] is None


def test_sample_arguments_match_their_json_schema() -> None:
    schema = {"type": "object", "required": ["path", "count", "mode", "tags", "deep"],
              "properties": {"path": {"type": "string", "minLength": 10}, "count": {"type": "integer", "minimum": 3},
                             "mode": {"enum": ["fast", "slow"]}, "tags": {"type": "array", "items": {"type": "string"},
                                                                          "minItems": 1},
                             "deep": {"anyOf": [{"type": "null"}, {"type": "object", "required": ["x"],
                                                                   "properties": {"x": {"type": "boolean"}}}]},
                             "optional": {"type": "number"}}}
    args = sample_arguments(schema)
    jsonschema.validate(args, schema)
    assert "optional" not in args and args["mode"] == "fast"


def test_targets_folder_manifest_or_command(tmp_path: Path) -> None:
    folder = parse_target(["extensions/permission_gate"], ROOT)
    assert not folder.from_command and folder.manifest.name == "permission-gate"
    toml = parse_target(["extensions/permission_gate/extension.toml"], ROOT)
    assert toml.manifest.name == "permission-gate"
    command = parse_target(["./run-me.sh", "--flag"], tmp_path)
    assert command.from_command and command.manifest.runtime == "command"
    assert command.manifest.command == (str(tmp_path.resolve() / "run-me.sh"), "--flag")
    assert command.manifest.name == "run-me" and command.manifest.directory == tmp_path.resolve()
    venv = parse_target([".venv/bin/python", "-m", "ext_sdk", "run", "ext.py"], tmp_path)
    assert venv.manifest.command[0] == str(tmp_path.resolve() / ".venv" / "bin" / "python")  # not its target
    assert venv.manifest.name == "ext"
    node = parse_target(["node", "my_ext.mjs"], tmp_path)
    assert node.manifest.name == "my_ext"
    with pytest.raises(HostError, match="name an extension folder"):
        parse_target([])
