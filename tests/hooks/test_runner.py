"""One hook process: JSON on stdin, the timeout counted from the spawn, the whole process group killed at it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psutil

from ext_sdk.hooks import run_command

ENV = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "LANG": "C.UTF-8"}


def test_stdin_stdout_stderr_and_exit_status(tmp_path: Path) -> None:
    run = run_command('read -r line; echo "got $line"; echo oops >&2; exit 2', '{"a": 1}\n', 5.0, str(tmp_path), ENV)
    assert (run.code, run.stdout, run.stderr, run.timed_out) == (2, 'got {"a": 1}\n', "oops\n", False)


def test_an_argv_gets_the_json_as_its_last_argument(tmp_path: Path) -> None:
    code = "import sys, json; print(json.loads(sys.argv[-1])['type'])"
    run = run_command((sys.executable, "-c", code), "", 10.0, str(tmp_path), ENV,
                      extra_arg=json.dumps({"type": "agent-turn-complete"}))
    assert run.code == 0 and run.stdout.strip() == "agent-turn-complete"


def test_at_the_deadline_the_whole_process_group_is_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # the hook starts a grandchild that would outlive a kill of the shell alone
    command = f"sleep 300 & echo $! > {pids}; echo $$ >> {pids}; wait"
    run = run_command(command, "{}", 0.5, str(tmp_path), ENV)
    assert run.timed_out and run.code is None
    assert run.elapsed_s >= 0.5  # the clock ran from before the spawn; it did not return early
    left = [int(pid) for pid in pids.read_text().split()]
    assert len(left) == 2
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(pid) for pid in left):
        time.sleep(0.02)
    assert not any(_alive(pid) for pid in left), "a process of the hook's group survived its deadline"


def test_a_command_that_cannot_start_is_a_spawn_error(tmp_path: Path) -> None:
    run = run_command(("/nonexistent/hook",), "{}", 1.0, str(tmp_path), ENV)
    assert run.code is None and "/nonexistent/hook" in run.spawn_error and not run.timed_out


def test_a_flood_of_output_is_cut(tmp_path: Path) -> None:
    run = run_command(f"{sys.executable} -c \"print('x' * 2_000_000)\"", "", 20.0, str(tmp_path), ENV)
    assert run.code == 0 and 0 < len(run.stdout) <= 256 * 1024


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

