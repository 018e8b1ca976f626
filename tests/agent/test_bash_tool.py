"""The bash tool with real subprocesses: streaming, exit codes, timeouts, process-tree cleanup."""

from __future__ import annotations

import threading
from pathlib import Path

import psutil
import pytest

from host.agent.tools import ToolContext, ToolRegistry, ToolResult
from host.agent.tools.bash import BashTool

Chunks = list[tuple[str, bool]]


def run(tmp_path: Path, command: str, tool: BashTool | None = None, timeout: int | None = None,
        cancel: threading.Event | None = None) -> tuple[ToolResult, Chunks]:
    chunks: Chunks = []
    args: dict[str, object] = {"command": command}
    if timeout is not None:
        args["timeout"] = timeout
    ctx = ToolContext(tmp_path, "c1", lambda chunk, err: chunks.append((chunk, err)), cancel)
    return (tool or BashTool()).run(args, ctx), chunks


def pids_from(text: str) -> list[int]:
    return [int(w) for w in text.split() if w.isdigit()]


def assert_gone(pids: list[int]) -> None:
    assert pids, "no process ids to check (the command's output did not name them)"
    for pid in pids:
        try:
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, f"process {pid} is still running"
        except psutil.NoSuchProcess:
            pass


def test_output_streams_in_order_with_stderr_flagged(tmp_path: Path) -> None:
    # each echo waits for a file the previous chunk's callback would not create: ordering comes from the pipe
    result, chunks = run(tmp_path, "echo out1; echo err1 >&2; sleep 0.1; echo out2; exit 3")
    assert [c for c in chunks if not c[1]] == [("out1\n", False), ("out2\n", False)]
    assert ("err1\n", True) in chunks
    assert result.content == "out1\nerr1\nout2\n[exit code 3]"
    assert result.is_error and result.metadata["exit_code"] == 3
    assert result.metadata["timed_out"] is False


def test_success_cwd_and_no_output(tmp_path: Path) -> None:
    (tmp_path / "marker.txt").write_text("here")
    result, _ = run(tmp_path, "cat marker.txt")
    assert result.content == "here" and not result.is_error
    quiet, chunks = run(tmp_path, "true")
    assert quiet.content == "(no output)" and chunks == []


def test_chunks_arrive_before_the_command_ends(tmp_path: Path) -> None:
    """The first chunk is delivered while the command still runs (it waits for a file the callback writes)."""
    flag = tmp_path / "go"
    chunks: Chunks = []

    def on_output(chunk: str, is_err: bool) -> None:
        chunks.append((chunk, is_err))
        flag.touch()

    command = "echo first; for i in $(seq 200); do [ -e go ] && break; sleep 0.05; done; echo saw-flag-$i"
    result = BashTool().run({"command": command, "timeout": 30}, ToolContext(tmp_path, on_output=on_output))
    assert chunks[0] == ("first\n", False)
    assert "saw-flag-" in result.content and "saw-flag-200" not in result.content


def test_timeout_kills_the_whole_tree(tmp_path: Path) -> None:
    command = "sleep 60 & echo child $!; (setsid sleep 60 & echo escaped $!; wait) & echo shell $$; wait"
    result, chunks = run(tmp_path, command, BashTool(kill_grace_s=0.5), timeout=1)
    text = "".join(c for c, _ in chunks)
    assert result.is_error and result.metadata["timed_out"] is True
    assert "[timed out after 1 s" in result.content
    pids = pids_from(text)
    assert len(pids) == 3, text
    assert_gone(pids)


def test_background_job_is_killed_when_the_command_exits(tmp_path: Path) -> None:
    result, _ = run(tmp_path, "sleep 60 & echo bg $!", BashTool(drain_grace_s=0.2))
    assert not result.is_error and result.content.startswith("bg ")
    pids = pids_from(result.content)
    assert len(pids) == 1, result.content
    assert_gone(pids)


def test_cancel_from_another_thread(tmp_path: Path) -> None:
    cancel = threading.Event()
    chunks: Chunks = []

    def on_output(chunk: str, is_err: bool) -> None:
        chunks.append((chunk, is_err))
        cancel.set()

    tool = BashTool(kill_grace_s=0.5)
    result = tool.run({"command": "echo started $$; sleep 60"}, ToolContext(tmp_path, on_output=on_output,
                                                                             cancel=cancel))
    assert result.is_error and result.metadata["cancelled"] is True
    assert "[cancelled;" in result.content
    pids = pids_from(result.content)
    assert len(pids) == 1, result.content
    assert_gone(pids)


def test_output_cap_keeps_head_and_tail(tmp_path: Path) -> None:
    tool = BashTool(max_output_chars=100, max_stream_chars=50)
    result, chunks = run(tmp_path, "seq 1 10000", tool)
    assert result.metadata["truncated"] is True
    assert result.metadata["output_chars"] == len("".join(f"{i}\n" for i in range(1, 10001)))
    assert result.content.startswith("1\n2\n3\n") and result.content.endswith("9999\n10000")
    assert "characters omitted" in result.content
    streamed = "".join(c for c, err in chunks if not err)
    assert len(streamed) == 50 and "streaming stopped" in chunks[-1][0]


def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    result, _ = run(tmp_path, r"printf 'caf\xe9 ok\n'")
    assert result.content == "caf\ufffd ok"


def test_signal_exit_code(tmp_path: Path) -> None:
    result, _ = run(tmp_path, "kill -TERM $$")
    assert result.metadata["exit_code"] == -15 and result.is_error


def test_through_the_registry(tmp_path: Path) -> None:
    chunks: Chunks = []
    result = ToolRegistry(tmp_path).run("bash", {"command": "pwd"}, on_output=lambda c, e: chunks.append((c, e)))
    assert result.content == str(tmp_path.resolve()) and chunks == [(str(tmp_path.resolve()) + "\n", False)]
    assert ToolRegistry(tmp_path).run("bash", {"command": "x", "timeout": 0}).is_error


@pytest.mark.parametrize("command", ["exit 0", "exec sleep 0"])
def test_quick_commands_leave_nothing(tmp_path: Path, command: str) -> None:
    result, _ = run(tmp_path, command)
    assert result.metadata["exit_code"] == 0
