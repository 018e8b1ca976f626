"""The supervisor's cheap process-tree walk finds what psutil finds (and falls back to psutil without
``/proc/PID/task/TID/children``)."""

from __future__ import annotations

import builtins
import subprocess
import sys
import time
from typing import Any

import psutil
import pytest

from host.exthost.process import descendants
from host.exthost.supervisor import sample_tree

# a child that starts a grandchild (which starts a great-grandchild), then waits
TREE = """
import subprocess, sys, time
code = ("import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
        "print(p.pid, flush=True); time.sleep(30)")
p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
print(p.pid, p.stdout.readline().strip(), flush=True)
time.sleep(30)
"""


@pytest.fixture
def tree() -> Any:
    proc = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()  # bounded: the child prints at once
    root = psutil.Process(proc.pid)
    yield root, {int(pid) for pid in line}
    family = [root, *root.children(recursive=True)]
    for p in family:
        p.kill()
    psutil.wait_procs(family, timeout=5)
    proc.wait(5)
    proc.stdout.close()


def test_descendants_are_the_whole_tree(tree: Any) -> None:
    root, expected = tree
    assert {p.pid for p in descendants(root)} == expected == {p.pid for p in root.children(recursive=True)}
    resources, _ = sample_tree(root, None)
    assert resources.children == 2 and resources.rss_bytes > 0


def test_without_children_files_it_asks_psutil(tree: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    root, expected = tree
    real_open = builtins.open

    def no_children_file(path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path).endswith("/children"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_children_file)
    assert {p.pid for p in descendants(root)} == expected


def test_a_process_that_exited_has_no_descendants() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    root = psutil.Process(proc.pid)
    proc.wait(10)
    deadline = time.monotonic() + 5
    while root.is_running() and root.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.01)
    assert descendants(root) == []
