"""Fixtures for the agent core's tests.

* ``litellm_ready`` (session): imports litellm once (offline env) and registers
  the ``scripted`` provider; tests that make real litellm calls depend on it.
* ``write_script(data, name=...)``: writes a script file (JSON) into the
  test's tmp dir and returns its path; every script player is forgotten after
  the test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from host.agent import scripted
from host.agent.llm.litellm_loader import litellm_module

WriteScript = Callable[..., Path]


@pytest.fixture(scope="session")
def litellm_ready() -> Any:
    """The litellm module, imported once per test session, with the scripted provider registered."""
    module = litellm_module()
    scripted.ensure_registered()
    return module


@pytest.fixture
def write_script(tmp_path: Path) -> Iterator[WriteScript]:
    """Factory: write ``data`` (a list of turns or a full script object) as JSON; returns the path."""
    counter = iter(range(1, 1000))

    def write(data: Any, name: str | None = None) -> Path:
        path = tmp_path / (name or f"script{next(counter)}.json")
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
        return path

    yield write
    scripted.reset()


@pytest.fixture
def rig(tmp_path: Path, litellm_ready: Any) -> Iterator[Callable[..., Any]]:
    """Factory: ``rig(turns, exts=(), **options)`` opens an :class:`~.harness.Rig`; all closed after the test."""
    from .harness import open_rig

    rigs: list[Any] = []

    def make(turns: list[list[dict[str, Any]]], exts: Any = (), **options: Any) -> Any:
        opened = open_rig(tmp_path, turns, exts, **options)
        rigs.append(opened)
        return opened

    yield make
    for opened in rigs:
        opened.session.close()
