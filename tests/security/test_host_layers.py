"""The host-side sandbox layers against real processes: each attack succeeds without the layer, fails with it.

Layers under test (``host.exthost.sandbox``): bubblewrap (both modes the
machine supports), the per-extension cgroup, the dedicated uid. Every attack
runs twice — plain, where it must *succeed* (so no test passes vacuously),
then confined, where it must fail — and the payload prints one line
``OK …`` or ``BLOCKED <exception>``. A test is skipped only with the probe's
own reason for the missing layer. Every wait is bounded; every cgroup made
here is removed after its test (checked), and lock files live in ``tmp_path``.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from host.exthost.sandbox import cgroups, uids
from host.exthost.sandbox.bwrap import BwrapMode, BwrapPlan, bwrap_argv, detect_layout, runtime_paths
from host.exthost.sandbox.probe import Probe, probe

TIMEOUT = 30.0

#: Prints ``OK <what>`` if the body finishes, ``BLOCKED <ExceptionType>: <text>`` if it raises OSError.
ATTACK = """\
import os, socket, sys
try:
{body}
except OSError as exc:
    print("BLOCKED", type(exc).__name__, exc)
else:
    print("OK", result)
"""


@pytest.fixture(scope="module")
def found() -> Probe:
    return probe()


def require(found: Probe, *layers: str) -> None:
    for name in layers:
        layer = found.layer(name)
        if not layer.available:
            pytest.skip(f"{name}: {layer.detail}")


def require_mode(found: Probe, mode: BwrapMode) -> None:
    require(found, "bwrap")
    if mode not in found.bwrap_modes:
        pytest.skip(f"bwrap: {found.layer('bwrap').detail}")
    if mode is BwrapMode.ROOT:
        require(found, "uid")


MODES = pytest.mark.parametrize("mode", [BwrapMode.USERNS, BwrapMode.ROOT])

#: ``outcome_table(attack, layer, outcome under the layer, outcome without it)`` (tests/security/conftest.py).
Record = Callable[[str, str, str, str], None]


def short(text: str) -> str:
    """One table cell: the first line, cut at 70 characters."""
    line = text.strip().splitlines()[0] if text.strip() else "(no output)"
    return line if len(line) <= 70 else line[:67] + "..."


def bwrap_layer(mode: BwrapMode, what: str) -> str:
    return f"bwrap {mode} ({what})"


class Box:
    """One extension's private directory (``<tmp>/run/hXXX/x1`` with ``w``), like :mod:`host.exthost.launch`."""

    def __init__(self, base: Path, lock_dir: Path, disable_userns: bool = False) -> None:
        self.disable_userns = disable_userns
        run = base / "run"
        run.mkdir(mode=0o700, parents=True)
        self.socket_dir = Path(tempfile.mkdtemp(prefix="h", dir=run)) / "x1"
        self.socket_dir.mkdir(mode=0o700)
        self.work_dir = self.socket_dir / "w"
        self.work_dir.mkdir(mode=0o700)
        self.ext_dir = base / "ext"
        self.ext_dir.mkdir()
        self.lock_dir = lock_dir
        self.lease: uids.IdLease | None = None

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "HOME": str(self.work_dir), "TMPDIR": str(self.work_dir),
                "LANG": "C.UTF-8", **extra}

    def uid(self) -> int:
        if self.lease is None:
            self.lease = uids.lease_id(1, self.lock_dir)
            uids.share_private_dir(self.socket_dir, self.lease.uid, self.lease.gid)
        return self.lease.uid

    def prefix(self, mode: BwrapMode, env: dict[str, str], network: bool = False,
               read_only: tuple[str, ...] = ()) -> tuple[str, ...]:
        """bwrap's argv, and in root mode the dedicated-uid step the boot takes (:func:`become`)."""
        uid = self.uid() if mode is BwrapMode.ROOT else None
        plan = BwrapPlan(mode=mode, socket_dir=str(self.socket_dir), work_dir=str(self.work_dir), env=env,
                         runtime=runtime_paths(), extension_dir=str(self.ext_dir), network=network, uid=uid,
                         gid=uid, layout=detect_layout(), read_only=read_only, disable_userns=self.disable_userns)
        return (*bwrap_argv(plan), *(become(uid, uid) if uid is not None else ()))


@pytest.fixture
def box(found: Probe, tmp_path: Path) -> Iterator[Box]:
    made = Box(tmp_path, tmp_path / "ids", found.bwrap_disable_userns)
    yield made
    if made.lease is not None:
        made.lease.release()


def run(argv: list[str] | tuple[str, ...], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def become(uid: int, gid: int) -> list[str]:
    """An argv prefix that takes the boot's own dedicated-uid and capability steps (the same functions), then
    execs the rest of the argv (an absolute path)."""
    code = ("import os, sys; from ext_sdk.sandbox import capabilities, identity; "
            f"identity.become({uid}, {gid}); capabilities.drop_all(); os.execv(sys.argv[1], sys.argv[1:])")
    return [sys.executable, "-I", "-c", code]


def python(code: str) -> list[str]:
    return [sys.executable, "-I", "-c", code]


def attack(body: str) -> list[str]:
    return python(ATTACK.format(body=textwrap.indent(textwrap.dedent(body), "    ")))


def both(box: Box, mode: BwrapMode, argv: list[str], **env: str) -> tuple[str, str]:
    """The payload's first output line plain, then under bwrap."""
    environment = box.env(**env)
    plain = run(argv, environment, box.work_dir)
    boxed = run([*box.prefix(mode, environment), *argv], environment, box.work_dir)
    assert plain.returncode == 0, plain.stderr
    assert boxed.returncode == 0, boxed.stderr
    return plain.stdout.strip(), boxed.stdout.strip()


# ---- bubblewrap: namespaces and the allow-list filesystem


@MODES
def test_pid_namespace_hides_and_shields_the_host(found: Probe, box: Box, mode: BwrapMode,
                                                  outcome_table: Record) -> None:
    require_mode(found, mode)
    plain, boxed = both(box, mode, attack(f"""
        os.kill({os.getpid()}, 0)
        result = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    """))
    assert plain.startswith("OK") and str(os.getpid()) in plain
    assert boxed == "BLOCKED ProcessLookupError [Errno 3] No such process"
    outcome_table("signal the host by pid, list its pids", bwrap_layer(mode, "pid ns"), short(boxed), "OK")
    listing = run([*box.prefix(mode, box.env()), *python(
        "import os; print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")], box.env(), box.work_dir)
    assert len(eval(listing.stdout)) <= 3, listing.stdout  # bwrap's init, maybe setpriv's exec, the payload


@MODES
def test_secret_in_the_host_home_and_tmp_is_invisible(found: Probe, box: Box, mode: BwrapMode,
                                                      outcome_table: Record) -> None:
    require_mode(found, mode)
    home_secret = Path.home() / f".kithost-test-secret-{uuid.uuid4().hex}"
    fd, tmp_secret = tempfile.mkstemp(prefix="kithost-test-secret-", dir="/tmp")
    os.close(fd)
    try:
        for secret in (home_secret, Path(tmp_secret)):
            secret.write_text("s3cret")
            secret.chmod(0o600)
            plain, boxed = both(box, mode, attack(f"result = open({str(secret)!r}).read()"))
            assert plain == "OK s3cret"
            assert boxed.startswith("BLOCKED FileNotFoundError"), boxed
            outcome_table(f"read a 0600 secret in {secret.parent}", bwrap_layer(mode, "mount ns"), short(boxed),
                          short(plain))
    finally:
        home_secret.unlink(missing_ok=True)
        os.unlink(tmp_secret)


@MODES
def test_loopback_tcp_listener_is_unreachable(found: Probe, box: Box, mode: BwrapMode, outcome_table: Record) -> None:
    require_mode(found, mode)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        plain, boxed = both(box, mode, attack(f"""
            socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
            result = "connected"
        """))
    assert plain == "OK connected"
    assert boxed.startswith("BLOCKED ConnectionRefusedError"), boxed  # its own loopback, nobody listening
    outcome_table("TCP connect to a 127.0.0.1 listener", bwrap_layer(mode, "net ns"), short(boxed), plain)


def test_network_grant_shares_the_host_loopback(found: Probe, box: Box) -> None:
    require_mode(found, BwrapMode.USERNS)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        env = box.env()
        code = attack(f'socket.create_connection(("127.0.0.1", {port}), timeout=3).close(); result = "connected"')
        out = run([*box.prefix(BwrapMode.USERNS, env, network=True), *code], env, box.work_dir)
    assert out.stdout.strip() == "OK connected", out.stderr


@MODES
def test_abstract_unix_socket_is_unreachable(found: Probe, box: Box, mode: BwrapMode, outcome_table: Record) -> None:
    require_mode(found, mode)
    name = f"\0kithost-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(name)
        server.listen(4)
        plain, boxed = both(box, mode, attack(f"""
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect({name!r})
            result = "connected"
        """))
    assert plain == "OK connected"
    assert boxed.startswith("BLOCKED ConnectionRefusedError"), boxed  # abstract names live in the netns
    outcome_table("connect to an abstract unix socket", bwrap_layer(mode, "net ns"), short(boxed), plain)


@MODES
def test_tmp_is_private(found: Probe, box: Box, mode: BwrapMode, outcome_table: Record) -> None:
    require_mode(found, mode)
    marker = Path(f"/tmp/kithost-test-marker-{uuid.uuid4().hex}")
    drop = Path(f"/tmp/kithost-test-drop-{uuid.uuid4().hex}")
    marker.write_text("host")
    try:
        plain, boxed = both(box, mode, attack(f"""
            seen = os.path.exists({str(marker)!r})
            open({str(drop)!r}, "w").write("from the extension")
            result = f"seen={{seen}} wrote"
        """))
        assert plain == "OK seen=True wrote" and drop.exists()
        drop.unlink()
        assert boxed == "OK seen=False wrote"  # its /tmp is a tmpfs of its own
        assert not drop.exists()
        outcome_table("see / drop files in the host's /tmp", bwrap_layer(mode, "private /tmp"), boxed, plain)
    finally:
        marker.unlink(missing_ok=True)
        drop.unlink(missing_ok=True)


@MODES
def test_writes_only_in_the_work_dir(found: Probe, box: Box, mode: BwrapMode, outcome_table: Record) -> None:
    require_mode(found, mode)
    targets = {"the extension dir": box.ext_dir / "planted.py", "the socket dir": box.socket_dir / "planted",
               "/etc": Path(f"/etc/kithost-test-{uuid.uuid4().hex}"), "/usr": Path("/usr/kithost-test-planted")}
    try:
        for what, target in targets.items():
            plain, boxed = both(box, mode, attack(f"open({str(target)!r}, 'w').write('x'); result = 'wrote'"))
            assert plain == "OK wrote", what
            target.unlink()
            assert boxed.startswith(("BLOCKED OSError [Errno 30] Read-only file system",
                                     "BLOCKED PermissionError")), (what, boxed)
            assert not target.exists()
            outcome_table(f"write into {what}", bwrap_layer(mode, "read-only binds"), short(boxed), plain)
        work = box.work_dir / "mine.txt"
        env = box.env()
        out = run([*box.prefix(mode, env), *attack(f"open({str(work)!r}, 'w').write('x'); result = 'wrote'")],
                  env, box.work_dir)
        assert out.stdout.strip() == "OK wrote" and work.read_text() == "x", out.stderr
    finally:
        for target in targets.values():
            target.unlink(missing_ok=True)


def test_nested_user_namespaces_are_refused(found: Probe, box: Box, outcome_table: Record) -> None:
    require_mode(found, BwrapMode.USERNS)
    if not found.bwrap_disable_userns:
        pytest.skip(f"bwrap: {found.bwrap_version} has no --disable-userns (0.8.0 or later)")
    argv = ["/usr/bin/unshare", "--user", "--map-root-user", "/usr/bin/true"]
    plain = run(argv, box.env(), box.work_dir)
    assert plain.returncode == 0, plain.stderr
    boxed = run([*box.prefix(BwrapMode.USERNS, box.env()), *argv], box.env(), box.work_dir)
    assert boxed.returncode != 0 and "unshare failed" in boxed.stderr, boxed
    outcome_table("create a user namespace", "bwrap userns (--disable-userns)", short(boxed.stderr), "OK")


def _serve_once(rep: zmq.Socket[bytes], got: list[bytes]) -> None:
    if rep.poll(int(TIMEOUT * 1000)):
        got.append(rep.recv())
        rep.send(b"pong")


@MODES
def test_zmq_ipc_to_the_host_works(found: Probe, box: Box, mode: BwrapMode) -> None:
    require_mode(found, mode)
    endpoint = f"ipc://{box.socket_dir}/e"
    context = zmq.Context()
    rep = context.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    try:
        rep.bind(endpoint)
        if mode is BwrapMode.ROOT:
            box.uid()
            uids.grant_socket(box.socket_dir / "e", box.lease.gid if box.lease else -1)
        env = box.env(KITHOST_EVENTS=endpoint)
        got: list[bytes] = []
        server = threading.Thread(target=_serve_once, args=(rep, got))
        server.start()
        out = run([*box.prefix(mode, env), *python(textwrap.dedent("""
            import os, zmq
            s = zmq.Context().socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVTIMEO, 10000)
            s.connect(os.environ["KITHOST_EVENTS"])
            s.send(b"ping")
            print(s.recv().decode(), os.getuid())
        """))], env, box.work_dir)
        server.join(TIMEOUT)
        assert got == [b"ping"], out.stderr
        expected_uid = box.lease.uid if box.lease else 0
        assert out.stdout.split() == ["pong", str(expected_uid)], out.stderr
    finally:
        rep.close()
        context.term()


def test_zmq_connect_without_the_socket_grant_fails_silently(found: Probe, box: Box) -> None:
    """Why :func:`uids.grant_socket` exists: zmq retries an EACCES connect forever, without an error."""
    require_mode(found, BwrapMode.ROOT)
    endpoint = f"ipc://{box.socket_dir}/e"
    context = zmq.Context()
    rep = context.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    try:
        box.uid()  # the directory is shared with the uid's group ...
        rep.bind(endpoint)  # ... but the socket made after it is srwxr-xr-x root:root: no connect for the uid
        env = box.env(KITHOST_EVENTS=endpoint)
        out = run([*box.prefix(BwrapMode.ROOT, env), *python(textwrap.dedent("""
            import os, zmq
            s = zmq.Context().socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVTIMEO, 1500)
            s.connect(os.environ["KITHOST_EVENTS"])  # no error here
            s.send(b"ping")
            try:
                s.recv()
            except zmq.Again:
                print("timed out")
        """))], env, box.work_dir)
        assert out.stdout.strip() == "timed out", out.stderr
        assert rep.poll(0) == 0  # nothing ever arrived
        uids.grant_socket(box.socket_dir / "e", box.lease.gid if box.lease else -1)  # the control: granted, it works
        got: list[bytes] = []
        server = threading.Thread(target=_serve_once, args=(rep, got))
        server.start()
        out = run([*box.prefix(BwrapMode.ROOT, env), *python(textwrap.dedent("""
            import os, zmq
            s = zmq.Context().socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVTIMEO, 10000)
            s.connect(os.environ["KITHOST_EVENTS"])
            s.send(b"ping")
            print(s.recv().decode())
        """))], env, box.work_dir)
        server.join(TIMEOUT)
        assert got == [b"ping"] and out.stdout.strip() == "pong", out.stderr
    finally:
        rep.close()
        context.term()


def test_another_extensions_uid_cannot_connect_to_its_sockets(found: Probe, tmp_path: Path,
                                                              outcome_table: Record) -> None:
    """Even with the other extension's directory in view (a careless grant), its uid is refused."""
    require_mode(found, BwrapMode.ROOT)
    owner, other = Box(tmp_path / "a", tmp_path / "ids"), Box(tmp_path / "b", tmp_path / "ids")
    try:
        owner.uid()
        other.uid()
        assert owner.lease is not None and other.lease is not None and owner.lease.id != other.lease.id
        path = owner.socket_dir / "e"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(path))
            server.listen(4)
            uids.grant_socket(path, owner.lease.gid)
            code = attack(f"""
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect({str(path)!r})
                result = "connected"
            """)
            results = []
            for who in (owner, other):
                env = who.env()
                argv = [*who.prefix(BwrapMode.ROOT, env, read_only=(str(owner.socket_dir),)), *code]
                results.append(run(argv, env, who.work_dir).stdout.strip())
        assert results[0] == "OK connected"
        assert results[1].startswith("BLOCKED PermissionError [Errno 13]"), results
        outcome_table("connect to another extension's socket", "dedicated uid (socket 0660 root:gid)",
                      short(results[1]), results[0] + " (its own uid)")
    finally:
        for who in (owner, other):
            if who.lease is not None:
                who.lease.release()


# ---- cgroup: memory and pids limits over the whole tree


@pytest.fixture
def cgroup_of(found: Probe) -> Iterator[Callable[..., cgroups.ExtensionCgroup]]:
    made: list[cgroups.ExtensionCgroup] = []

    def make(name: str, memory_bytes: int | None = None, pids_max: int | None = None) -> cgroups.ExtensionCgroup:
        require(found, "cgroup")
        assert found.cgroup is not None
        group = cgroups.ExtensionCgroup.create(found.cgroup, cgroups.cgroup_name(os.getpid(), len(made), name),
                                               memory_bytes, pids_max)
        made.append(group)
        return group

    yield make
    for group in made:
        assert group.remove(), f"cgroup {group.name} could not be removed"
        assert not any(p.exists() for p in group.paths)
    if found.cgroup is not None:
        mine = f"{cgroups.PREFIX}{os.getpid()}-"
        assert [e for b in found.cgroup.bases for e in os.listdir(b) if e.startswith(mine)] == []


HOG = python(textwrap.dedent("""
    blocks = []
    for _ in range(40):
        blocks.append(bytearray(4 << 20))  # 160 MiB, touched (bytearray zero-fills)
    print("allocated", sum(map(len, blocks)) >> 20, "MiB")
"""))


def test_memory_hog_is_oom_killed_and_reported(box: Box, cgroup_of: Callable[..., cgroups.ExtensionCgroup],
                                               outcome_table: Record) -> None:
    group = cgroup_of("hog", memory_bytes=64 << 20)
    plain = run(HOG, box.env(), box.work_dir)
    assert (plain.returncode, plain.stdout.strip()) == (0, "allocated 160 MiB")
    limited = run([*group.join_prefix(), *HOG], box.env(), box.work_dir)
    assert limited.returncode == -9 and "allocated" not in limited.stdout, limited
    stats = group.stats()
    assert stats.oom_kills >= 1 and stats.memory_limit_bytes == 64 << 20
    assert stats.verdict() == "killed: memory limit 64 MiB (cgroup out-of-memory kill)"
    outcome_table("allocate 160 MiB", "cgroup memory (64 MiB)", str(stats.verdict()), plain.stdout.strip())


def test_memory_limit_holds_under_the_full_chain(found: Probe, box: Box,
                                                 cgroup_of: Callable[..., cgroups.ExtensionCgroup]) -> None:
    """cgroup join → bwrap (root mode) → the dedicated uid entered inside → python: the limit still applies."""
    require_mode(found, BwrapMode.ROOT)
    group = cgroup_of("chain", memory_bytes=64 << 20, pids_max=32)
    env = box.env()
    out = run([*group.join_prefix(), *box.prefix(BwrapMode.ROOT, env), *HOG], env, box.work_dir)
    assert out.returncode != 0 and "allocated" not in out.stdout, out
    assert group.stats().verdict() == "killed: memory limit 64 MiB (cgroup out-of-memory kill)"


BOMB = python(textwrap.dedent("""
    import os, time
    children = 0
    try:
        for _ in range(64):
            if os.fork() == 0:
                os.close(1); os.close(2)
                time.sleep(60)
                os._exit(0)
            children += 1
    except OSError as exc:
        print("stopped after", children, type(exc).__name__, flush=True)
    else:
        print("forked", children, flush=True)
"""))


def test_fork_bomb_is_stopped_by_the_pids_limit_even_as_root(
        box: Box, cgroup_of: Callable[..., cgroups.ExtensionCgroup], outcome_table: Record) -> None:
    # Without the limit (a cgroup with no pids.max, only to find and kill the children afterwards).
    unlimited = cgroup_of("bomb-free")
    plain = run([*unlimited.join_prefix(), *BOMB], box.env(), box.work_dir)
    assert plain.stdout.strip() == "forked 64", plain
    assert len(unlimited.pids()) == 64
    assert unlimited.kill() and unlimited.pids() == set()

    limited = cgroup_of("bomb", pids_max=16)
    out = run([*limited.join_prefix(), *BOMB], box.env(), box.work_dir)
    assert out.stdout.strip() == "stopped after 15 BlockingIOError", out  # 16 = the bomb + 15 children
    stats = limited.stats()
    assert stats.forks_refused >= 1 and stats.verdict() == "fork refused: cgroup pids limit (16)"
    outcome_table("fork 64 processes as root", "cgroup pids (16)", out.stdout.strip(), plain.stdout.strip())
    assert limited.kill() and limited.pids() == set()


def test_a_failed_join_runs_nothing(box: Box, cgroup_of: Callable[..., cgroups.ExtensionCgroup]) -> None:
    group = cgroup_of("gone")
    assert group.remove()
    marker = box.work_dir / "ran"
    out = run([*group.join_prefix(), "/usr/bin/touch", str(marker)], box.env(), box.work_dir)
    assert out.returncode == cgroups.EXIT_JOIN and not marker.exists()


def _v2_support(found: Probe) -> cgroups.CgroupSupport:
    """The machine's v2 base: the probe's, or (hybrid machines) the unified hierarchy without controllers."""
    if found.cgroup is not None and found.cgroup.version is cgroups.CgroupVersion.V2:
        return found.cgroup
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if " - cgroup2 " in line and os.access(fields[4], os.W_OK):
            own = next(c[3:] for c in Path("/proc/self/cgroup").read_text().splitlines() if c.startswith("0::"))
            return cgroups.CgroupSupport(cgroups.CgroupVersion.V2, Path(fields[4]) / own.lstrip("/"),
                                         Path(fields[4]) / own.lstrip("/"))
    pytest.skip(f"cgroup: {found.layer('cgroup').detail}")


DAEMONS = ["/bin/sh", "-c", "for i in 1 2 3; do setsid sleep 60 & done; echo started; exec sleep 60"]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_cgroup_kill_catches_children_that_left_the_tree(found: Probe, box: Box, version: str,
                                                         cgroup_of: Callable[..., cgroups.ExtensionCgroup],
                                                         outcome_table: Record) -> None:
    if version == "v1":
        require(found, "cgroup")
        assert found.cgroup is not None
        if found.cgroup.version is not cgroups.CgroupVersion.V1:
            pytest.skip(f"cgroup: {found.cgroup.describe()}")
        group = cgroup_of("daemons")
    else:
        support = _v2_support(found)
        group = cgroups.ExtensionCgroup.create(support, cgroups.cgroup_name(os.getpid(), 90, "daemons"), None, None)
        if not (group.paths[0] / "cgroup.kill").exists():
            group.remove()
            pytest.skip("cgroup: this kernel's cgroup v2 has no cgroup.kill (Linux < 5.14)")
    try:
        proc = subprocess.Popen([*group.join_prefix(), *DAEMONS], stdout=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=box.env())
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        proc.stdout.close()
        members = group.pids()
        assert proc.pid in members and len(members) == 4
        proc.kill()  # the leader only: its setsid children live on, re-parented, in no group of ours
        proc.wait(TIMEOUT)
        survivors = group.pids()
        assert len(survivors) == 3 and proc.pid not in survivors
        assert group.kill() and group.pids() == set()
        outcome_table("setsid children outlive a kill of the leader", f"cgroup {version} kill", "all killed",
                      f"{len(survivors)} survived")
        for pid in survivors:
            assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    finally:
        assert group.remove()
        assert not any(p.exists() for p in group.paths)


# ---- dedicated uid


@pytest.fixture
def readable_secret(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A 0600 root file and a 0644 control file in a directory every uid can enter (so only the mode blocks)."""
    directory = Path(tempfile.mkdtemp(prefix="kithost-test-uid-", dir="/tmp"))
    directory.chmod(0o755)
    secret, control = directory / "secret", directory / "public"
    secret.write_text("s3cret")
    secret.chmod(0o600)
    control.write_text("public")
    control.chmod(0o644)
    yield secret, control
    for path in (secret, control):
        path.unlink()
    directory.rmdir()


def test_dedicated_uid_cannot_read_root_files_or_signal_the_host(
        found: Probe, box: Box, readable_secret: tuple[Path, Path], outcome_table: Record) -> None:
    require(found, "uid")
    secret, control = readable_secret
    lease = uids.lease_id(2, box.lock_dir)
    try:
        drop = become(lease.uid, lease.gid)
        env = box.env()
        for what, argv, expected_error in (
                ("read a root 0600 file", ["/bin/cat", str(secret)], "Permission denied"),
                ("signal the host", ["/bin/kill", "-0", str(os.getpid())], "Operation not permitted")):
            plain = run(argv, env, Path("/"))
            assert plain.returncode == 0, plain.stderr
            dropped = run([*drop, *argv], env, Path("/"))
            assert dropped.returncode != 0 and expected_error in dropped.stderr, dropped
            outcome_table(what, "dedicated uid", short(dropped.stderr), "OK")
        control_read = run([*drop, "/bin/cat", str(control)], env, Path("/"))
        assert control_read.stdout == "public"  # the directory was reachable: the file mode stopped it
        ids = run([*drop, "/usr/bin/id", "-u"], env, Path("/"))
        assert ids.stdout.strip() == str(lease.uid)
    finally:
        lease.release()


def test_root_mode_sandbox_runs_with_no_privilege_left(found: Probe, box: Box,
                                                       readable_secret: tuple[Path, Path]) -> None:
    require_mode(found, BwrapMode.ROOT)
    secret, _ = readable_secret
    env = box.env()
    code = attack(f"""
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        wanted = ("Uid", "Gid", "Groups", "CapEff", "CapBnd", "CapPrm", "CapInh", "CapAmb", "NoNewPrivs")
        print(*(f"{{k}}={{' '.join(status[k].split())}}" for k in wanted))
        result = open({str(secret)!r}).read()
    """)
    plain = run(code, env, box.work_dir)
    assert plain.stdout.splitlines()[-1] == "OK s3cret"
    out = run([*box.prefix(BwrapMode.ROOT, env, read_only=(str(secret.parent),)), *code], env, box.work_dir)
    assert box.lease is not None
    uid = box.lease.uid
    facts, verdict = out.stdout.splitlines()
    zero = "0000000000000000"
    assert facts == (f"Uid={uid} {uid} {uid} {uid} Gid={uid} {uid} {uid} {uid} Groups= CapEff={zero} "
                     f"CapBnd={zero} CapPrm={zero} CapInh={zero} CapAmb={zero} NoNewPrivs=1"), out.stderr
    assert verdict.startswith("BLOCKED PermissionError [Errno 13]"), verdict  # visible (granted), not readable
    st = box.socket_dir.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o750, uid)  # reachable by its gid, writable by nobody


# ---- the probe on this machine


USERNS_BLOCKED = ("bwrap: No permissions to create new namespace, likely because the kernel does not allow "
                  "non-privileged user namespaces. See <https://deb.li/bubblewrap> or "
                  "<file:///usr/share/doc/bubblewrap/README.Debian.gz>.")


@pytest.fixture
def fake_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Put a ``bwrap`` script first on PATH (and an empty probe cache in place)."""
    import host.exthost.sandbox.probe as probe_module

    monkeypatch.setattr(probe_module, "_cache", {})

    def install(body: str) -> None:
        directory = tmp_path / "fakebin"
        directory.mkdir()
        script = directory / "bwrap"
        script.write_text("#!/bin/sh\n" + textwrap.dedent(body))
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{directory}:/usr/bin:/bin")

    return install


def test_probe_reports_bwraps_own_words_when_namespaces_are_blocked(fake_bwrap: Callable[[str], None]) -> None:
    fake_bwrap(f"""
        [ "$1" = --version ] && {{ echo "bubblewrap 0.8.0"; exit 0; }}
        echo '{USERNS_BLOCKED}' >&2
        exit 1
    """)
    result = probe(fresh=True)
    layer = result.layer("bwrap")
    assert not layer.available
    expected = USERNS_BLOCKED + (f"; as root without a user namespace: {USERNS_BLOCKED}" if os.geteuid() == 0 else "")
    assert layer.detail == expected
    assert f"bwrap: {expected}" in result.reasons and result.bwrap_mode is None
    if result.on("landlock") and result.on("seccomp"):
        assert str(result.level) == "reduced"


def test_probe_falls_back_to_root_mode_when_user_namespaces_are_blocked(
        found: Probe, fake_bwrap: Callable[[str], None]) -> None:
    require_mode(found, BwrapMode.ROOT)
    fake_bwrap(f"""
        for arg; do
            [ "$arg" = --unshare-user ] && {{ echo '{USERNS_BLOCKED}' >&2; exit 1; }}
        done
        exec /usr/bin/bwrap "$@"
    """)
    result = probe(fresh=True)
    assert result.bwrap_modes == {BwrapMode.ROOT} and result.bwrap_mode is BwrapMode.ROOT
    assert result.layer("bwrap").detail.endswith(f"no user namespaces ({USERNS_BLOCKED}); root mode (no user "
                                                 "namespace, the dedicated uid entered inside)")
    assert result.on("uid") and str(result.level) == "strong"


def test_probe_says_when_bwrap_is_not_installed(found: Probe, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import host.exthost.sandbox.probe as probe_module

    monkeypatch.setattr(probe_module, "_cache", {})
    monkeypatch.setattr(probe_module, "BWRAP", str(tmp_path / "no-such-bwrap"))
    monkeypatch.setenv("PATH", str(tmp_path))
    result = probe(fresh=True)
    assert result.layer("bwrap") == probe_module.Layer(
        "bwrap", False, "bwrap not found on PATH or in /usr/bin (install bubblewrap)")
    if found.uid_needs_bwrap:  # a pyenv under /root: another uid can run it only through bwrap's binds
        assert not result.on("uid")
        assert result.layer("uid").detail.endswith("bwrap, whose root-mode binds would make it reachable, "
                                                   "is not installed")


def test_probe_reports_every_layer_with_a_reason(found: Probe) -> None:
    assert [lay.name for lay in found.layers] == ["bwrap", "landlock", "seccomp", "cgroup", "uid"]
    assert all(lay.detail for lay in found.layers)
    print("\n" + found.report())
    again = probe(fresh=True)
    assert [lay.available for lay in again.layers] == [lay.available for lay in found.layers]
    assert again.elapsed_ms < 1000, again.timings
    off = probe(force_off={"bwrap", "landlock"})
    assert off.layer("bwrap").detail == off.layer("landlock").detail == "forced off by config"
    assert str(off.level) == "weak" or not found.on("seccomp")
