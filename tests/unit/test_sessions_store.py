"""The session store and the repair of a torn session file, without processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from host.agent.cli.sessions import PICK, SessionOptions, choose_session
from host.agent.errors import AgentError, SessionFileError
from host.agent.session_file import repair_session_file
from host.agent.session_tree import SessionTree
from host.agent.sessions_store import find_session, list_sessions, sessions_dir, sessions_root


@pytest.fixture(autouse=True)
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data"


def _session(cwd: Path, *prompts: str, mtime: float | None = None) -> Path:
    path = choose_session(SessionOptions(), cwd, interactive=False)
    assert path is not None
    with SessionTree.create(path, cwd=cwd) as tree:
        for prompt in prompts:
            tree.append_message({"role": "user", "content": prompt})
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_one_folder_per_working_directory(tmp_path: Path, data_home: Path) -> None:
    a, b = tmp_path / "src" / "app", tmp_path / "src" / "app2"
    a.mkdir(parents=True)
    b.mkdir()
    assert sessions_dir(a) == sessions_dir(a / ".." / "app")  # resolved: the same directory, the same folder
    assert sessions_dir(a) != sessions_dir(b)
    assert sessions_dir(a).parent == sessions_root() == data_home / "kithost" / "sessions"
    assert sessions_dir(a).name.startswith("tmp-") or "src-app-" in sessions_dir(a).name
    assert len(sessions_dir(tmp_path / ("x" * 300)).name) < 70


def test_list_newest_first_and_continue_takes_the_last(tmp_path: Path) -> None:
    old = _session(tmp_path, "old one", mtime=1_000_000)
    new = _session(tmp_path, "new one", "and more", mtime=2_000_000)
    infos = list_sessions(tmp_path)
    assert [i.path for i in infos] == [new, old]
    assert (infos[0].prompts, infos[0].first_prompt) == (2, "new one")
    assert choose_session(SessionOptions(continue_last=True), tmp_path, interactive=False) == new
    assert list_sessions(tmp_path / "nowhere") == []
    assert {i.path for i in list_sessions(None)} == {new, old}


def test_find_by_id_prefix_or_file_name(tmp_path: Path) -> None:
    path = _session(tmp_path, "x")
    header = json.loads(path.read_text().splitlines()[0])
    assert find_session(tmp_path, header["id"][:6]) == path
    assert find_session(tmp_path, path.name) == path
    assert find_session(tmp_path, str(path)) == path
    with pytest.raises(AgentError, match="no session 'nope'"):
        find_session(tmp_path, "nope")
    _session(tmp_path, "y")
    with pytest.raises(AgentError, match="ambiguous"):
        find_session(tmp_path, path.name[:4])  # both names start with the date


def test_resume_picks_from_a_numbered_list_on_a_terminal(tmp_path: Path) -> None:
    import io

    first = _session(tmp_path, "first", mtime=1_000_000)
    second = _session(tmp_path, "second", mtime=2_000_000)
    err = io.StringIO()
    chosen = choose_session(SessionOptions(resume=PICK), tmp_path, interactive=True,
                            inp=io.StringIO("7\n2\n"), err=err)
    assert chosen == first
    shown = err.getvalue()
    assert " 1  " in shown and "second" in shown and " 2  " in shown and "type a number from 1 to 2" in shown
    assert choose_session(SessionOptions(resume=PICK), tmp_path, interactive=True, inp=io.StringIO("\n"),
                          err=io.StringIO()) == second
    with pytest.raises(AgentError, match="needs a session ID"):
        choose_session(SessionOptions(resume=PICK), tmp_path, interactive=False)
    assert choose_session(SessionOptions(ephemeral=True), tmp_path, interactive=False) is None


def test_repair_drops_only_a_torn_tail_and_keeps_a_backup(tmp_path: Path) -> None:
    path = _session(tmp_path, "kept")
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"type":"mess')
    with pytest.raises(SessionFileError, match=f"kithost session repair {path}"):
        SessionTree.open(path)
    assert list_sessions(tmp_path)[0].problem.startswith("the last line is incomplete")
    repair = repair_session_file(path)
    assert repair.line == 3 and repair.dropped == b'{"type":"mess' and path.read_bytes() == whole
    assert repair.backup == path.with_name(path.name + ".bak") and repair.backup.read_bytes().endswith(b"mess")
    assert "dropped the torn line 3 (13 bytes" in repair.describe()
    assert repair_session_file(path).line == 0  # nothing left to drop
    path.write_bytes(whole + b"torn again")
    assert repair_session_file(path).backup == path.with_name(path.name + ".bak.2")  # a backup is never replaced

    middle = whole.replace(b"\n", b"\nnot json\n", 1)
    path.write_bytes(middle)
    with pytest.raises(SessionFileError, match="only a torn last line can be repaired"):
        repair_session_file(path)
    assert path.read_bytes() == middle  # untouched
    header_only = tmp_path / "h.jsonl"
    header_only.write_bytes(b'{"type":"sess')
    with pytest.raises(SessionFileError, match="the header itself is torn"):
        repair_session_file(header_only)
