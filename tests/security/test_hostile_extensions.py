"""Hostile extensions against the real host, at every isolation level this machine can produce.

Issue 8, "What must hold": one malicious extension per attack
(``tests/security/hostile_ext.py``, copied into each extension's directory,
the attack named by ``ATTACK`` in its manifest's ``[env]``), loaded by a real
:class:`~host.ExtensionHost` (trust all) next to a well-behaved extension.
For each level the test

1. loads the well-behaved extension and every hostile one at once
   (``load_many``; one host per level);
2. emits one ``tool_call`` per attack (``attack <name>``; only that
   extension acts on it) and reads the outcome it recorded in its state
   (``BLOCKED …`` / ``DONE …``), or the kill reason from its transitions;
3. checks what it can see from outside (a planted file, a received datagram,
   a dead process) agrees with what the extension reported;
4. checks the host carried on: the well-behaved extension still blocks
   ``rm -rf`` and has seen every ``tool_call``, was never restarted; the
   state file loads back with its count; the secrets, the operator's config
   and the ``/tmp`` marker hold what the test wrote; the session file does
   too wherever the attack on it was expected to be stopped.

The expected outcome is derived, not listed per level: :data:`STOPPERS`
names, per attack, the layers any one of which stops it, and a level's layers
in force are read from what its launches report (``ext.confined.layers``)
plus the mechanisms that are on at every level (capabilities dropped,
rlimits, the peer check on sockets, host-call and handshake checks, the
watchdog). BLOCKED is asserted exactly when one of the attack's stoppers is
in force; otherwise the attack must have SUCCEEDED (that is what weak
means: recorded as "not stopped (weak)").

Which layer stopped it is read from the evidence (:func:`attribute`): the
first errno in the outcome (``ENOENT``/``EROFS``/``ESRCH``/``ECONNREFUSED``:
bwrap's namespaces; ``EACCES``: Landlock, else the uid's file modes or dropped
capabilities; ``EPERM``: seccomp, else Landlock's scopes, the uid, the
capabilities; ``ENOSYS``: seccomp; ``EFBIG``: rlimits; ``EAGAIN`` on fork: the
cgroup's pids limit or the uid's ``RLIMIT_NPROC``), else a telling phrase (a
ZAP refusal: the peer gate; ``cgroup out-of-memory kill``: the cgroup; a
watchdog kill reason; a refused host call or handshake). The attributed layer
must be one of the attack's stoppers in force; the table prints it with its
evidence.

Levels: ``strong`` (defaults), ``reduced`` (no bwrap, no uid: Landlock +
seccomp + cgroup), ``weak`` (no Landlock either, ``allow_weak``),
``no-landlock`` (no Landlock, no uid: bwrap + seccomp + cgroup, where a Node
extension without ``processes`` must be refused), and an
``unconfined`` control with every switchable layer off whose outcomes are
the table's "without it" column (so no attack passes because its code is
broken). A level this machine cannot produce is skipped with the probe's
reasons.

Resource attacks, bounded: the fork bomb forks (exec is denied by seccomp
at every real level, so ``sleep`` children would test seccomp, not the pids
limit) up to 200 children that sleep 5 s, counts them and kills them all;
its extension has ``max_children=8, max_threads=32`` (cgroup ``pids.max``
56). The memory hog touches 600 MiB under ``memory_mb=200`` and holds it
3 s; the cgroup OOM-kills it where its launch has one (the watchdog then
leaves memory to the kernel: counted once, not summed over processes), the
watchdog's RSS limit does elsewhere (the kill reason comes from
``ext.transitions``). The control run gives the fork bomb no limit at all, so
its "without it" cell shows what an unlimited extension gets.

One run per level is shared by that level's test cases (the first case of a
level runs it, closes its host and stops every process before it ends, so
the leftover-process check holds); results live in :data:`_RUNS`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import tool_call

from host import ExtensionHost, HostConfig
from host.config import ExtensionLimits, Sandbox, SandboxLayer, Supervision, TrustMode
from host.errors import ExtensionStartError
from host.exthost.extension import RunningExtension
from host.exthost.sandbox.probe import IsolationLevel, probe
from host.exthost.state_store import StateStore
from host.exthost.supervisor import ExtState

pytestmark = pytest.mark.slow  # four hosts of ~27 sandboxed extensions each

HOSTILE_SOURCE = (Path(__file__).resolve().parent / "hostile_ext.py").read_text()
#: ``outcome_table(attack, layer, outcome under the layer, outcome without it)`` (tests/security/conftest.py).
Record = Callable[[str, str, str, str], None]
WAIT_S = 15.0

GOOD = """\
from ext_sdk import Block, Extension
ext = Extension("good", permissions=["conversation"])

# A generous deadline: this suite tests confinement, not latency (the hot-path default is 250 ms, and a busy CI
# machine running ~28 sandboxed extensions beside a large pytest process can stall the host that long).
@ext.on("tool_call", deadline_ms=5000)
def gate(event, ctx):
    ctx.set_state("seen", ctx.get_state("seen", 0) + 1)
    if "rm -rf" in event.parsed_args.get("command", ""):
        return Block("good: rm -rf is not allowed")
"""

# ---------------------------------------------------------------------------------------------- expectations

#: What each stopper token means (the table's layer column uses the token).
LAYER_WORDS = {
    "bwrap": "bubblewrap namespaces (mount/pid/net, private /tmp)",
    "uid": "dedicated uid (and RLIMIT_NPROC for it)",
    "landlock": "Landlock filesystem rules",
    "landlock-tcp": "Landlock TCP rules (ABI 4+)",
    "landlock-scope": "Landlock abstract-socket/signal scopes (ABI 6+)",
    "seccomp": "seccomp filter",
    "cgroup": "cgroup memory/pids limits",
    "caps": "capabilities dropped (every level)",
    "rlimits": "rlimits (every level)",
    "peer-gate": "ZAP peer check on every socket (every level)",
    "host-calls": "host-call permission check (every level)",
    "handshake": "handshake grant check (every level)",
    "watchdog-memory": "watchdog RSS limit (every level)",
    "watchdog-procs": "watchdog child/thread limits",
    "exec-check": "launch refused: a Node extension without `processes` where Landlock is off (no allow_weak)",
}

#: Attack → the layers any one of which stops it (in the order they act, outermost first).
STOPPERS: dict[str, tuple[str, ...]] = {
    "read-home-secret": ("bwrap", "uid", "landlock"),
    "read-ssh-key": ("bwrap", "uid", "landlock"),
    "read-operator-config": ("bwrap", "uid", "landlock"),
    "read-host-environ": ("bwrap", "uid", "caps", "landlock"),
    "read-host-memory": ("bwrap", "uid", "caps", "landlock"),
    "write-outside-its-dirs": ("bwrap", "uid", "landlock"),
    "plant-code-in-its-own-dir": ("bwrap", "uid", "landlock"),
    "drop-a-file-in-the-host-tmp": ("bwrap", "landlock"),
    "append-to-the-session-file": ("bwrap", "uid", "landlock"),
    "append-to-the-state-file": ("bwrap", "uid", "landlock"),
    "read-another-extensions-files": ("bwrap", "uid", "landlock"),
    "write-a-file-over-the-size-limit": ("rlimits",),
    "tcp-connect-to-loopback": ("bwrap", "landlock-tcp", "seccomp"),
    "udp-send-to-loopback": ("bwrap", "seccomp"),
    "connect-to-an-abstract-unix-socket": ("bwrap", "landlock-scope"),
    "signal-the-host": ("bwrap", "uid", "landlock-scope"),
    "sigterm-a-process-of-the-host": ("bwrap", "uid", "landlock-scope"),
    "ptrace-the-host": ("bwrap", "uid", "caps", "landlock", "seccomp"),
    "spawn-a-shell": ("landlock", "seccomp"),
    "io-uring-setup": ("seccomp",),
    "list-other-extensions-processes": ("bwrap", "landlock"),
    "signal-another-extension": ("bwrap", "uid", "landlock-scope"),
    "forge-frames-on-another-extensions-sockets": ("bwrap", "uid", "peer-gate"),
    "drive-the-hosts-operator-socket": ("bwrap", "uid", "landlock", "peer-gate"),
    "call-a-host-api-not-granted": ("host-calls",),
    "subscribe-without-the-conversation-grant": ("handshake",),
    "fork-bomb": ("cgroup", "uid", "watchdog-procs"),
    "memory-hog": ("cgroup", "watchdog-memory"),
    # A Node extension without `processes`: seccomp must allow execve (the boot execs node), so only Landlock's
    # execute rule stops it, or the host refusing its launch where Landlock is off (tests/security/hostile_ext.mjs).
    "node-spawns-a-shell": ("landlock", "exec-check"),
}
ATTACKS = tuple(STOPPERS)
#: Attacks made by a Node extension (hostile_ext.mjs), not by hostile_ext.py.
NODE_ATTACKS = ("node-spawns-a-shell",)
HOSTILE_JS_SOURCE = (Path(__file__).resolve().parent / "hostile_ext.mjs").read_text()
JS_SDK = (Path(__file__).resolve().parents[2] / "ext_sdk" / "js").resolve()  # the sandbox binds its real path
#: Why the Node attacks cannot run here, or ``None``.
NO_NODE = (None if shutil.which("node") and (JS_SDK / "node_modules").is_dir()
           else "no node on PATH or the JS SDK's dependencies are not installed (make)")
#: Emitted last: they kill or flood their own process.
LAST = ("fork-bomb", "memory-hog")
#: Limits of this suite's hosts.
MAX_FILE_MB, HOG_MB, HOG_LIMIT_MB, FORK_BOMB = 1, 600, 200, 200
FORK_LIMITS = ExtensionLimits(max_children=8, max_threads=32)  # cgroup pids.max = 32 + 8 + 16 = 56
NO_LIMITS = ExtensionLimits(memory_mb=0, max_children=0, max_threads=0, max_fds=0)


def ext_name(attack: str) -> str:
    return f"h-{attack}"


@dataclass(frozen=True)
class Level:
    name: str
    disable: tuple[SandboxLayer, ...]
    allow_weak: bool
    expect: IsolationLevel
    #: The control run: every switchable layer off; its outcomes are the "without it" column.
    control: bool = False

    def sandbox(self, base: Path) -> Sandbox:
        return Sandbox(allow_weak=self.allow_weak, disable=self.disable, trust=TrustMode.ALL,
                       trust_file=base / "trust.json", max_file_mb=MAX_FILE_MB)


LEVELS = {
    "strong": Level("strong", (), False, IsolationLevel.STRONG),
    "reduced": Level("reduced", (SandboxLayer.BWRAP, SandboxLayer.UID), False, IsolationLevel.REDUCED),
    "weak": Level("weak", (SandboxLayer.BWRAP, SandboxLayer.UID, SandboxLayer.LANDLOCK), True, IsolationLevel.WEAK),
    # Namespaces + seccomp without Landlock or a dedicated uid (a kernel without Landlock, non-root): the
    # mount namespace alone hides the host's files; Node extensions without `processes` do not start.
    "no-landlock": Level("no-landlock", (SandboxLayer.LANDLOCK, SandboxLayer.UID), False, IsolationLevel.REDUCED),
}
CONTROL = Level("unconfined", tuple(SandboxLayer), True, IsolationLevel.WEAK, control=True)


def unavailable(level: Level) -> str | None:
    """Why this machine cannot produce ``level`` (the probe's reasons), or ``None``."""
    found = probe(frozenset(str(layer) for layer in level.disable))
    if found.level is level.expect:
        return None
    return f"{level.name} isolation is not possible here (probe says {found.level}: {'; '.join(found.reasons)})"


def tokens_in_force(layers: tuple[str, ...], fork_limits: Supervision, allow_weak: bool) -> frozenset[str]:
    """The stopper tokens in force for a launch that reported ``layers`` (``Confined.layers``)."""
    out = {"caps", "rlimits", "peer-gate", "host-calls", "handshake", "watchdog-memory"}
    if not allow_weak:  # a launch that could start any program is refused (confine's exec check)
        out.add("exec-check")
    if fork_limits.max_children or fork_limits.max_threads:
        out.add("watchdog-procs")
    for text in layers:
        word = text.split()[0]
        if word == "landlock":  # "landlock abi 7"
            abi = int(text.split()[2])
            out.add("landlock")
            if abi >= 4:
                out.add("landlock-tcp")
            if abi >= 6:
                out.add("landlock-scope")
        elif word in ("bwrap", "uid", "cgroup", "seccomp"):
            out.add(word)
    return frozenset(out)


# ---------------------------------------------------------------------------------------------- the arena


class Arena:
    """What the attacks aim at, in real places the host can read: secrets, listeners, a victim process."""

    def __init__(self, base: Path) -> None:
        tag = uuid.uuid4().hex[:12]
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self._made: list[Path] = []  # removed at close, deepest first
        self.contents: dict[Path, str] = {}  # every file written here, with what it must still hold
        home = Path.home()
        self.home_dir = self._mkdir(home / f".kithost-hostile-{tag}", 0o700)
        self.home_secret = self._secret(self.home_dir / "secret", "home-secret-" + tag)
        self.outside_file = self.home_dir / "planted-by-an-extension"
        ssh = self._mkdir(home / ".ssh", 0o700)
        self.ssh_key = self._secret(ssh / f"id_kithost_hostile_{tag}", "-----BEGIN OPENSSH PRIVATE KEY----- fake")
        config_dir = self._mkdir(home / ".config" / "kithost", 0o700)
        self.operator_config = self._secret(config_dir / f"config.hostile-{tag}.toml",
                                            '[providers.fake]\napi_key = "sk-fake-operator-key"\n')
        self.session_file = base / "session.jsonl"
        self.session_text = '{"type": "session", "id": "s1"}\n{"type": "message", "role": "user"}\n'
        self._secret(self.session_file, self.session_text)
        self.state_file = base / "session.ext-state.json"
        self.tmp_marker = self._secret(Path(f"/tmp/kithost-hostile-marker-{tag}"), "the host's /tmp")
        self.tmp_drop = Path(f"/tmp/kithost-hostile-drop-{tag}")
        self.tcp = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.abstract_name = f"kithost-hostile-{tag}"
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind("\0" + self.abstract_name)
        self.abstract.listen(16)
        self.received = {"tcp": 0, "udp": 0, "abstract": 0}
        self._stop = threading.Event()
        self._listener = threading.Thread(target=self._listen, name="hostile-listeners", daemon=True)
        self._listener.start()
        self.victim = subprocess.Popen(["sleep", "60"], start_new_session=True, stdin=subprocess.DEVNULL)

    def _mkdir(self, path: Path, mode: int) -> Path:
        if not path.exists():
            path.mkdir(mode=mode, parents=True)
            self._made.append(path)
        return path

    def _secret(self, path: Path, text: str) -> Path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        self._made.append(path)
        self.contents[path] = text
        return path

    def changed(self) -> list[Path]:
        """Files of the arena that are gone or hold something else than the test wrote."""
        out = []
        for path, text in self.contents.items():
            try:
                if path.read_text() != text:
                    out.append(path)
            except OSError:
                out.append(path)
        return out

    def _listen(self) -> None:
        sel = selectors.DefaultSelector()
        for sock, kind in ((self.tcp, "tcp"), (self.udp, "udp"), (self.abstract, "abstract")):
            sel.register(sock, selectors.EVENT_READ, kind)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(0.1):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    self.received[key.data] += 1
                    if key.data == "udp":
                        _, peer = sock.recvfrom(64)
                        sock.sendto(b"ack", peer)
                    else:
                        conn, _ = sock.accept()
                        conn.close()
        finally:
            sel.close()

    def targets(self, host_pid: int) -> dict[str, Any]:
        return {"home_secret": str(self.home_secret), "ssh_key": str(self.ssh_key),
                "operator_config": str(self.operator_config), "outside_file": str(self.outside_file),
                "session_file": str(self.session_file), "state_file": str(self.state_file),
                "tmp_marker": str(self.tmp_marker), "tmp_drop": str(self.tmp_drop),
                "tcp_port": self.tcp.getsockname()[1], "udp_port": self.udp.getsockname()[1],
                "abstract": self.abstract_name, "host_pid": host_pid, "victim_pid": self.victim.pid,
                "max_file_mb": MAX_FILE_MB, "fork_bomb": FORK_BOMB, "hog_mb": HOG_MB}

    def victim_dead(self) -> bool:
        """Whether the sacrificial child died (a SIGTERM, if any, was sent several events ago)."""
        try:
            self.victim.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return False
        return True

    def close(self) -> None:
        self._stop.set()
        self._listener.join(timeout=5)
        if self.victim.poll() is None:
            self.victim.kill()
        self.victim.wait(timeout=10)
        for sock in (self.tcp, self.udp, self.abstract):
            sock.close()
        self.tmp_drop.unlink(missing_ok=True)
        self.outside_file.unlink(missing_ok=True)
        for path in reversed(self._made):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- one level's run


@dataclass
class LevelRun:
    level: Level
    #: The layers in force as the launches report them (``Confined.layers`` of a hostile extension).
    layers: tuple[str, ...] = ()
    tokens: frozenset[str] = frozenset()
    outcomes: dict[str, str] = field(default_factory=dict)
    #: What the test saw from outside, per attack with a visible effect: did it happen?
    effects: dict[str, bool] = field(default_factory=dict)
    #: Everything wrong with the host afterwards (empty: it carried on).
    problems: list[str] = field(default_factory=list)
    #: Facts about the run, for the report.
    notes: dict[str, Any] = field(default_factory=dict)


def write_extension(root: Path, name: str, files: dict[str, str], main: str, env: dict[str, str],
                    runtime: str = "python") -> Path:
    """An extension directory with its own manifest (``[env]`` table)."""
    directory = root / name
    directory.mkdir(parents=True)
    for file_name, text in files.items():
        (directory / file_name).write_text(text)
    lines = [f'name = "{name}"', 'version = "0.1.0"', f'runtime = "{runtime}"', f'main = "{main}"',
             'events = ["tool_call"]', 'permissions = ["conversation"]', "", "[env]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in env.items()]
    (directory / "extension.toml").write_text("\n".join(lines) + "\n")
    return directory


def payload_pid(ext: RunningExtension) -> int:
    """The host-side pid of the extension's Python process (inside bwrap/setpriv/the cgroup join)."""
    assert ext.process is not None
    root = psutil.Process(ext.process.pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            if "ext_sdk" in " ".join(proc.cmdline()):
                return proc.pid
        except psutil.Error:
            continue
    raise AssertionError(f"no Python process in {ext.name}'s tree")


def kill_reason(ext: RunningExtension, after: int) -> str | None:
    """The reason of a transition after index ``after`` that says the host or the kernel killed it."""
    for transition in ext.transitions[after:]:
        if "killed" in transition.reason or "limit" in transition.reason:
            return transition.reason
    return None


def run_level(level: Level, base: Path, new_host: Callable[..., ExtensionHost]) -> LevelRun:
    result = LevelRun(level)
    arena = Arena(base)
    host: ExtensionHost | None = None
    try:
        exts = base / "exts"
        good_dir = write_extension(exts, "good", {"main.py": GOOD}, "main.py", {})
        targets = arena.targets(os.getpid())
        dirs = [write_extension(exts, ext_name(a), {"hostile_ext.py": HOSTILE_SOURCE}, "hostile_ext.py",
                                {"ATTACK": a, "HOSTILE_TARGETS": json.dumps(targets)})
                for a in ATTACKS if a not in NODE_ATTACKS]
        if NO_NODE is None:
            js = HOSTILE_JS_SOURCE.replace('"../../ext_sdk/js/index.mjs"', json.dumps(str(JS_SDK / "index.mjs")))
            dirs += [write_extension(exts, ext_name(a), {"hostile_ext.mjs": js}, "hostile_ext.mjs", {}, "node")
                     for a in NODE_ATTACKS]
        # The control measures the fork bomb with no limit at all (the watchdog's included).
        fork_limits = NO_LIMITS if level.control else FORK_LIMITS
        config = HostConfig(
            sandbox=level.sandbox(base), state_path=arena.state_file, search_dirs=(),
            extension_limits={ext_name("memory-hog"): ExtensionLimits(memory_mb=HOG_LIMIT_MB),
                              ext_name("fork-bomb"): fork_limits},
            # The operator grants it nothing: its tool_call subscription must be refused at the handshake.
            permissions={ext_name("subscribe-without-the-conversation-grant"): ()},
        )
        host = new_host(config)
        started = time.monotonic()
        report = host.load_many([good_dir, *dirs])
        result.notes["load_s"] = round(time.monotonic() - started, 2)
        failed = {name: exc for name, exc in report.failed}
        good = host.extension("good")
        if "good" in failed:
            raise AssertionError(f"the well-behaved extension did not start: {failed['good']}")
        for attack in ("subscribe-without-the-conversation-grant", *NODE_ATTACKS):  # stopped at the load
            if ext_name(attack) in failed:
                exc = failed.pop(ext_name(attack))
                reason = exc.reason if isinstance(exc, ExtensionStartError) else str(exc)
                result.outcomes[attack] = f"BLOCKED load failed: {reason}"
        for attack in NODE_ATTACKS:
            if attack not in result.outcomes and NO_NODE is None:
                node = host.extension(ext_name(attack))
                assert node.confined is not None
                result.notes[attack] = {"layers": node.confined.layers, "level": str(node.confined.level),
                                        "notes": node.confined.notes,
                                        "status": node.info()["sandbox"]}
        if failed:
            raise AssertionError(f"hostile extensions did not start: {failed}")
        sample = host.extension(ext_name("read-home-secret"))
        assert sample.confined is not None
        result.layers = sample.confined.layers
        result.tokens = tokens_in_force(result.layers, config.supervision_for(ext_name("fork-bomb")),
                                        level.allow_weak)
        # The launches carry every layer the probe offers at this level (the expectations rest on that).
        found = host.confiner.probe
        result.notes["level"] = str(sample.confined.level)
        result.notes["probe_layers_not_in_force"] = [str(layer) for layer in SandboxLayer
                                                     if found.on(str(layer)) and str(layer) not in result.tokens]
        result.notes["good_layers"] = good.confined.layers if good.confined else ()
        assert good.channel is not None and good.process is not None
        good_pid, good_proc = payload_pid(good), good.process.pid
        other_file = good.channel.endpoints.work_dir / "notes.txt"
        fd = os.open(other_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("the good extension's private notes")
        dynamic = {"other_pid": good_pid, "other_file": str(other_file),
                   "other_events": good.channel.endpoints.events, "other_calls": good.channel.endpoints.calls}
        order = [a for a in ATTACKS if a not in LAST and a not in result.outcomes
                 and not (a in NODE_ATTACKS and NO_NODE)] + list(LAST)
        for attack in order:
            host.state.set(ext_name(attack), "targets", dynamic)
        emitted = 0
        for attack in order:
            ext = host.extension(ext_name(attack))
            settle = time.monotonic() + WAIT_S  # an extension restarted by an earlier attack's fallout: wait
            while ext.state is not ExtState.READY and time.monotonic() < settle:
                time.sleep(0.05)
            mark = len(ext.transitions)
            sent = host.emit("tool_call", tool_call(f"attack {ext.name}", call_id=f"c-{attack}"))
            emitted += 1
            outcome = host.state.get(ext.name, "outcome")
            deadline = time.monotonic() + WAIT_S
            while outcome is None and time.monotonic() < deadline:
                reason = kill_reason(ext, mark)  # killed mid-attack: the host says why
                if reason is not None:
                    outcome = f"KILLED {reason}"
                    break
                time.sleep(0.05)
                outcome = host.state.get(ext.name, "outcome")  # a handler that overran the event's budget
            failures = [(f.handler, f.kind, f.detail) for f in sent.failures]
            recent = [t.reason for t in ext.transitions[-4:]]
            result.outcomes[attack] = outcome or (f"NO OUTCOME (state {ext.state.value}; failures {failures}; "
                                                  f"transitions {recent}; log: {ext.log.tail(5)!r})")

        # What the test sees from outside.
        result.effects = {
            "write-outside-its-dirs": arena.outside_file.exists(),
            "plant-code-in-its-own-dir": (exts / ext_name("plant-code-in-its-own-dir") / "planted.py").exists(),
            "drop-a-file-in-the-host-tmp": arena.tmp_drop.exists(),
            "append-to-the-session-file": arena.session_file.read_text() != arena.session_text,
            "tcp-connect-to-loopback": arena.received["tcp"] > 0,
            "udp-send-to-loopback": arena.received["udp"] > 0,
            "connect-to-an-abstract-unix-socket": arena.received["abstract"] > 0,
            "sigterm-a-process-of-the-host": arena.victim_dead(),
        }

        # The host carried on: the well-behaved extension answers, saw every event, was never restarted.
        problems = result.problems
        blocked = host.emit("tool_call", tool_call("rm -rf /", call_id="check-1"))
        passed = host.emit("tool_call", tool_call("ls", call_id="check-2"))
        emitted += 2
        if not (blocked.stopped and blocked.reason == "good: rm -rf is not allowed"):
            problems.append(f"the well-behaved extension no longer blocks rm -rf: {blocked}")
        if passed.stopped or any(f.handler == "good" for f in (*blocked.failures, *passed.failures)):
            problems.append(f"a harmless tool_call was disturbed: {passed}")
        if host.state.get("good", "seen") != emitted:
            problems.append(f"the well-behaved extension saw {host.state.get('good', 'seen')} of {emitted} events")
        if good.restarts or not good.state.running or good.process is None or good.process.pid != good_proc:
            problems.append(f"the well-behaved extension was disturbed: {good.state.value}, "
                            f"{good.restarts} restarts, transitions {[t.reason for t in good.transitions]}")
        session_attack_stopped = bool(set(STOPPERS["append-to-the-session-file"]) & result.tokens)
        for path in arena.changed():  # secrets, the operator's config, the /tmp marker, the session file
            if path != arena.session_file or session_attack_stopped:
                problems.append(f"{path} was changed or removed")
        try:
            on_disk = StateStore(arena.state_file)
            if on_disk.get("good", "seen") != emitted:
                problems.append(f"the state file says good saw {on_disk.get('good', 'seen')} events")
        except Exception as exc:  # noqa: BLE001 - any failure to read it back is the finding
            problems.append(f"the host's state file no longer loads: {exc}")
        result.notes["good_frame_errors"] = dict(good.channel.frame_errors) if good.channel else {}
        result.notes["states"] = {e.name: e.state.value for e in host.extensions()}
        return result
    finally:
        if host is not None:
            host.close()
        arena.close()


#: Level name → its run (or the exception it raised), shared by that level's test cases.
_RUNS: dict[str, LevelRun | BaseException] = {}


def get_run(level: Level, tmp_path: Path, new_host: Callable[..., ExtensionHost]) -> LevelRun:
    if level.name not in _RUNS:
        try:
            _RUNS[level.name] = run_level(level, tmp_path / level.name, new_host)
        except BaseException as exc:  # noqa: BLE001 - every case of the level reports it
            _RUNS[level.name] = exc
    found = _RUNS[level.name]
    if isinstance(found, BaseException):
        raise AssertionError(f"the {level.name} run failed: {found!r}") from found
    return found


def short(text: str, width: int = 90) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[:width - 3] + "..."


def stopped(outcome: str) -> bool:
    return outcome.startswith(("BLOCKED", "KILLED"))


# ---------------------------------------------------------------------------------------------- which layer

#: What an errno says about the layer that refused, the layers that answer so first, in the order they act
#: (seccomp refuses at syscall entry, before any check of the kernel's own).
ERRNO_LAYERS: dict[str, tuple[str, ...]] = {
    "ENOENT": ("bwrap",),  # the path does not exist in its mount namespace
    "EROFS": ("bwrap",),  # bound read-only
    "ESRCH": ("bwrap",),  # the process is not in its pid namespace
    "ECONNREFUSED": ("bwrap",),  # the listener (an abstract socket) lives in another network namespace
    "EACCES": ("landlock", "landlock-tcp", "uid", "caps"),  # Landlock's refusal; file modes against its uid
    "EPERM": ("seccomp", "landlock-scope", "uid", "caps"),  # SECCOMP_RET_ERRNO(EPERM); scopes; other uid
    "ENOSYS": ("seccomp",),  # io_uring and friends: "not implemented" to the extension
    "EFBIG": ("rlimits",),  # RLIMIT_FSIZE
    "EAGAIN": ("cgroup", "uid"),  # pids.max; RLIMIT_NPROC of the dedicated uid
}
#: Evidence without an errno: a phrase of the outcome → the layers it points at.
PHRASE_LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("could start other programs", ("exec-check",)),
    ("(cgroup out-of-memory kill)", ("cgroup",)),
    ("killed: memory limit", ("watchdog-memory",)),
    ("killed: thread limit", ("watchdog-procs",)),
    ("killed: child process limit", ("watchdog-procs",)),
    ("handshake refused", ("handshake",)),
    ("HostCallError", ("host-calls",)),
    ("private /tmp", ("bwrap",)),
    ("a network namespace of its own", ("bwrap",)),
    ("none of another extension", ("bwrap", "landlock")),  # its own pid namespace, or /proc/<pid> unreadable
    ("peer check (ZAP)", ("peer-gate",)),
    ("status request got: no answer", ("peer-gate",)),
    ("status request got: refused", ("peer-gate",)),
)
_ERRNO_NAME = re.compile(r"\b(E[A-Z]{2,})\b")
_ERRNO_NUMBER = re.compile(r"\[Errno (\d+)\]")


def evidence(outcome: str) -> tuple[str, tuple[str, ...]]:
    """The first evidence of what stopped an attack (an errno, else a telling phrase) and the layers it names.

    The first errno in the text is the first refusal (``ops.key: PermissionError: [Errno 13] …; a forged
    request got: …`` was stopped at the key); ``("", ())`` when the outcome says nothing about a layer."""
    if outcome.startswith("BLOCKED load failed"):  # the host's refusal, in words (they may quote a probe errno)
        return next(((phrase, layers) for phrase, layers in PHRASE_LAYERS if phrase in outcome), ("", ()))
    number = _ERRNO_NUMBER.search(outcome)
    names = [n for n in _ERRNO_NAME.findall(outcome) if n in ERRNO_LAYERS]
    first = None
    if number is not None and int(number.group(1)) in errno.errorcode:
        first = (number.start(), errno.errorcode[int(number.group(1))])
    if names:
        at = outcome.index(names[0])
        if first is None or at < first[0]:
            first = (at, names[0])
    if first is not None and first[1] in ERRNO_LAYERS:
        return first[1], ERRNO_LAYERS[first[1]]
    for phrase, layers in PHRASE_LAYERS:
        if phrase in outcome:
            return phrase, layers
    return "", ()


def attribute(attack: str, outcome: str, in_force: frozenset[str]) -> tuple[str, str]:
    """``(layer, evidence)``: the layer that stopped ``attack``, read from ``outcome`` (``""``: none fits).

    The layer is the first of those the evidence names that is one of the attack's stoppers and in force."""
    found, candidates = evidence(outcome)
    fits = [layer for layer in candidates if layer in STOPPERS[attack] and layer in in_force]
    return (fits[0] if fits else ""), found


# ---------------------------------------------------------------------------------------------- the tests

#: Attacks that are NOT stopped at strong isolation (a sandbox gap): xfail(strict) so the gap stays visible.
STRONG_GAPS: dict[str, str] = {}


def cases() -> list[Any]:
    out = []
    for level in LEVELS:
        for attack in ATTACKS:
            marks = []
            if level == "strong" and attack in STRONG_GAPS:
                marks.append(pytest.mark.xfail(strict=True, reason=STRONG_GAPS[attack]))
            out.append(pytest.param(level, attack, marks=marks, id=f"{level}-{attack}"))
    return out


@pytest.mark.parametrize(("level_name", "attack"), cases())
def test_hostile_extension(level_name: str, attack: str, tmp_path: Path, new_host: Callable[..., ExtensionHost],
                           outcome_table: Record) -> None:
    level = LEVELS[level_name]
    if attack in NODE_ATTACKS and NO_NODE is not None:
        pytest.skip(NO_NODE)
    why = unavailable(level)
    if why is not None:
        if attack == ATTACKS[0]:  # one row per level that could not be tested
            outcome_table("(every attack)", f"{level_name}: NOT TESTED", why, "-")
        pytest.skip(why)
    run = get_run(level, tmp_path, new_host)
    control = get_run(CONTROL, tmp_path, new_host)
    outcome, unconfined = run.outcomes[attack], control.outcomes[attack]
    assert run.notes["level"] == str(level.expect), run.notes
    assert run.notes["probe_layers_not_in_force"] == [], run.notes
    still_on = [t for t in STOPPERS[attack] if t in control.tokens]  # caps, rlimits, host-side checks
    if still_on:
        unconfined = f"[{' + '.join(still_on)} still on] {unconfined}"
    in_force = [t for t in STOPPERS[attack] if t in run.tokens]
    by, found = attribute(attack, outcome, run.tokens) if in_force else ("", "")
    layer = (f"{level_name}: {by} ({found}; in force: {' + '.join(in_force)})" if by
             else f"{level_name}: {'?' if in_force else 'none in force'}")
    shown = outcome if in_force else f"not stopped ({level_name}): {outcome}"
    outcome_table(attack, layer, short(shown), short(unconfined))

    assert not outcome.startswith("NO OUTCOME"), outcome
    if in_force:
        assert stopped(outcome), (f"{attack} was NOT stopped at {level_name} although "
                                  f"{', '.join(LAYER_WORDS[t] for t in in_force)} is in force: {outcome}")
        assert by, (f"{attack} was stopped at {level_name}, but the evidence ({found or 'none'}) names none of "
                    f"the layers in force that stop it ({', '.join(in_force)}): {outcome}")
    else:
        assert outcome.startswith("DONE"), f"{attack} should succeed at {level_name} (none of {STOPPERS[attack]} " \
                                           f"in force) but: {outcome}"
    if attack in run.effects:  # what the test sees from outside agrees with what the extension reported
        assert run.effects[attack] == outcome.startswith("DONE"), (attack, outcome, run.effects[attack])
    if attack == "forge-frames-on-another-extensions-sockets" and "peer check" in outcome:
        assert run.notes["good_frame_errors"].get("unauthenticated", 0) >= 1, run.notes
    if attack == "subscribe-without-the-conversation-grant":
        assert "exposes conversation content" in outcome and "'conversation' was not granted" in outcome, outcome
    if attack == "memory-hog":
        assert "memory limit" in outcome, outcome
    if attack in NODE_ATTACKS:
        node_launch(level, run, outcome)
    assert run.problems == [], f"the host did not carry on at {level_name}: {run.problems}"


def node_launch(level: Level, run: LevelRun, outcome: str) -> None:
    """What the Node extension's launch claims: no more than is in force (issue 8)."""
    if outcome.startswith("BLOCKED load failed"):  # refused: Landlock is off and weak isolation not allowed
        assert not level.allow_weak and "landlock" not in run.tokens, outcome
        assert "allow_weak" in outcome and "processes" in outcome, outcome
        return
    launch = run.notes["node-spawns-a-shell"]
    [seccomp] = [layer for layer in launch["layers"] if layer.startswith("seccomp")]
    if "landlock" in run.tokens:  # exec is allowed for node only; Landlock keeps it to node
        assert seccomp == "seccomp (no inet, exec allowed: node)" and launch["notes"] == (), launch
        assert launch["level"] == run.notes["level"], launch
    else:  # started only because weak isolation is allowed: shown as weak, with why
        assert level.allow_weak and launch["level"] == "weak", launch
        if "seccomp" in run.tokens:
            assert seccomp == "seccomp (no inet, exec allowed: node, any program)", launch
        [note] = launch["notes"]
        assert "could start other programs" in note and "landlock: forced off by config" in note, launch
        assert note in launch["status"]["reasons"], launch


def test_the_control_run_shows_every_attack_works_without_the_switchable_layers(
        tmp_path: Path, new_host: Callable[..., ExtensionHost]) -> None:
    """The unconfined run: what is not stopped by an always-on mechanism must have succeeded."""
    run = get_run(CONTROL, tmp_path, new_host)
    for attack, outcome in run.outcomes.items():
        always = [t for t in STOPPERS[attack] if t in run.tokens]
        if always:
            assert stopped(outcome), (attack, outcome)
        else:
            assert outcome.startswith("DONE"), (attack, outcome)
        if attack in run.effects:
            assert run.effects[attack] == outcome.startswith("DONE"), (attack, outcome)
    assert run.problems == [], run.problems


def test_weak_isolation_without_allow_weak_starts_nothing(tmp_path: Path, new_host: Callable[..., ExtensionHost],
                                                          outcome_table: Record) -> None:
    disable = LEVELS["weak"].disable
    found = probe(frozenset(str(layer) for layer in disable))
    if found.level is not IsolationLevel.WEAK:
        pytest.skip(f"forcing {', '.join(disable)} off gives {found.level} here, not weak")
    exts = tmp_path / "exts"
    good = write_extension(exts, "good", {"main.py": GOOD}, "main.py", {})
    host = new_host(HostConfig(sandbox=Sandbox(disable=disable, trust=TrustMode.ALL,
                                               trust_file=tmp_path / "trust.json")))
    with pytest.raises(ExtensionStartError) as caught:
        host.load(good)
    message = str(caught.value)
    assert "weak" in message and "allow_weak" in message, message
    for reason in found.reasons:  # every missing layer, with why it is missing
        assert reason in message, (reason, message)
    ext = host.extension("good")
    assert ext.state.value == "dead" and ext.process is None, ext.info()
    outcome_table("start at weak isolation without allow_weak", "level check (confine)",
                  short(caught.value.reason, 70), "starts (allow_weak = true)")
