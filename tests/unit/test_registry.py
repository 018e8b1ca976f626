"""Registries are derived, never hand-listed (kit's AllEventTypes() forgot tool_output)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import ext_sdk
from ext_sdk import events, hostcalls
from ext_sdk.context import Context
from ext_sdk.events import EVENTS, EventSpec, spec_for
from host.exthost.hostcalls import HostCallRouter
from host.exthost.services import LocalServices
from host.exthost.state_store import StateStore

ROOT = Path(__file__).resolve().parents[2]

KIT_AGENT_EVENTS = {
    "tool_call", "tool_call_input_start", "tool_call_input_delta", "tool_call_input_end", "tool_execution_start",
    "tool_execution_end", "tool_output", "tool_result", "input", "before_agent_start", "agent_start", "agent_end",
    "message_start", "message_update", "message_end", "session_start", "session_shutdown", "model_change",
    "context_prepare", "before_fork", "before_session_switch", "before_compact", "subagent_start",
    "subagent_chunk", "subagent_end", "step_start", "step_finish", "reasoning_start", "warnings", "source",
    "error", "retry", "prepare_step", "llm_usage",
}


def test_registry_is_exactly_the_module_level_definitions() -> None:
    source = ast.parse(Path(events.__file__).read_text())
    defined = set()
    for node in source.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Name) and func.id == "EventSpec":
                target = node.targets[0]
                assert isinstance(target, ast.Name)
                if not target.id.startswith("_"):
                    first = node.value.args[0]
                    assert isinstance(first, ast.Constant)
                    defined.add(first.value)
                    assert target.id == str(first.value).upper(), "constant name must match the wire name"
    assert set(EVENTS) == defined


#: Events kithost adds to kit's 34 (hooks kit lacks, issue 11).
KITHOST_EVENTS = {"before_model"}


def test_all_34_kit_agent_events_including_tool_output_plus_kithosts_own() -> None:
    assert set(EVENTS) == KIT_AGENT_EVENTS | KITHOST_EVENTS
    assert len(KIT_AGENT_EVENTS) == 34 and len(EVENTS) == 35
    assert "tool_output" in EVENTS and "llm_usage" in EVENTS


def test_modes_are_derived_from_results() -> None:
    modes = {name: spec.mode for name, spec in EVENTS.items()}
    assert {n for n, m in modes.items() if m == "gate"} == {
        "tool_call", "input", "before_fork", "before_session_switch", "before_compact"}
    assert {n for n, m in modes.items() if m == "chain"} == {
        "tool_result", "before_agent_start", "context_prepare", "prepare_step", "before_model"}
    for spec in EVENTS.values():
        assert (spec.mode == "notify") == (spec.result is None)
        assert spec.default_policy == ("closed" if spec.mode == "gate" else "open")


def test_custom_events_are_notify_with_a_fixed_payload() -> None:
    spec = spec_for("custom:budget.exceeded")
    assert spec is not None and spec.mode == "notify"
    spec.payload.check({"name": "budget.exceeded", "data": {"x": 1}, "source": "a"})
    assert spec_for("custom:") is None
    assert spec_for("nonsense") is None


def test_every_host_call_has_a_host_handler_and_a_ctx_method() -> None:
    router = HostCallRouter(StateStore(None), LocalServices(), lambda *a: 0)
    assert set(router.table) == set(hostcalls.HOST_CALLS)
    ctx_methods = {n for n, _ in inspect.getmembers(Context, inspect.isfunction) if not n.startswith("_")}
    # info/error/print share the 'print' call; every call is reachable from ctx
    calls_used = set()
    for name in ctx_methods:
        src = inspect.getsource(getattr(Context, name))
        calls_used.update(c for c in hostcalls.HOST_CALLS if f'"{c}"' in src)
    assert calls_used == set(hostcalls.HOST_CALLS)


def test_public_surface_is_sorted_and_complete() -> None:
    import host

    for module in (ext_sdk, host):
        for name in module.__all__:  # ext_sdk loads its names on first use (PEP 562): load them all
            getattr(module, name)
        public = sorted((n for n in vars(module) if not n.startswith("_") and n not in {"annotations"}
                         and not inspect.ismodule(getattr(module, n))), key=str.casefold)
        exported = sorted((n for n in module.__all__ if n != "__version__"), key=str.casefold)
        assert exported == public


def test_specs_are_consistent() -> None:
    for name, spec in EVENTS.items():
        assert isinstance(spec, EventSpec) and spec.name == name and spec.doc


def _package_map(init: Path) -> set[str]:
    """The rows of a package docstring's map: ``module`` or ``subpackage/`` at the start of a line."""
    doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
    return set(re.findall(r"^``(\w+/?)``", doc, flags=re.M))


def _package_members(package: Path) -> set[str]:
    """What a package's map must list: its modules, and its subpackages as ``name/``."""
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    return modules | {d.name + "/" for d in package.iterdir() if (d / "__init__.py").is_file()}


def test_every_exthost_module_is_on_the_package_map() -> None:
    top = ROOT / "host" / "exthost"
    packages = sorted(init.parent for init in top.rglob("__init__.py"))
    assert packages[0] == top and top / "sandbox" in packages
    assert len(_package_members(top)) > 10
    for package in packages:
        where = package.relative_to(ROOT)
        mapped, members = _package_map(package / "__init__.py"), _package_members(package)
        assert sorted(members - mapped) == [], f"{where}: not on its package map"
        assert sorted(mapped - members) == [], f"{where}: the map names a module that does not exist"
