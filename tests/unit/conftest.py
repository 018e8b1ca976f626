"""The unit layer: no processes, no sockets outside ``inproc://`` — it runs in seconds.

Every test here runs with process creation disabled: ``subprocess.Popen``,
``os.fork`` and ``os.posix_spawn`` raise, so a test that starts a process
fails at once instead of quietly becoming an integration test.
``make test-unit`` runs this directory alone.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest


class ProcessForbidden(AssertionError):
    """A unit test tried to start a process."""


def _forbidden(*args: object, **kwargs: object) -> None:
    raise ProcessForbidden("unit tests must not start processes (move the test to an integration module)")


@pytest.fixture(autouse=True)
def no_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make every way of starting a process fail for the duration of the test."""
    monkeypatch.setattr(subprocess.Popen, "__init__", _forbidden)
    monkeypatch.setattr(os, "fork", _forbidden)
    monkeypatch.setattr(os, "posix_spawn", _forbidden)
    yield


def test_the_guard_itself_refuses_a_process() -> None:
    with pytest.raises(ProcessForbidden):
        subprocess.run(["true"], check=False)
