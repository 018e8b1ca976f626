"""Shared fixtures: real hosts, real extension processes, and a leak check after every test.

* ``make_ext(name, source, events, ...)`` writes an extension directory
  (``extension.toml`` + ``main.py``) into the test's tmp dir and returns it.
* ``new_host(**config)`` builds an :class:`ExtensionHost` with a private
  runtime dir and a state file in tmp; every host is closed after the test.
* After every test, no child process of the test run may remain (zombies
  excepted) — the test fails otherwise.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from host import ExtensionHost, HostConfig
from host.config import Sandbox, TrustMode

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
EXTENSIONS = ROOT / "extensions"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

MakeExt = Callable[..., Path]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Layers: ``unit`` for tests/unit, ``integration`` for every other test that is not ``slow``."""
    unit_dir = Path(__file__).resolve().parent / "unit"
    for item in items:
        if unit_dir in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.unit)
        elif item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.integration)


def _live_children() -> list[psutil.Process]:
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.NoSuchProcess:
            continue
    return out


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every test must end every process it started."""
    yield
    deadline = time.monotonic() + 5
    left = _live_children()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _live_children()
    if left:
        desc = [f"{p.pid} {' '.join(p.cmdline()[:4])}" for p in left]
        for p in left:
            p.kill()
        pytest.fail(f"test left processes behind: {desc}")


@pytest.fixture
def make_ext(tmp_path: Path) -> MakeExt:
    """Write an extension directory from Python source (and ``files``); returns its path."""

    def make(name: str, source: str, events: list[str], permissions: list[str] | None = None,
             runtime: str = "python", command: list[str] | None = None,
             files: dict[str, str] | None = None) -> Path:
        directory = tmp_path / "exts" / name
        directory.mkdir(parents=True, exist_ok=True)
        for file_name, text in (files or {}).items():  # an extension's code lives in its directory
            (directory / file_name).write_text(text)
        perms = ["conversation"] if permissions is None else permissions
        lines = [f'name = "{name}"', 'version = "0.1.0"', f'runtime = "{runtime}"',
                 f"events = {json.dumps(events)}", f"permissions = {json.dumps(perms)}"]
        if runtime == "command":
            lines.append(f"command = {json.dumps(command)}")  # JSON string arrays are valid TOML
        else:
            lines.append('main = "main.py"')
            (directory / "main.py").write_text(textwrap.dedent(source))
        (directory / "extension.toml").write_text("\n".join(lines) + "\n")
        return directory

    return make


@pytest.fixture
def new_host(tmp_path: Path) -> Iterator[Callable[..., ExtensionHost]]:
    """Factory of hosts with tmp state; all closed after the test."""
    hosts: list[ExtensionHost] = []

    def build(config: HostConfig | None = None, **services: Any) -> ExtensionHost:
        base = config or HostConfig()
        # Extensions written by the tests are trusted as they ask, unless a test sets its own [sandbox];
        # the trust file is the test's own (tests/test_trust.py drives the real trust path).
        # allow_weak only matters on a machine that gives weak isolation (tests/security checks the refusal).
        sandbox = base.sandbox if base.sandbox != Sandbox() else Sandbox(trust=TrustMode.ALL, allow_weak=True)
        sandbox = replace(sandbox, trust_file=sandbox.trust_file or tmp_path / "trust.json")
        cfg = replace(base, state_path=base.state_path or tmp_path / "session.ext-state.json", search_dirs=(),
                      sandbox=sandbox)
        host = ExtensionHost(cfg, **services)
        hosts.append(host)
        return host

    yield build
    for host in hosts:
        host.close()


def wait_for(check: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    """Poll ``check`` every 20 ms until it holds or ``timeout_s`` passed; whether it held (bounded wait)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return check()


def tool_call(command: str, call_id: str = "c1", tool: str = "bash") -> dict[str, Any]:
    """A tool_call payload for a bash command."""
    import json

    args = {"command": command}
    return {"tool_call_id": call_id, "tool_name": tool, "tool_kind": "execute", "input": json.dumps(args),
            "parsed_args": args, "source": "llm"}


def tool_result(content: str, call_id: str = "c1") -> dict[str, Any]:
    """A tool_result payload."""
    return {"tool_call_id": call_id, "tool_name": "bash", "tool_kind": "execute", "input": "{}",
            "content": content, "is_error": False, "metadata": "{}"}


def extension_pids(ext: Any) -> set[int]:
    """Every pid of an extension's process tree, as the host sees it and as seen inside its pid namespace
    (``NSpid`` in ``/proc/<pid>/status``): what ``os.getpid()`` can say inside the extension."""
    assert ext.process is not None
    root = psutil.Process(ext.process.pid)
    out: set[int] = set()
    for proc in [root, *root.children(recursive=True)]:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:"):
                out.update(int(v) for v in line.split()[1:])
    return out
