"""Issue 8: every place that shows the isolation level also says why each missing layer is missing.

With ``[sandbox] disable = ["bwrap", "uid"]`` the probe's reasons (``bwrap: forced off by config``, and the
caveat ``extensions share the host's uid: uid: forced off by config``) must appear in the real CLI's
``kithost ext check`` (human and ``--json``), ``kithost ext status`` (human and ``--json``, against a running
host), ``kithost ext list`` and the start line ``kithost run`` writes on stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, MakeExt

from host import ExtensionHost, HostConfig
from host.config import Sandbox, SandboxLayer, TrustMode
from host.exthost.sandbox.probe import IsolationLevel, caveats, probe

TIMEOUT = 90
DISABLE = (SandboxLayer.BWRAP, SandboxLayer.UID)
QUIET = """
from ext_sdk import Extension
ext = Extension("quiet", permissions=["conversation"])
@ext.on("tool_call")
def gate(event, ctx):
    return None
"""


def expected() -> tuple[str, list[str]]:
    """The level with bwrap and uid forced off, and every reason the CLI must print (skip where not reduced)."""
    found = probe(frozenset(str(layer) for layer in DISABLE))
    if found.level is not IsolationLevel.REDUCED:
        pytest.skip(f"forcing bwrap and uid off gives {found.level} here, not reduced: {found.reasons}")
    reasons = [*found.reasons, *caveats(found.layers)]
    assert "bwrap: forced off by config" in reasons and "extensions share the host's uid: uid: forced off by config" \
        in reasons, reasons
    return str(found.level), reasons


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[sandbox]\ndisable = ["bwrap", "uid"]\ntrust = "all"\ntrust_file = "{tmp_path / "trust.json"}"\n')
    return path


def kithost(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "host", *args], capture_output=True, text=True, timeout=TIMEOUT,
                         cwd=tmp_path, env=env)
    assert "Traceback" not in out.stderr, out.stderr
    return out


def one_line(text: str) -> str:
    """Text with every run of whitespace (line breaks of a folded table cell included) made one space."""
    return " ".join(text.split())


def test_ext_check_and_ext_list_and_run_say_why_each_layer_is_missing(tmp_path: Path, make_ext: MakeExt) -> None:
    level, reasons = expected()
    cfg = config_file(tmp_path)
    ext = make_ext("quiet", QUIET, ["tool_call"])

    check = kithost(tmp_path, "ext", "check", str(ext), "--config", str(cfg))
    assert check.returncode == 0, check.stderr
    assert f"sandbox: {level} — " in check.stdout
    for reason in reasons:
        assert f"    why: {reason}\n" in check.stdout, (reason, check.stdout)

    as_json = kithost(tmp_path, "ext", "check", str(ext), "--config", str(cfg), "--json")
    assert as_json.returncode == 0, as_json.stderr
    sandbox = json.loads(as_json.stdout)["sandbox"]
    assert sandbox["level"] == level and sandbox["reasons"] == reasons, sandbox
    assert not any(layer.startswith("bwrap") or layer.startswith("uid") for layer in sandbox["layers"]), sandbox

    listed = kithost(tmp_path, "ext", "list", "-e", str(ext), "--config", str(cfg))
    assert listed.returncode == 0, listed.stderr
    assert f"sandbox here: {level} (" in listed.stdout and "bwrap: forced off by config" in listed.stdout, \
        listed.stdout

    script = tmp_path / "hello.json"
    script.write_text(json.dumps({"turns": [[{"text": "hi"}]]}))
    run = kithost(tmp_path, "run", "--config", str(cfg), "--script", str(script), "-e", str(ext), "--no-discover",
                  "--ephemeral", "hello")
    assert run.returncode == 0, run.stderr
    start = next(line for line in run.stderr.splitlines() if line.startswith("sandbox: "))
    assert start.startswith(f"sandbox: {level} (") and "bwrap: forced off by config" in start, run.stderr


def test_ext_status_says_why_each_layer_is_missing(tmp_path: Path, make_ext: MakeExt,
                                                   new_host: Callable[..., ExtensionHost]) -> None:
    level, reasons = expected()
    host = new_host(HostConfig(sandbox=Sandbox(disable=DISABLE, trust=TrustMode.ALL,
                                               trust_file=tmp_path / "trust.json")))
    host.load(make_ext("quiet", QUIET, ["tool_call"]))

    as_json = kithost(tmp_path, "ext", "status", "--json", "--host", str(os.getpid()))
    assert as_json.returncode == 0, as_json.stderr
    [entry] = json.loads(as_json.stdout)
    [quiet] = [e for e in entry["extensions"] if e["name"] == "quiet"]
    assert quiet["sandbox"]["level"] == level and quiet["sandbox"]["reasons"] == reasons, quiet["sandbox"]

    human = kithost(tmp_path, "ext", "status", "quiet", "--host", str(os.getpid()))
    assert human.returncode == 0, human.stderr
    shown = one_line(human.stdout)
    assert f"sandbox {level} (quiet): " + "; ".join(reasons) in shown, human.stdout
