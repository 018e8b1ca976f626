"""The secret pipe of a parked launch (host/exthost/launch.py ``Launch.unpark``), read the way the SDK reads it.

No process: the reader is a thread running the SDK's own ``_read_secret``.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from ext_sdk.runtime import _read_secret
from host.exthost.launch import Endpoints, Launch, LaunchSpec


def parked(tmp_path: Path) -> Launch:
    endpoints = Endpoints(tmp_path)
    os.mkfifo(endpoints.secret_file, 0o600)
    return Launch(endpoints, os.urandom(32), "kithost/t/1", LaunchSpec(argv=("x",), env={}, cwd=tmp_path), True)


def test_the_reader_gets_the_secret_and_then_finds_an_ordinary_file_at_the_path(tmp_path: Path) -> None:
    launch = parked(tmp_path)
    path = launch.endpoints.secret_file
    seen: dict[str, object] = {}

    def reader() -> None:
        seen["secret"] = _read_secret(str(path))
        mode = os.stat(path).st_mode  # at once: the extension's own code may open the path now
        seen["regular"] = stat.S_ISREG(mode)
        seen["mode"] = stat.S_IMODE(mode)
        with open(path, "rb") as fh:  # would block for ever on a pipe nobody writes
            seen["again"] = fh.read()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    launch.unpark(lambda: True, 5.0)
    thread.join(5)
    assert not thread.is_alive(), "the reader blocked on the pipe"
    assert seen == {"secret": launch.secret, "regular": True, "mode": 0o600, "again": launch.secret}


def test_nothing_is_written_until_the_reader_is_there_and_before_runs_first(tmp_path: Path) -> None:
    launch = parked(tmp_path)
    order: list[str] = []
    got: list[bytes] = []
    ready = threading.Event()

    def reader() -> None:
        ready.wait(5)
        got.append(_read_secret(str(launch.endpoints.secret_file)))
        order.append("read")

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    timer = threading.Timer(0.05, ready.set)  # the reader opens the pipe only later
    timer.start()
    launch.unpark(lambda: True, 5.0, lambda: order.append("before"))
    thread.join(5)
    assert got == [launch.secret] and order == ["before", "read"]


def test_a_reader_that_never_comes_times_out_and_one_that_died_says_so(tmp_path: Path) -> None:
    launch = parked(tmp_path)
    with pytest.raises(TimeoutError):
        launch.unpark(lambda: True, 0.05)
    with pytest.raises(ProcessLookupError):
        launch.unpark(lambda: False, 5.0)
