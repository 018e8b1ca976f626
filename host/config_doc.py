"""``docs/configuration.md``, generated from :mod:`host.config` (``make docs``).

Every setting is written once, in ``host/config.py``: the page takes each
key's type, default and bounds from its annotation and its text from the
``#:`` comment above it, and the introduction from the module docstring.
``tests/test_config_docs.py`` checks the committed page against this output.

    python -m host.config_doc --write docs/configuration.md
    python -m host.config_doc --check docs/configuration.md
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import re
import sys
import textwrap
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args, get_origin, get_type_hints

import annotated_types
from pydantic.fields import FieldInfo

from ext_sdk.hooks import format_duration

from . import config
from .config import _DURATION_MAPS, PROGRAM_ONLY, HostConfig, _choices, _unwrap, file_key

__all__ = ["field_docs", "main", "render"]

#: How the page names a key of a table whose keys are extension names (``[restart]``).
NAME_KEY: Final = '"<name>"'


def field_docs(record: type) -> dict[str, str]:
    """Each field of ``record`` → the text of the ``#:`` comment lines right above it."""
    lines, _ = inspect.getsourcelines(record)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for stmt in body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            above: list[str] = []
            i = stmt.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#:"):
                above.insert(0, lines[i].strip()[2:].strip())
                i -= 1
            docs[stmt.target.id] = " ".join(above)
    return docs


def render() -> str:
    """The whole page."""
    out = ["# Configuration", "",
           "<!-- Generated from host/config.py by `make docs`: edit that file, not this one. -->", "",
           _markdown(inspect.getdoc(config) or ""), ""]
    hints = get_type_hints(HostConfig, include_extras=True)
    docs = field_docs(HostConfig)
    top: list[dataclasses.Field[Any]] = []
    program: list[dataclasses.Field[Any]] = []
    for f in dataclasses.fields(HostConfig):
        tp = _unwrap(hints[f.name])
        if f.metadata == PROGRAM_ONLY:
            program.append(f)
        elif dataclasses.is_dataclass(tp):
            out += _section(f"[{f.name}]", docs[f.name], [_rows(tp)])
        elif get_origin(tp) is dict:
            value = _unwrap(get_args(tp)[1])
            if dataclasses.is_dataclass(value):
                out += _section(f"[{f.name}.{NAME_KEY}]", docs[f.name], [_rows(value)])
            else:
                row = _row(NAME_KEY, get_args(tp)[1], dataclasses.MISSING, "", _DURATION_MAPS.get(f.name))
                out += _section(f"[{f.name}]", docs[f.name], [[row]])
        else:
            top.append(f)
    out += _section("Top-level keys", "Keys outside any table.",
                    [[_row(f.name, hints[f.name], _default(f), docs[f.name]) for f in top]])
    out += _section("Set by the program, not in the file",
                    "Fields of `HostConfig` that the command line, the session or embedding code sets.",
                    [[_row(f.name, hints[f.name], _default(f), docs[f.name]) for f in program]])
    return "\n".join(out).rstrip() + "\n"


def _section(title: str, text: str, tables: list[list[str]]) -> list[str]:
    heading = f"## `{title}`" if title.startswith("[") else f"## {title}"
    lines = [heading, "", _markdown(text), "", "| key | type | default | allowed | what it does |",
             "|---|---|---|---|---|"]
    for rows in tables:
        lines += rows
    return [*lines, ""]


def _rows(record: Any) -> list[str]:
    hints = get_type_hints(record, include_extras=True)
    docs = field_docs(record)
    return [_row(file_key(f)[0], hints[f.name], _default(f), docs[f.name], file_key(f)[1])
            for f in dataclasses.fields(record)]


def _row(key: str, tp: Any, default: object, doc: str, unit: str | None = None) -> str:
    """One table row; ``unit`` (``"ms"``/``"s"``: the attribute's) makes it a duration written with a unit."""
    if unit is None:
        cells = [f"`{key}`", _type_words(tp), _value_words(default), _bounds(tp), _markdown(doc)]
    else:
        scale = 1000 if unit == "s" else 1
        shown = default if not isinstance(default, (int, float)) or isinstance(default, bool) \
            else _Words(f'`"{format_duration(default * scale)}"`')
        bounds = ", ".join(f"{op} {format_duration(float(n) * scale) if float(n) else 0}" for op, n in
                           (w.split(" ", 1) for w in _bounds(tp).split(", ") if w))
        cells = [f"`{key}`", "duration", _value_words(shown), bounds, _markdown(doc)]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _default(f: dataclasses.Field[Any]) -> object:
    if f.default_factory is not dataclasses.MISSING:
        factory = f.default_factory
        if dataclasses.is_dataclass(factory):
            return _Words("the table's defaults")
        if factory is dict:
            return _Words("none")
        return _Words(_markdown((inspect.getdoc(factory) or "").splitlines()[0]))
    return f.default


class _Words(str):
    """A default already put in words."""


def _value_words(value: object) -> str:
    if value is dataclasses.MISSING:
        return ""
    if isinstance(value, _Words):
        return str(value)
    if value is None:
        return "unset"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value)}`"


def _type_words(tp: Any) -> str:
    tp = _unwrap(tp)
    names = {int: "integer", float: "number", bool: "boolean", str: "string", Path: "path"}
    if tp in names:
        return names[tp]
    choices = _choices(tp)
    if choices:
        return " or ".join(f'`"{c}"`' for c in choices)
    if get_origin(tp) in (tuple, list):
        return f"list of {_type_words(get_args(tp)[0])}s"
    return str(tp)


def _bounds(tp: Any) -> str:
    words = []
    for meta in _metadata(tp):
        if isinstance(meta, annotated_types.Gt):
            words.append(f"> {meta.gt}")
        elif isinstance(meta, annotated_types.Ge):
            words.append(f"≥ {meta.ge}")
    return ", ".join(words)


def _metadata(tp: Any) -> list[Any]:
    """Constraint objects in ``tp`` (through ``Annotated``, ``X | None`` and ``Field(...)``)."""
    found: list[Any] = []
    if get_origin(tp) is Annotated:
        for meta in tp.__metadata__:
            found += meta.metadata if isinstance(meta, FieldInfo) else [meta]
        found += _metadata(get_args(tp)[0])
    elif get_origin(tp) not in (dict, tuple, list, Literal) and get_args(tp):  # a union
        for arg in get_args(tp):
            found += _metadata(arg)
    return found


def _markdown(text: str) -> str:
    """The docstrings' reStructuredText, as far as they use it, in Markdown."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.endswith("::"):
            out += [line[:-1], ""]
            block: list[str] = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                block.append(lines[i])
                i += 1
            out += ["```toml", *textwrap.dedent("\n".join(block)).strip("\n").splitlines(), "```"]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m host.config_doc", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, metavar="FILE", help="write the page to FILE")
    group.add_argument("--check", type=Path, metavar="FILE", help="exit 1 if FILE differs from the generated page")
    args = parser.parse_args(argv)
    page = render()
    if args.write:
        args.write.write_text(page, encoding="utf-8")
        return 0
    if args.check.read_text(encoding="utf-8") != page:
        print(f"{args.check} is out of date: run make docs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
