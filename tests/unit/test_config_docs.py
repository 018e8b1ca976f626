"""Every setting is documented, and read by the code (issue 7: ``[supervision] restart`` was documented,
parsed and never read, so ``restart = "never"`` there did nothing).

The settings are derived from the records in ``host/config.py``, never hand-listed.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from conftest import ROOT
from pydantic.dataclasses import is_pydantic_dataclass

import host.config
from host.config import PROGRAM_ONLY, ExtensionLimits, HostConfig, Supervision, _unwrap, file_key
from host.config_doc import NAME_KEY, field_docs, render

PAGE = ROOT / "docs" / "configuration.md"

#: Every config record: the pydantic dataclasses defined in host/config.py.
MODELS: list[type] = [v for v in vars(host.config).values()
                      if isinstance(v, type) and is_pydantic_dataclass(v) and v.__module__ == host.config.__name__]
FIELDS: dict[type, set[str]] = {m: {f.name for f in dataclasses.fields(m)} for m in MODELS}  # type: ignore[arg-type]

#: Settings that are documented but not read by the code yet, each with its reason. The test fails when
#: one is read after all (delete its entry) or when another setting is not read (read it, or remove it).
NOT_READ: dict[str, str] = {}

#: Records applied field by field (``dataclasses.fields``) by a HostConfig method onto another record:
#: each of their fields counts as read when the method is called outside config.py and the target
#: record's same-named field is read.
APPLIED: dict[type, tuple[str, type]] = {ExtensionLimits: ("supervision_for", Supervision)}


def test_every_model_is_reachable_from_host_config() -> None:
    assert {HostConfig, *_nested(HostConfig)} == set(MODELS)
    for record, (_method, target) in APPLIED.items():
        assert FIELDS[record] <= FIELDS[target], f"{record.__name__} must only override {target.__name__}'s keys"


def test_every_field_has_a_doc_comment() -> None:
    missing = [f"{m.__name__}.{name}" for m in MODELS for name, doc in field_docs(m).items() if not doc]
    assert missing == [], "write a #: comment above each of these fields in host/config.py"
    assert all(set(field_docs(m)) == FIELDS[m] for m in MODELS)


def test_reference_page_is_generated_from_the_models() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), "run: make docs"


def test_reference_page_documents_each_setting_and_nothing_else() -> None:
    """Parsed from the committed page (not from the generator): its keys, table by table, are the fields."""
    documented: set[tuple[str, str]] = set()
    table = None
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            heading = line[3:]
            table = (heading.strip("`[]") if heading.startswith("`[") else
                     "" if heading == "Top-level keys" else "program" if heading.startswith("Set by the program")
                     else None)
        elif table is not None and (row := re.match(r"\| `([^`]+)` \|", line)):
            documented.add((table, row.group(1)))
    assert documented == _settings()


def test_readme_points_to_the_reference() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/configuration.md" in readme
    assert "restart_mode" in readme and "[supervision] restart" in readme


def test_every_setting_is_read_by_the_code() -> None:
    """A field counts as read when some module of ``host/`` other than ``host/config.py`` reads it, or when a
    ``HostConfig`` method reads it and that method is called outside ``host/config.py``.

    "Reads" is found in the AST, per module: ``<x>.field`` (a load) or ``getattr(<x>, "field")`` where ``<x>``
    holds that field's record. What holds a record is inferred, by name, within the module: a parameter,
    variable or attribute annotated with the record's class (``config: HostConfig``, ``cfg: Supervision``), a
    name bound to one (``d = config.deadlines``, ``cfg = self.supervision``, ``x = HostConfig(...)``,
    ``s = config.supervision_for(name)``), and everywhere the config's own table names (``deadlines``,
    ``limits``, ``supervision``). Matching by name and not by type is approximate, so it is per module and
    per record: ``manifest.restart`` in a module does not read ``Supervision.restart``.
    """
    methods = _host_config_methods()
    reads: set[tuple[type, str]] = set()
    called: set[str] = set()
    for path in sorted((ROOT / "host").rglob("*.py")):
        if path.name == "config.py" and path.parent.name == "host":
            continue
        module = _Module(ast.parse(path.read_text(encoding="utf-8")), {})
        reads |= module.reads()
        called |= module.calls(set(methods))
    for name in called:
        reads |= _Module(methods[name], {"self": {HostConfig}}).reads()
    for record, (method, target) in APPLIED.items():
        if method in called:
            reads |= {(record, f) for f in FIELDS[record] if (target, f) in reads}
    unread = {f"{m.__name__}.{f}" for m in MODELS for f in FIELDS[m] if (m, f) not in reads}
    assert sorted(unread - set(NOT_READ)) == [], "documented settings that no code reads"
    assert sorted(set(NOT_READ) - unread) == [], "read now: delete these entries from NOT_READ"


# ---- helpers


def _nested(record: Any) -> set[type]:
    """Records reachable from ``record``'s fields (directly, or as the values of a dict)."""
    found: set[type] = set()
    for tp in get_type_hints(record, include_extras=True).values():
        tp = _unwrap(tp)
        if get_origin(tp) is dict:
            tp = _unwrap(get_args(tp)[1])
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            found |= {tp, *_nested(tp)}
    return found


def _settings() -> set[tuple[str, str]]:
    """(table, key) of every setting as the reference page lays them out."""
    out: set[tuple[str, str]] = set()
    hints = get_type_hints(HostConfig, include_extras=True)
    for f in dataclasses.fields(HostConfig):  # type: ignore[arg-type]
        tp = _unwrap(hints[f.name])
        value = _unwrap(get_args(tp)[1]) if get_origin(tp) is dict else None
        if f.metadata == PROGRAM_ONLY:
            out.add(("program", f.name))
        elif dataclasses.is_dataclass(tp):
            out |= {(f.name, file_key(g)[0]) for g in dataclasses.fields(tp)}  # type: ignore[arg-type]
        elif value is not None and dataclasses.is_dataclass(value):
            out |= {(f"{f.name}.{NAME_KEY}", file_key(g)[0])
                    for g in dataclasses.fields(value)}  # type: ignore[arg-type]
        elif value is not None:
            out.add((f.name, NAME_KEY))
        else:
            out.add(("", f.name))
    return out


@functools.cache
def _host_config_methods() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(Path(host.config.__file__).read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == HostConfig.__name__)
    return {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}


_BY_NAME = {m.__name__: m for m in MODELS}


def _tables() -> dict[str, set[type]]:
    """The config's own table names hold their record everywhere (``config.deadlines``, ``self.supervision``)."""
    tables: dict[str, set[type]] = {}
    for record in MODELS:
        for name, tp in get_type_hints(record).items():
            if _unwrap(tp) in FIELDS:
                tables[name] = {_unwrap(tp)}
    return tables


def _last_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _records_in(annotation: ast.AST) -> set[type]:
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval")
    return {_BY_NAME[n] for node in ast.walk(annotation) if (n := _last_name(node)) in _BY_NAME}


class _Module:
    """Which names hold which record in one module (or one method), and what it reads from them."""

    def __init__(self, tree: ast.AST, seed: dict[str, set[type]]) -> None:
        self.tree = tree
        self.holders: defaultdict[str, set[type]] = defaultdict(set)
        for name, records in {**_tables(), **seed}.items():
            self.holders[name] = set(records)
        self.returns: defaultdict[str, set[type]] = defaultdict(set)
        for name, method in _host_config_methods().items():
            self.returns[name] |= _records_in(method.returns) if method.returns else set()
        for node in ast.walk(tree):
            if isinstance(node, ast.arg) and node.annotation is not None:
                self.holders[node.arg] |= _records_in(node.annotation)
            elif isinstance(node, ast.AnnAssign) and (name := _last_name(node.target)):
                self.holders[name] |= _records_in(node.annotation)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
                self.returns[node.name] |= _records_in(node.returns)
        changed = True
        while changed:  # names bound to a record hold it
            changed = False
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                    found = self.records_of(node.value)
                    for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                        name = _last_name(target)
                        if name and not found <= self.holders[name]:
                            self.holders[name] |= found
                            changed = True

    def records_of(self, expr: ast.AST) -> set[type]:
        """The records ``expr`` may evaluate to."""
        if isinstance(expr, ast.BoolOp):
            return set().union(*(self.records_of(v) for v in expr.values))
        if isinstance(expr, ast.IfExp):
            return self.records_of(expr.body) | self.records_of(expr.orelse)
        if isinstance(expr, ast.Call):
            name = _last_name(expr.func)
            if name in _BY_NAME:
                return {_BY_NAME[name]}
            if name == "replace" and expr.args:
                return self.records_of(expr.args[0])
            return set(self.returns.get(name or "", ()))
        name = _last_name(expr)
        return set(self.holders.get(name, ())) if name else set()

    def reads(self) -> set[tuple[type, str]]:
        found: set[tuple[type, str]] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                receiver, attr = node.value, node.attr
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                  and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str)):
                receiver, attr = node.args[0], node.args[1].value
            else:
                continue
            found |= {(record, attr) for record in self.records_of(receiver) if attr in FIELDS[record]}
        return found

    def calls(self, methods: set[str]) -> set[str]:
        """The ``HostConfig`` methods this module calls on something holding a ``HostConfig``."""
        return {node.func.attr for node in ast.walk(self.tree)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in methods and HostConfig in self.records_of(node.func.value)}
