"""The session tree in JSONL: append, resume, fork, compaction, extension entries, errors, crashes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from host.agent.errors import AgentError, SessionFileError
from host.agent.session_file import FORMAT_VERSION
from host.agent.session_tree import SUMMARY_PREFIX, SessionTree

ROOT = Path(__file__).resolve().parents[2]


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def bot(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


@pytest.fixture
def tree(tmp_path: Path) -> SessionTree:
    return SessionTree.create(tmp_path / "s.jsonl", cwd=tmp_path, fsync=False)


def test_append_and_resume(tree: SessionTree, tmp_path: Path) -> None:
    a = tree.append_message(user("hi"))
    b = tree.append_message(bot("hello"))
    assert tree.leaf_id == b and tree.get(b).parent_id == a and len(tree) == 2
    lines = [json.loads(line) for line in tree.path.read_text().splitlines()]
    assert lines[0]["type"] == "session" and lines[0]["version"] == FORMAT_VERSION
    assert lines[0]["cwd"] == str(tmp_path) and lines[0]["id"] == tree.session_id
    assert [(x["type"], x["id"], x["parent_id"]) for x in lines[1:]] == [("message", a, None), ("message", b, a)]
    assert lines[2]["message"] == bot("hello") and lines[2]["timestamp"].endswith("Z")
    tree.close()
    again = SessionTree.open(tree.path)
    assert again.leaf_id == b and again.messages() == [user("hi"), bot("hello")]
    assert again.session_id == tree.session_id
    c = again.append_message(user("more"))
    assert again.get(c).parent_id == b
    assert again.state_path == tmp_path / "s.ext-state.json"


def test_create_refuses_an_existing_file(tree: SessionTree) -> None:
    with pytest.raises(AgentError, match="already exists"):
        SessionTree.create(tree.path)


def test_fork_branches_and_survives_resume(tree: SessionTree) -> None:
    q = tree.append_message(user("question"))
    first = tree.append_message(bot("first answer"))
    tree.fork(q)
    assert tree.leaf_id == q and tree.messages() == [user("question")]
    second = tree.append_message(bot("second answer"))
    assert tree.children(q) == [first, second]
    assert tree.messages() == [user("question"), bot("second answer")]
    assert [e.id for e in tree.branch()] == [q, second]
    assert tree.messages(first) == [user("question"), bot("first answer")]
    tree.fork(None)
    root2 = tree.append_message(user("fresh start"))
    assert tree.messages() == [user("fresh start")] and tree.children(None) == [q, root2]
    tree.close()
    resumed = SessionTree.open(tree.path)
    assert resumed.leaf_id == root2  # the last entry written
    with pytest.raises(AgentError, match="no entry 'nope'"):
        resumed.fork("nope")


def test_compaction_replaces_history_on_the_branch(tree: SessionTree) -> None:
    tree.append_message(user("one"))
    tree.append_message(bot("two"))
    kept = tree.append_message(user("three"))
    tree.append_message(bot("four"))
    compaction = tree.append_compaction("they counted to four", kept, tokens_before=1234)
    tree.append_message(user("five"))
    summary = {"role": "user", "content": f"{SUMMARY_PREFIX}\nthey counted to four"}
    assert tree.messages() == [summary, user("three"), bot("four"), user("five")]
    assert tree.get(compaction).data["tokens_before"] == 1234
    tree.append_compaction("all of it", None)
    assert tree.messages() == [{"role": "user", "content": f"{SUMMARY_PREFIX}\nall of it"}]
    assert len(tree.messages(kept)) == 3  # a branch point before the compaction is unaffected
    with pytest.raises(AgentError):
        tree.append_compaction("x", "missing-id")


def test_extension_entries_and_model_changes(tree: SessionTree) -> None:
    tree.append_message(user("hi"))
    e1 = tree.append_entry("guard", "decision", {"blocked": ["rm -rf /"]})
    tree.append_entry("other", "decision", 1)
    tree.append_model_change("scripted/b", "scripted/a", "extension")
    e2 = tree.append_entry("guard", "decision", [1, 2])
    entries = tree.get_entries("guard", "decision")
    assert [(e["id"], e["type"], e["data"]) for e in entries] == [(e1, "decision", {"blocked": ["rm -rf /"]}),
                                                                 (e2, "decision", [1, 2])]
    assert all(e["timestamp"].endswith("Z") for e in entries)
    assert tree.current_model() == "scripted/b"
    assert tree.messages() == [user("hi")]  # entries of other types are not messages
    tree.fork(e1)
    assert [e["id"] for e in tree.get_entries("guard", "decision", branch_only=True)] == [e1]
    assert len(tree.get_entries("guard", "decision")) == 2
    assert tree.current_model() is None
    entries[0]["data"]["blocked"].append("mutated")
    assert tree.get_entries("guard", "decision")[0]["data"] == {"blocked": ["rm -rf /"]}


def test_bad_appends_write_nothing(tree: SessionTree) -> None:
    with pytest.raises(AgentError, match="not JSON-serialisable"):
        tree.append_entry("x", "t", {"f": object()})
    with pytest.raises(AgentError, match="not JSON-serialisable"):
        tree.append_entry("x", "t", float("nan"))
    with pytest.raises(AgentError, match="reserved key"):
        tree.append("custom", {"id": "mine"})
    with pytest.raises(AgentError, match="needs a 'role'"):
        tree.append_message({"content": "x"})
    assert len(tree) == 0 and len(tree.path.read_text().splitlines()) == 1
    custom = tree.append("label", {"text": "checkpoint"})
    assert SessionTree.open(tree.path).get(custom.id).data == {"text": "checkpoint"}


@pytest.mark.parametrize(("line", "problem"), [
    ("{not json", "line 3: invalid JSON"),
    ('["a list"]', "line 3: expected a JSON object, got list"),
    ('{"type": "message", "id": "x1", "parent_id": "ghost", "timestamp": "t", "message": {}}',
     "line 3: parent_id 'ghost' is not an earlier entry"),
    ('{"type": "message", "id": "m1", "parent_id": null, "timestamp": "t", "message": {}}',
     "line 3: duplicate entry id 'm1'"),
    ('{"type": "message", "id": "x2", "parent_id": null, "timestamp": "t"}',
     "line 3: message entry: missing or bad 'message'"),
    ('{"type": "extension", "id": "x3", "parent_id": null, "timestamp": "t", "ext": 5, "entry_type": "a"}',
     "line 3: extension entry: missing or bad 'ext'"),
    ('{"type": "message", "parent_id": null, "timestamp": "t", "message": {}}', "line 3: the entry has no 'id'"),
])
def test_malformed_lines_are_named(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.jsonl"
    header = json.dumps({"type": "session", "version": 1, "id": "s"})
    good = json.dumps({"type": "message", "id": "m1", "parent_id": None, "timestamp": "t", "message": user("x")})
    path.write_text(f"{header}\n{good}\n{line}\n{good.replace('m1', 'm9')}\n")
    with pytest.raises(SessionFileError) as info:
        SessionTree.open(path)
    assert str(info.value).startswith(f"session file {path}, {problem}")
    assert info.value.line == 3 and info.value.path == path


@pytest.mark.parametrize(("content", "problem"), [
    ("", "the file is empty"),
    ('{"type": "message"}\n', "line 1: the first line must be the session header"),
    ('{"type": "session", "version": 99, "id": "s"}\n', "line 1: format version 99 is newer"),
])
def test_bad_headers(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(content)
    with pytest.raises(SessionFileError, match=problem):
        SessionTree.open(path)
    with pytest.raises(SessionFileError, match="cannot read it"):
        SessionTree.open(tmp_path / "absent.jsonl")


def test_torn_last_line(tree: SessionTree) -> None:
    keep = tree.append_message(user("kept"))
    tree.close()
    with tree.path.open("a") as f:
        f.write('{"type": "message", "id": "half", "par')
    with pytest.raises(SessionFileError, match=r"line 3: the last line is incomplete \(a torn write\?\)"):
        SessionTree.open(tree.path)
    repaired = SessionTree.open(tree.path, repair_torn_tail=True)
    assert repaired.leaf_id == keep
    after = repaired.append_message(bot("after repair"))
    repaired.close()
    assert SessionTree.open(tree.path).messages() == [user("kept"), bot("after repair")]
    assert SessionTree.open(tree.path).get(after).parent_id == keep


def test_unterminated_but_valid_last_line_is_kept(tree: SessionTree) -> None:
    tree.append_message(user("one"))
    tree.close()
    text = tree.path.read_text()
    tree.path.write_text(text.rstrip("\n"))
    again = SessionTree.open(tree.path)
    again.append_message(bot("two"))
    again.close()
    assert SessionTree.open(tree.path).messages() == [user("one"), bot("two")]


def test_a_killed_process_loses_nothing_it_appended(tmp_path: Path) -> None:
    path = tmp_path / "crash.jsonl"
    script = textwrap.dedent(f"""
        import os, signal
        from host.agent.session_tree import SessionTree
        tree = SessionTree.create({str(path)!r})
        for i in range(3):
            tree.append_message({{"role": "user", "content": f"m{{i}}"}})
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=60, check=False)
    assert proc.returncode == -9, proc.stderr.decode()
    assert [m["content"] for m in SessionTree.open(path).messages()] == ["m0", "m1", "m2"]


def test_concurrent_appends_form_one_valid_chain(tree: SessionTree) -> None:
    def worker(n: int) -> None:
        for i in range(25):
            tree.append_entry(f"ext{n}", "tick", i)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tree.close()
    resumed = SessionTree.open(tree.path)
    assert len(resumed) == 100 and len(resumed.branch()) == 100
    assert all(len(resumed.get_entries(f"ext{n}", "tick")) == 25 for n in range(4))


def test_new_session_and_fork_to_new_session(tree: SessionTree) -> None:
    a = tree.append_message(user("a"))
    b = tree.append_message(bot("b"))
    tree.append_message(user("c"))
    fresh = tree.new_session()
    assert fresh.path.parent == tree.path.parent and fresh.path != tree.path and len(fresh) == 0
    assert fresh.session_id != tree.session_id and fresh.messages() == []
    copy = tree.fork_to_new_session(b)
    assert copy.messages() == [user("a"), bot("b")] and copy.leaf_id == b
    assert copy.header["parent_session"] == str(tree.path)
    copy.append_message(user("d"))
    copy.close()
    reopened = SessionTree.open(copy.path)
    assert reopened.messages() == [user("a"), bot("b"), user("d")] and reopened.get(b).parent_id == a
    empty = tree.fork_to_new_session(None, tree.path.parent / "empty.jsonl")
    assert empty.path.name == "empty.jsonl" and len(empty) == 0
