"""Sessions kept by default (issue 12, item 3), through the real CLI with its data directory in a tmp dir.

* ``run``/``chat`` without a session option keep the session in ``$XDG_DATA_HOME/kithost/sessions``, in a
  folder of the working directory; ``--ephemeral`` keeps nothing;
* ``--continue`` takes the last one here, ``--resume ID`` the one named, ``--resume`` alone asks on a terminal
  and is an error without one;
* ``session list`` shows this directory's sessions (``--all``: every directory's);
* a torn session's error names ``kithost session repair FILE``, which drops the torn line, keeps a backup and
  says what it dropped; the session then continues.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import ROOT

TIMEOUT = 120


def kithost(home: Path, cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config"),
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "host", *args], capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=cwd, env=env, input=stdin)


def run_json(home: Path, cwd: Path, script: Path, *args: str) -> dict[str, Any]:
    out = kithost(home, cwd, "run", "--script", str(script), "--no-discover", "--json", *args)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def listed(home: Path, cwd: Path, *args: str) -> list[dict[str, Any]]:
    out = kithost(home, cwd, "session", "list", "--json", *args)
    assert out.returncode == 0, out.stderr
    sessions: list[dict[str, Any]] = json.loads(out.stdout)
    return sessions


def user_prompts(path: Path) -> list[str]:
    return [json.loads(line)["message"]["content"] for line in path.read_text().splitlines()
            if '"role":"user"' in line]


def test_sessions_are_kept_per_directory_and_continued_resumed_and_listed(tmp_path: Path) -> None:
    here, there = tmp_path / "project", tmp_path / "elsewhere"
    here.mkdir()
    there.mkdir()
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"turns": [[{"text": "ok"}]] * 4, "strict_turns": False}))

    first = run_json(tmp_path, here, script, "first prompt")
    kept = Path(first["session"])
    assert kept.is_file() and (tmp_path / "data" / "kithost" / "sessions") in kept.parents
    assert kept.parent.name.startswith("project-") or "project" in kept.parent.name

    again = run_json(tmp_path, here, script, "--continue", "second prompt")
    assert again["session"] == str(kept) and user_prompts(kept) == ["first prompt", "second prompt"]

    other = Path(run_json(tmp_path, there, script, "over there")["session"])
    assert other.parent != kept.parent

    [mine] = listed(tmp_path, here)
    assert mine["path"] == str(kept) and mine["prompts"] == 2 and mine["first_prompt"] == "first prompt"
    assert mine["cwd"] == str(here.resolve()) and not mine["problem"]
    assert {s["path"] for s in listed(tmp_path, here, "--all")} == {str(kept), str(other)}
    human = kithost(tmp_path, here, "session", "list")
    assert human.returncode == 0 and str(kept) in human.stdout and "first prompt" in human.stdout
    assert str(other) not in human.stdout

    resumed = run_json(tmp_path, there, script, "--resume", mine["id"][:8], "--cwd", str(here), "third")
    assert resumed["session"] == str(kept) and user_prompts(kept)[-1] == "third"

    unknown = kithost(tmp_path, here, "run", "--script", str(script), "--no-discover", "--resume", "zzzz", "x")
    assert unknown.returncode == 1 and "no session 'zzzz'" in unknown.stderr and "Traceback" not in unknown.stderr
    pick = kithost(tmp_path, here, "chat", "--script", str(script), "--no-discover", "--resume")
    assert pick.returncode == 1 and "--resume needs a session ID when not on a terminal" in pick.stderr
    nothing = kithost(tmp_path, tmp_path, "run", "--script", str(script), "--no-discover", "--continue", "x")
    assert nothing.returncode == 1 and "no session to continue" in nothing.stderr


def test_chat_keeps_its_session_unless_ephemeral(tmp_path: Path) -> None:
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"turns": [[{"text": "hi there"}]] * 2}))
    chat = kithost(tmp_path, tmp_path, "chat", "--script", str(script), "--no-discover", stdin="hello\n/session\n")
    assert chat.returncode == 0, chat.stderr
    [kept] = listed(tmp_path, tmp_path)
    assert kept["first_prompt"] == "hello" and f"{kept['path']} (kept)" in chat.stdout

    ephemeral = kithost(tmp_path, tmp_path, "chat", "--script", str(script), "--no-discover", "--ephemeral",
                        stdin="hello\n/session\n")
    assert ephemeral.returncode == 0 and "ephemeral (deleted at exit)" in ephemeral.stdout, ephemeral.stderr
    assert len(listed(tmp_path, tmp_path)) == 1


def test_a_torn_session_names_the_repair_command_which_drops_the_tail_and_keeps_a_backup(tmp_path: Path) -> None:
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"turns": [[{"text": "ok"}]] * 2, "strict_turns": False}))
    kept = Path(run_json(tmp_path, tmp_path, script, "before the crash")["session"])
    whole = kept.read_bytes()
    kept.write_bytes(whole + b'{"type":"message","id":"torn')  # the process died mid-write

    torn = kithost(tmp_path, tmp_path, "run", "--script", str(script), "--no-discover", "--continue", "after")
    assert torn.returncode == 1 and "Traceback" not in torn.stderr
    assert f"kithost session repair {kept}" in torn.stderr
    [broken] = listed(tmp_path, tmp_path)
    assert "incomplete" in broken["problem"]

    repaired = kithost(tmp_path, tmp_path, "session", "repair", str(kept))
    assert repaired.returncode == 0, repaired.stderr
    lines = whole.count(b"\n") + 1
    assert f"dropped the torn line {lines}" in repaired.stdout and '{"type":"message","id":"torn' in repaired.stdout
    backup = kept.with_name(kept.name + ".bak")
    assert f"kept in {backup}" in repaired.stdout
    assert backup.read_bytes() == whole + b'{"type":"message","id":"torn' and kept.read_bytes() == whole

    again = kithost(tmp_path, tmp_path, "session", "repair", str(kept))
    assert again.returncode == 0 and "nothing to repair" in again.stdout
    after = kithost(tmp_path, tmp_path, "run", "--script", str(script), "--no-discover", "--continue", "after")
    assert after.returncode == 0 and f"session: {kept} (kithost run --continue" in after.stderr, after.stderr
    assert user_prompts(kept) == ["before the crash", "after"]
