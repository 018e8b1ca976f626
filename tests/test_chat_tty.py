"""``kithost chat`` on a real pseudo-terminal (issue 12, item 4): the chat a person meets.

The real ``kithost chat`` runs with its stdin, stdout and stderr on a pty (``os.openpty``); the test types
keys and reads what the terminal would show. One session checks:

* line editing — ``helo``, Left-arrow, ``l``: the model receives ``hello`` (its script expects it);
* completion of slash commands — ``/he`` + Tab runs ``/help``, which lists the extension's command with its
  description;
* a spinner with the elapsed time while the turn works (a tool that sleeps);
* colour — the tool line in cyan;
* an extension's notice, printed while the prompt waits, appears above it (the prompt is drawn again after it);
* history — Up recalls ``hello`` (the second turn's script expects it again), and the history is kept in the
  data directory.

And with ``NO_COLOR`` set, no colour escape at all; and an extension nobody trusted yet is asked about on the
terminal (what it asks for, ``[y/N]``), and a ``y`` loads it and records the trust. Every wait is bounded; the
process is always reaped.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import ROOT, MakeExt

#: Longest wait for one expected output.
WAIT_S = 60.0
#: SGR colour escapes (foreground 30-37, 90-97, 256-colour and true colour).
COLOUR = re.compile(rb"\x1b\[(?:[0-9;]*;)?(?:3[0-7]|9[0-7]|38;[25];[0-9;]+)m")

NOTIFIER = textwrap.dedent("""\
    import time

    from ext_sdk import Extension

    ext = Extension()

    @ext.on("agent_end", deadline_ms=10000)
    def later(event, ctx):
        time.sleep(2.0)  # the chat is back at its prompt by now (the turn ended before agent_end went out)
        ctx.info("notice from notifier")

    @ext.command("greet", "say hello to someone")
    def greet(args, ctx):
        return f"hello {args or 'you'}"
""")


class Terminal:
    """The master side of a pty running one process: type keys, wait for output (bounded)."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        self.fd = master
        self.proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.output = b""
        self._seen = 0

    def send(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the process closed the terminal
            return False
        if not chunk:
            return False
        self.output += chunk
        return True

    def expect(self, pattern: bytes | re.Pattern[bytes], timeout: float = WAIT_S) -> re.Match[bytes]:
        """Wait until ``pattern`` appears after what earlier expects consumed; move past it."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.output, self._seen)
            if found:
                self._seen = found.end()
                return found
            left = deadline - time.monotonic()
            if left <= 0 or (not self._read(min(left, 0.2)) and not regex.search(self.output, self._seen)):
                tail = self.output[-3000:].decode("utf-8", "replace")
                raise AssertionError(f"{regex.pattern!r} not seen; the terminal shows (end):\n{tail}")

    def wait(self, timeout: float = WAIT_S) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        return self.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self.fd)


@contextmanager
def terminal(command: list[str], cwd: Path, env: dict[str, str]) -> Iterator[Terminal]:
    term = Terminal(command, cwd, env)
    try:
        yield term
    finally:
        term.close()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM", "COLUMNS", "LINES")}
    # PROMPT_TOOLKIT_NO_CPR: this terminal does not answer cursor-position requests (a real one does)
    return {**env, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1", **extra}


def _kithost(*args: str) -> list[str]:
    return [sys.executable, "-m", "host", *args]


def test_chat_on_a_terminal_edits_completes_spins_colours_and_prints_notices_above_the_prompt(
        tmp_path: Path, make_ext: MakeExt) -> None:
    notifier = make_ext("notifier", NOTIFIER, ["agent_end"])
    env = _env(tmp_path)
    trusted = subprocess.run(_kithost("ext", "trust", "notifier", "-e", str(notifier), "--yes"), env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert trusted.returncode == 0, trusted.stderr
    script = tmp_path / "tty.json"
    script.write_text(json.dumps({"turns": [
        [{"expect": {"last_role": "user", "last_contains": "hello"},
          "tool_calls": [{"name": "bash", "arguments": {"command": "sleep 1.5"}}]},
         {"text": "answer one"}],
        [{"expect": {"last_role": "user", "last_contains": "hello"}, "text": "answer two"}],
    ]}))
    session = tmp_path / "s.jsonl"
    command = _kithost("chat", "--script", str(script), "-e", str(notifier), "--no-discover",
                       "--session", str(session))
    with terminal(command, tmp_path, env) as term:
        term.expect(b"you> ")
        term.send(b"/he")
        term.expect(b"this list")  # the completion menu, with each command's description
        term.send(b"\t\r")  # Tab takes the completion: /help
        term.expect(re.compile(rb"/greet +say hello to someone"))
        term.expect(b"you> ")

        term.send(b"helo\x1b[Dl\r")  # Left-arrow, then insert the missing l
        spinner = term.expect(re.compile(rb"working (\d+\.\d)s"))
        term.expect(b"answer one")
        assert COLOUR.search(term.output), "no colour on a colour terminal"
        assert re.search(rb"\x1b\[36m\xe2\x86\x92 bash sleep 1.5", term.output), "the tool line is not cyan"
        assert float(spinner.group(1)) >= 0.3

        term.expect(b"you> ")  # back at the prompt, then the extension speaks
        notice = term.expect(b"[notifier info] notice from notifier")
        # ... above the prompt: the prompt line is erased first (not written into), then drawn again below
        shown = term.output[:notice.start()]
        assert b"\x1b[J" in shown[shown.rindex(b"you> "):], "the notice was written into the prompt line"
        term.expect(b"you> ")

        term.send(b"\x1b[A\r")  # Up: the previous prompt, sent again
        term.expect(b"answer two")
        term.expect(b"you> ")
        term.send(b"\x04")  # Ctrl-D
        term.expect(b"session kept:")
        assert term.wait() == 0

    prompts = [json.loads(line)["message"]["content"] for line in session.read_text().splitlines()
               if '"role":"user"' in line]
    assert prompts == ["hello", "hello"]
    history = (tmp_path / "data" / "kithost" / "chat_history").read_text()
    assert "+hello" in history and "+/help" in history


def test_chat_on_a_terminal_with_no_color_writes_no_colour(tmp_path: Path) -> None:
    script = tmp_path / "plain.json"
    script.write_text(json.dumps({"turns": [[{"tool_calls": [{"name": "bash", "arguments": {"command": "true"}}]},
                                             {"text": "plain answer"}]]}))
    command = _kithost("chat", "--script", str(script), "--no-discover", "--ephemeral")
    with terminal(command, tmp_path, _env(tmp_path, NO_COLOR="1")) as term:
        term.expect(b"you> ")
        term.send(b"go\r")
        term.expect(b"plain answer")
        term.expect(b"you> ")
        term.send(b"\x04")
        assert term.wait() == 0
    assert b"\xe2\x86\x92 bash true" in term.output and not COLOUR.search(term.output), term.output[-2000:]


def test_chat_on_a_terminal_asks_to_trust_a_new_extension_and_loads_it_on_yes(
        tmp_path: Path, make_ext: MakeExt) -> None:
    """The first-load trust prompt (``ask_trust`` in ``host/agent/cli/chat.py``), answered on the terminal."""
    greeter = make_ext("greeter", NOTIFIER, ["agent_end"], permissions=["conversation"])
    env = _env(tmp_path)
    script = tmp_path / "none.json"
    script.write_text(json.dumps({"turns": []}))  # no turn is taken: the extension's command answers
    command = _kithost("chat", "--script", str(script), "-e", str(greeter), "--no-discover", "--ephemeral")
    with terminal(command, tmp_path, env) as term:
        term.expect(b"extension greeter 0.1.0")
        term.expect(b"is not trusted yet.")
        term.expect(b"asks for: host calls: conversation")
        term.expect(b"asks for: conversation content through: agent_end")
        term.expect(b"trust greeter with this? [y/N] ")
        assert b"you> " not in term.output, term.output[-2000:]  # nothing runs before the operator answers
        term.send(b"y\r")
        term.expect(b"you> ")
        term.send(b"/greet bob\r")  # the extension's own command: it was loaded
        term.expect(b"hello bob")
        term.expect(b"you> ")
        term.send(b"\x04")
        assert term.wait() == 0, term.output[-2000:]
    listed = subprocess.run(_kithost("ext", "trust", "--list"), env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0 and "greeter" in listed.stdout, listed.stdout + listed.stderr
