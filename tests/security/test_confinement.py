"""Hostile extensions against the in-child confinement (``python -I -m ext_sdk.sandbox.boot``).

Every attack runs as a real extension file loaded by the real SDK path (the
boot confines the process, then ``ext_sdk run`` imports the file, whose
module-level code is the attack; it prints one ``RESULT {json}`` line and
exits). Each attack runs twice, concurrently: under the one layer that must
stop it — it must FAIL, with that layer's errno — and without any layer — it
must SUCCEED, so no test passes because the attack was broken. Landlock's
sub-rules (TCP ports, abstract-socket and signal scopes) get a third run with
only that rule switched off.

Root matters: this suite normally runs as root (like CI). RLIMIT_NPROC does not
bind uid 0 (a documented limitation, asserted below); the non-root test
re-runs the attacks as an unprivileged uid through ``setpriv``.

Targets are chosen not to hurt the test run: ptrace attaches to a ``sleep``
the test starts (attaching to pytest itself would stop it), signals are
signal 0, sockets are listeners the test opens on loopback / in the abstract
namespace, files live under tmp.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
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
from typing import Any

import pytest
import zmq

from ext_sdk.sandbox.plan import ENV_ACTIVE, ENV_PLAN, EXIT_SANDBOX, BootPlan, LandlockRules, SeccompPolicy

pytestmark = pytest.mark.slow  # ~40 sandboxed extension processes, ~0.1 s each

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
BOOT = [PY, "-I", "-m", "ext_sdk.sandbox.boot"]
TIMEOUT = 30
#: The launch secret the SDK reads before it imports the extension file (in the payloads' directory).
LAUNCH_SECRET = "launch.secret"
LD_SO = next((p for p in ("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1",
                          "/usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1", "/lib64/ld-linux-x86-64.so.2")
              if os.path.exists(p)), "/lib64/ld-linux-x86-64.so.2")
IS_ROOT = os.geteuid() == 0
Record = Callable[[str, str, str, str], None]


# ---------------------------------------------------------------------------------------------- harness

PAYLOAD = '''\
import json, os, sys
CTX = json.loads({ctx!r})

def attack():
{body}

try:
    out = {{"ok": True, "detail": attack()}}
except BaseException as exc:  # the attack failed: how?
    out = {{"ok": False, "errno": getattr(exc, "errno", None), "err": f"{{type(exc).__name__}}: {{exc}}"[:300]}}
out["active"] = os.environ.get({active!r})
out["plan_visible"] = {plan_env!r} in os.environ
print("RESULT " + json.dumps(out, default=repr), flush=True)
os._exit(0)
'''


class Result:
    """What one sandboxed run reported."""

    def __init__(self, rc: int, stdout: str, stderr: str) -> None:
        self.rc, self.stdout, self.stderr = rc, stdout, stderr
        lines = [line[7:] for line in stdout.splitlines() if line.startswith("RESULT ")]
        self.data: dict[str, Any] = json.loads(lines[-1]) if lines else {}

    @property
    def ok(self) -> bool:
        assert self.data, f"no RESULT (rc={self.rc}):\n{self.stdout}\n{self.stderr}"
        return bool(self.data["ok"])

    @property
    def errno(self) -> int | None:
        return self.data.get("errno")

    def outcome(self) -> str:
        if not self.data:
            return f"rc={self.rc}"
        return "succeeded" if self.ok else str(self.data["err"]).split(":")[0] + f" errno={self.errno}"

    def __repr__(self) -> str:
        return f"Result(rc={self.rc}, data={self.data}, stderr={self.stderr[-500:]!r})"


class Arena:
    """A tmp layout plus the things an attacker aims at: a secret, loopback listeners, a victim process."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.ext = base / "ext"  # the extension's own (read-only) files
        self.work = base / "work"  # its only writable dir
        self.outside = base / "outside"  # a dir the host can see
        for d in (self.ext, self.work, self.outside):
            d.mkdir(parents=True, exist_ok=True)
        self.secret = base / "secret.txt"
        self.secret.write_text("s3cr3t-token")
        # The SDK reads its launch secret before it imports the extension (the attack): one beside the payloads.
        (self.ext / LAUNCH_SECRET).write_bytes(os.urandom(32))
        self.tcp = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.abstract_name = f"kithost-sbx-test-{uuid.uuid4().hex}"
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind("\0" + self.abstract_name)
        self.abstract.listen(16)
        self.victim: subprocess.Popen[bytes] | None = None
        self.count = 0

    def ctx(self) -> dict[str, Any]:
        return {"secret": str(self.secret), "work": str(self.work), "outside": str(self.outside),
                "tcp_port": self.tcp.getsockname()[1], "udp_port": self.udp.getsockname()[1],
                "abstract": self.abstract_name, "victim": self.victim.pid if self.victim else 0,
                "test_pid": os.getpid()}

    def start_victim(self) -> int:
        self.victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
        return self.victim.pid

    def close(self) -> None:
        if self.victim is not None:
            self.victim.kill()
            self.victim.wait(timeout=TIMEOUT)
        for s in (self.tcp, self.udp, self.abstract):
            s.close()

    def read_paths(self) -> list[str]:
        """What a Python extension needs to read: interpreter, venv, ext_sdk, system libs, its own dir."""
        return [sys.base_prefix, sys.prefix, str(ROOT / "ext_sdk"), "/usr", "/etc/ld.so.cache", "/dev/null",
                "/dev/urandom", "/proc", str(self.ext)]

    def landlock(self, **overrides: Any) -> LandlockRules:
        kw: dict[str, Any] = {"read": self.read_paths(), "write": [str(self.work)], "tcp_connect": [],
                              "tcp_bind": [], "scope_abstract_unix": True, "scope_signal": True, "required": True}
        kw.update(overrides)
        return LandlockRules(**kw)

    def write_payload(self, body: str) -> Path:
        self.count += 1
        path = self.ext / f"hostile_{self.count}.py"
        path.write_text(PAYLOAD.format(ctx=json.dumps(self.ctx()), body=textwrap.indent(textwrap.dedent(body), "    "),
                                       active=ENV_ACTIVE, plan_env=ENV_PLAN))
        return path

    def plan(self, run_path: Path, **layers: Any) -> BootPlan:
        return BootPlan(run_path=str(run_path), drop_capabilities=layers.pop("drop_capabilities", False), **layers)


def start(plan: BootPlan, argv: list[str] | None = None) -> subprocess.Popen[str]:
    env = {"PATH": "/usr/bin:/bin", "KITHOST_EVENTS": "ipc:///nonexistent/events", **plan.env()}
    if plan.run_path is not None:
        env["KITHOST_SECRET_FILE"] = str(Path(plan.run_path).parent / LAUNCH_SECRET)
    return subprocess.Popen(argv or BOOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd="/")


def finish(proc: subprocess.Popen[str]) -> Result:
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=TIMEOUT)
    return Result(proc.returncode, out, err)


def run_all(*plans: BootPlan) -> list[Result]:
    """Run several plans at once (each a separate child) and collect their results."""
    procs = [start(p) for p in plans]
    return [finish(p) for p in procs]


@pytest.fixture
def arena(tmp_path: Path) -> Iterator[Arena]:
    a = Arena(tmp_path)
    try:
        yield a
    finally:
        a.close()


# ---------------------------------------------------------------------------------------------- attacks


class Attack:
    def __init__(self, name: str, layer: str, body: str, layers: Callable[[Arena], dict[str, Any]], expect: int,
                 control: Callable[[Arena], dict[str, Any]] | None = None, victim: bool = False,
                 root_only: str = "") -> None:
        self.name, self.layer, self.body, self.layers, self.expect = name, layer, body, layers, expect
        self.control, self.victim, self.root_only = control, victim, root_only


def only_seccomp(**kw: bool) -> Callable[[Arena], dict[str, Any]]:
    return lambda a: {"seccomp": SeccompPolicy(**kw)}


def only_landlock(**kw: Any) -> Callable[[Arena], dict[str, Any]]:
    return lambda a: {"landlock": a.landlock(**kw)}


TCP = '''
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(("127.0.0.1", CTX["tcp_port"]))
return s.getpeername()
'''

ENVIRON = 'return len(open(f"/proc/{CTX[\'test_pid\']}/environ", "rb").read())'

ATTACKS = [
    Attack("read a secret outside the allow-list", "landlock fs", 'return open(CTX["secret"]).read()',
           only_landlock(), errno.EACCES),
    Attack("write outside the work dir", "landlock fs",
           'open(CTX["outside"] + f"/planted-{os.getpid()}", "w").write("x"); return "written"', only_landlock(),
           errno.EACCES),
    Attack("read the test process's /proc/<pid>/environ", "capabilities + landlock", ENVIRON,
           lambda a: {"drop_capabilities": True, "landlock": a.landlock()}, errno.EACCES),
    Attack("TCP connect to a loopback listener", "seccomp", TCP, only_seccomp(), errno.EPERM),
    Attack("TCP connect to a loopback listener", "landlock tcp", TCP, only_landlock(), errno.EACCES,
           control=only_landlock(tcp_connect=None)),
    Attack("TCP bind a port", "landlock tcp", '''
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
return s.getsockname()''', only_landlock(), errno.EACCES, control=only_landlock(tcp_bind=None)),
    Attack("UDP datagram to loopback", "seccomp", '''
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
return s.sendto(b"exfil", ("127.0.0.1", CTX["udp_port"]))''', only_seccomp(), errno.EPERM),
    Attack("IPv6 socket", "seccomp", 'import socket; return socket.socket(socket.AF_INET6).fileno()',
           only_seccomp(), errno.EPERM),
    Attack("raw packet socket", "seccomp", '''
import socket
return socket.socket(socket.AF_PACKET, socket.SOCK_RAW).fileno()''', only_seccomp(), errno.EPERM,
           root_only="AF_PACKET needs CAP_NET_RAW even without a sandbox"),
    Attack("connect to an abstract unix socket", "landlock scope", '''
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\\0" + CTX["abstract"])
return "connected"''', only_landlock(), errno.EPERM, control=only_landlock(scope_abstract_unix=False)),
    Attack("signal the test process (kill 0)", "landlock scope", 'os.kill(CTX["test_pid"], 0); return "alive"',
           only_landlock(), errno.EPERM, control=only_landlock(scope_signal=False)),
    Attack("ptrace(PTRACE_ATTACH) another process", "seccomp", '''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(ctypes.c_long(16), ctypes.c_long(CTX["victim"]), None, None) != 0:
    e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
return "attached"''', only_seccomp(), errno.EPERM, victim=True),
    Attack("process_vm_readv another process", "seccomp", '''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(8)
local = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 8)
remote = (ctypes.c_void_p * 2)(0x1000, 8)  # unmapped: EFAULT means the call itself was allowed
n = libc.process_vm_readv(CTX["victim"], local, 1, remote, 1, 0)
e = ctypes.get_errno()
if n < 0 and e != 14:
    raise OSError(e, os.strerror(e))
return "reached the victim's memory"''', only_seccomp(), errno.EPERM, victim=True),
    Attack("io_uring_setup", "seccomp", '''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(ctypes.c_long(425), ctypes.c_long(8), params)
if fd < 0:
    e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
os.close(fd)
return "ring"''', only_seccomp(), errno.ENOSYS),
    Attack("unshare(CLONE_NEWUSER)", "seccomp", '''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000) != 0:
    e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
return "new user namespace"''', only_seccomp(), errno.EPERM),
    Attack("spawn /bin/sh", "seccomp exec", '''
import subprocess
return subprocess.run(["/bin/sh", "-c", "echo pwned"], capture_output=True, text=True, timeout=10).stdout''',
           only_seccomp(), errno.EPERM),
    Attack("exec a program outside landlock.execute", "landlock exec", '''
import subprocess
return subprocess.run(["/bin/sh", "-c", "echo pwned"], capture_output=True, text=True, timeout=10).stdout''',
           only_landlock(), errno.EACCES),
    Attack("create a character device node", "seccomp", '''
import stat
os.mknod(CTX["work"] + f"/mem-{os.getpid()}", stat.S_IFCHR | 0o600, os.makedev(1, 1))
return "device node"''', only_seccomp(), errno.EPERM, root_only="mknod of a device needs CAP_MKNOD"),
    Attack("chown a file to another user", "capabilities", '''
path = CTX["work"] + f"/owned-{os.getpid()}"  # runs share the dir: one file each
open(path, "w").close()
os.chown(path, 12345, 12345)
return "chowned"''', lambda a: {"drop_capabilities": True}, errno.EPERM, root_only="chown needs CAP_CHOWN"),
    Attack("write a file larger than RLIMIT_FSIZE", "rlimits", '''
with open(CTX["work"] + f"/big-{os.getpid()}", "wb") as f:
    f.write(b"\\0" * (2 << 20))
return "2 MiB written"''', lambda a: {"rlimits": {"FSIZE": (1 << 20, 1 << 20)}}, errno.EFBIG),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=[f"{a.layer}: {a.name}" for a in ATTACKS])
def test_attack_is_stopped_by_its_layer(arena: Arena, attack: Attack, outcome_table: Record) -> None:
    if attack.root_only and not IS_ROOT:
        pytest.skip(f"succeeds only as root without a sandbox ({attack.root_only}); not root here")
    if attack.victim:
        arena.start_victim()
    payload = arena.write_payload(attack.body)
    plans = [arena.plan(payload, **attack.layers(arena)), arena.plan(payload)]
    if attack.control is not None:
        plans.append(arena.plan(payload, **attack.control(arena)))
    confined, unconfined, *control = run_all(*plans)
    assert unconfined.rc == 0 and unconfined.ok, f"the attack must work without a sandbox: {unconfined}"
    assert confined.rc == 0, confined
    assert not confined.ok, f"{attack.layer} did not stop it: {confined}"
    assert confined.errno == attack.expect, confined
    for result in control:
        assert result.ok, f"with only this rule off, the attack must work: {result}"
    outcome_table(attack.name, attack.layer, confined.outcome(), unconfined.outcome())


def test_proc_of_other_processes_needs_capabilities_dropped_as_well(arena: Arena, outcome_table: Record) -> None:
    """Landlock denies ptrace-mode access to processes outside its domain, but on this kernel a child still
    holding CAP_SYS_ADMIN or CAP_PERFMON (root) reads /proc/<pid>/environ, maps, auxv, pagemap anyway:
    only dropping the capabilities closes that (measured; recorded here, asserted for the strong case)."""
    if not IS_ROOT:
        pytest.skip("a non-root child holds no capabilities (the non-root test covers Landlock alone)")
    payload = arena.write_payload(ENVIRON)
    landlock_only, caps_only, both = run_all(arena.plan(payload, landlock=arena.landlock()),
                                             arena.plan(payload, drop_capabilities=True),
                                             arena.plan(payload, drop_capabilities=True, landlock=arena.landlock()))
    assert not both.ok and both.errno == errno.EACCES, both
    assert not caps_only.ok and caps_only.errno == errno.EACCES, caps_only  # commoncap: the target has more caps
    outcome_table("/proc/<pid>/environ, root child keeping caps", "landlock alone",
                  "NOT stopped (CAP_SYS_ADMIN/CAP_PERFMON)" if landlock_only.ok else landlock_only.outcome(), "-")
    outcome_table("/proc/<pid>/environ, root child", "capabilities alone", caps_only.outcome(), "succeeded")


def test_nproc_does_not_bind_root(arena: Arena, outcome_table: Record) -> None:
    """Documented limitation: RLIMIT_NPROC is ignored for uid 0 (the non-root test shows it binding)."""
    if not IS_ROOT:
        pytest.skip("this documents the uid-0 exemption; test_non_root_child_is_confined covers non-root")
    payload = arena.write_payload(FORK_BOMB)
    (result,) = run_all(arena.plan(payload, rlimits={"NPROC": (3, 3)}, seccomp=SeccompPolicy()))
    assert result.ok, result
    assert result.data["detail"] == "forked 12", result  # all 12 forks went through: the kernel exempts root
    outcome_table("fork bomb as root (NPROC=3)", "rlimits", "NOT stopped (uid 0 is exempt)", "succeeded")


FORK_BOMB = '''
import signal, time
pids = []
try:
    for _ in range(12):
        pid = os.fork()
        if pid == 0:
            time.sleep(20)
            os._exit(0)
        pids.append(pid)
finally:
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
return f"forked {len(pids)}"
'''


# ---------------------------------------------------------------------------------------------- what still works


ALLOWED = '''
import socket, threading, zmq
checks = {}
checks["own file"] = len(open(__file__).read()) > 0
checks["list /usr"] = "bin" in os.listdir("/usr")
with open(CTX["work"] + "/scratch", "w") as f:
    f.write("ok")
checks["write work dir"] = open(CTX["work"] + "/scratch").read() == "ok"
a, b = socket.socketpair(socket.AF_UNIX)
a.sendall(b"x"); checks["unix socketpair"] = b.recv(1) == b"x"
checks["netlink (interfaces)"] = any(name == "lo" for _, name in socket.if_nameindex())
results = []
threads = [threading.Thread(target=lambda i=i: results.append(sum(range(i * 1000)))) for i in range(4)]
for t in threads: t.start()
for t in threads: t.join()
checks["threads"] = len(results) == 4
ctx = zmq.Context()
req = ctx.socket(zmq.REQ)
req.setsockopt(zmq.LINGER, 0)
req.setsockopt(zmq.RCVTIMEO, 10000)
req.connect(CTX["endpoint"])
req.send(b"ping")
checks["zmq ipc REQ/REP"] = req.recv() == b"pong"
req.close(); ctx.term()
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
checks["status"] = {k: status[k].strip() for k in ("CapEff", "CapBnd", "NoNewPrivs", "Seccomp")}
return checks
'''


def test_a_well_behaved_extension_still_works_under_every_layer(arena: Arena, outcome_table: Record) -> None:
    endpoint = f"ipc://{arena.work}/host.sock"
    payload_body = ALLOWED.replace('CTX["endpoint"]', repr(endpoint))
    payload = arena.write_payload(payload_body)
    zctx = zmq.Context()
    rep = zctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    rep.bind(endpoint)
    served: list[bytes] = []

    def serve() -> None:
        if rep.poll(TIMEOUT * 1000):
            served.append(rep.recv())
            rep.send(b"pong")

    server = threading.Thread(target=serve)
    server.start()
    try:
        plan = arena.plan(payload, rlimits={"NOFILE": (256, 256), "CORE": (0, 0), "FSIZE": (1 << 24, 1 << 24),
                                            "AS": (4 << 30, 4 << 30), "CPU": (60, 61)},
                          drop_capabilities=True, landlock=arena.landlock(), seccomp=SeccompPolicy())
        (result,) = run_all(plan)
    finally:
        server.join(timeout=TIMEOUT)
        rep.close()
        zctx.term()
    assert result.rc == 0 and result.ok, result
    checks = result.data["detail"]
    status = checks.pop("status")
    assert all(checks.values()), checks
    assert served == [b"ping"]
    assert status == {"CapEff": "0000000000000000", "CapBnd": "0000000000000000", "NoNewPrivs": "1",
                      "Seccomp": "2"}
    assert result.data["plan_visible"] is False
    active = result.data["active"]
    for part in ("rlimits: NOFILE", "capabilities: all dropped" if IS_ROOT else "capabilities: none held",
                 "landlock abi", "fs, tcp, scopes", "seccomp"):
        assert part in active, active
    outcome_table("well-behaved extension (zmq ipc, threads, own files)", "all layers", "works", "works")


# ---------------------------------------------------------------------------------------------- failures


def test_bad_or_missing_plan_exits_5_with_one_line(arena: Arena) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    missing = subprocess.run(BOOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    bad = subprocess.run(BOOT, env={**env, ENV_PLAN: '{"run_path": "/x", "sekcomp": {}}'}, capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert missing.returncode == EXIT_SANDBOX
    assert missing.stderr == f"kithost sandbox: plan: {ENV_PLAN} is not set (the host starts this module with a plan)\n"
    assert bad.returncode == EXIT_SANDBOX
    assert bad.stderr == "kithost sandbox: plan: unknown key(s) 'sekcomp'\n"


def test_exec_refused_by_landlock_exits_5(arena: Arena) -> None:
    plan = BootPlan(exec_argv=["/usr/bin/true"], landlock=arena.landlock(execute=[LD_SO]),
                    seccomp=SeccompPolicy(allow_exec=True))
    result = finish(start(plan))
    assert result.rc == EXIT_SANDBOX
    assert result.stderr == "kithost sandbox: exec: /usr/bin/true: Permission denied\n"


def test_exec_argv_runs_the_program_confined(arena: Arena) -> None:
    """Only what the program needs is granted: not the interpreter, the venv or ext_sdk (the boot loads its
    modules before the first layer)."""
    plan = BootPlan(exec_argv=["/usr/bin/cat", "/proc/self/status", str(arena.secret)],
                    landlock=LandlockRules(read=["/usr", "/etc/ld.so.cache", "/proc"],
                                           execute=["/usr/bin/cat", LD_SO], required=True),
                    seccomp=SeccompPolicy(allow_exec=True), drop_capabilities=True,
                    rlimits={"NOFILE": (64, 64)})
    result = finish(start(plan))
    assert result.rc == 1, result  # cat printed its status, then could not read the secret
    assert "NoNewPrivs:\t1" in result.stdout and "Seccomp:\t2" in result.stdout
    assert "CapEff:\t0000000000000000" in result.stdout
    assert f"cat: {arena.secret}: Permission denied" in result.stderr


# An outer filter (loaded by a wrapper before it execs the boot) that makes chosen syscalls fail with
# ENOSYS: how a kernel without Landlock, or a container runtime that filters it, looks from inside.
HIDE_SYSCALLS = '''
import ctypes, os, sys
from ext_sdk.sandbox import _sys
from ext_sdk.sandbox.seccomp import ARCHES, RET_ALLOW, Assembler, ret_errno
spec = ARCHES[_sys.MACHINE]
a = Assembler()
a.ld_abs(0)
for nr in map(int, sys.argv[1].split(",")):
    a.jeq(nr, "hide")
a.ret(RET_ALLOW)
a.label("hide")
a.ret(ret_errno(38))
program = a.assemble()
class Fprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))
buf = ctypes.create_string_buffer(program, len(program))
_sys.no_new_privs()
_sys.syscall(spec.sys_seccomp, 1, 0, ctypes.byref(Fprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))))
os.execv(sys.executable, [sys.executable, "-I", "-m", "ext_sdk.sandbox.boot"])
'''


def hidden(nrs: str) -> list[str]:
    return [PY, "-I", "-c", HIDE_SYSCALLS, nrs]


def test_required_landlock_unavailable_exits_5_optional_runs_without(arena: Arena, outcome_table: Record) -> None:
    payload = arena.write_payload('return open(CTX["secret"]).read()')
    required = start(arena.plan(payload, landlock=arena.landlock(required=True)), hidden("444"))
    optional = start(arena.plan(payload, landlock=arena.landlock(required=False)), hidden("444"))
    req, opt = finish(required), finish(optional)
    reason = "ENOSYS: the kernel has no Landlock (or a seccomp filter hides its syscalls)"
    assert req.rc == EXIT_SANDBOX and not req.data, req  # the extension never ran
    assert req.stderr == f"kithost sandbox: landlock: {reason}\n"
    assert opt.rc == 0 and opt.ok, opt  # ran, unconfined by Landlock, and was told so
    assert f"landlock off: {reason}" in opt.data["active"]
    outcome_table("Landlock missing, required", "boot", f"exit {EXIT_SANDBOX}, extension not run", "-")


def test_required_seccomp_unavailable_exits_5(arena: Arena) -> None:
    from ext_sdk.sandbox._sys import MACHINE
    from ext_sdk.sandbox.seccomp import ARCHES

    payload = arena.write_payload('return "ran"')
    nr = str(ARCHES[MACHINE].sys_seccomp)
    req = finish(start(arena.plan(payload, seccomp=SeccompPolicy(required=True)), hidden(nr)))
    opt = finish(start(arena.plan(payload, seccomp=SeccompPolicy(required=False)), hidden(nr)))
    assert req.rc == EXIT_SANDBOX and not req.data, req
    assert req.stderr == "kithost sandbox: seccomp: [Errno 38] Function not implemented\n"
    assert opt.rc == 0 and opt.ok and "seccomp off: [Errno 38]" in opt.data["active"], opt


# ---------------------------------------------------------------------------------------------- non-root


NON_ROOT_UID = 54321  # no passwd entry needed: setpriv takes numbers
SYSTEM_PY = "/usr/bin/python3"

NON_ROOT_ATTACKS = '''
import ctypes, signal, socket, subprocess, time
uid = os.getuid()  # before the userns attack, after which an unmapped uid reads as 65534
libc = ctypes.CDLL(None, use_errno=True)
def fail():
    e = ctypes.get_errno()
    raise OSError(e, os.strerror(e))
def tcp():
    s = socket.socket(); s.settimeout(5); s.connect(("127.0.0.1", CTX["tcp_port"])); return "connected"
def abstract():
    s = socket.socket(socket.AF_UNIX); s.connect("\\0" + CTX["abstract"]); return "connected"
def ptrace():
    if libc.ptrace(ctypes.c_long(16), ctypes.c_long(CTX["victim"]), None, None) != 0: fail()
    return "attached"
def uring():
    fd = libc.syscall(ctypes.c_long(425), ctypes.c_long(8), ctypes.create_string_buffer(120))
    if fd < 0: fail()
    return "ring"
def userns():
    if libc.unshare(0x10000000) != 0: fail()
    return "userns"
def fork_bomb():
    pids = []
    try:
        for _ in range(12):
            pid = os.fork()
            if pid == 0:
                time.sleep(20); os._exit(0)
            pids.append(pid)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)
    return len(pids)
attacks = {
    "read secret": lambda: open(CTX["secret"]).read(),
    "write outside": lambda: open(CTX["outside"] + "/planted", "w").write("x"),
    "victim environ": lambda: len(open(f"/proc/{CTX['victim']}/environ", "rb").read()),
    "tcp connect": tcp,
    "udp": lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", CTX["udp_port"])),
    "abstract unix": abstract,
    "signal victim": lambda: os.kill(CTX["victim"], 0),
    "ptrace victim": ptrace,
    "io_uring": uring,
    "spawn /bin/sh": lambda: subprocess.run(["/bin/sh", "-c", "true"], timeout=10).returncode,
    "fork bomb (NPROC)": fork_bomb,
    "unshare userns": userns,  # last: it changes the process's user namespace
}
out = {}
for name, fn in attacks.items():
    try:
        out[name] = ["ok", fn()]
    except BaseException as exc:
        out[name] = ["denied", getattr(exc, "errno", None), f"{type(exc).__name__}: {exc}"[:120]]
out["uid"] = uid
return out
'''


def usable_interpreter(uid: int) -> tuple[list[str], str]:
    """How a process of ``uid`` can run the boot, and a note on what did not work."""
    # Through env: setpriv itself still holds root's capabilities while it resolves the program it execs, so
    # `setpriv ... .venv/bin/python` works even where a plain process of this uid cannot exec that path.
    as_uid = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "/usr/bin/env"]
    probe = subprocess.run([*as_uid, PY, "-I", "-c", "import ext_sdk.sandbox.boot"], capture_output=True, text=True,
                           timeout=TIMEOUT)
    if probe.returncode == 0:
        return BOOT, ""
    note = f"{PY} unusable as uid {uid}: {probe.stderr.strip().splitlines()[-1] if probe.stderr else probe}"
    if not os.path.exists(SYSTEM_PY):
        pytest.skip(f"{note}; and no {SYSTEM_PY}")
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from ext_sdk.sandbox.boot import main; sys.exit(main())"
    probe = subprocess.run([*as_uid, SYSTEM_PY, "-I", "-c", code.replace("sys.exit(main())", "pass")],
                           capture_output=True, text=True, timeout=TIMEOUT)
    if probe.returncode != 0:
        pytest.skip(f"{note}; {SYSTEM_PY} cannot import ext_sdk either: {probe.stderr.strip()[-300:]}")
    return [SYSTEM_PY, "-I", "-c", code], note


@pytest.mark.skipif(not IS_ROOT, reason="switching to another uid needs root")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")
def test_non_root_child_is_confined_the_same_way(outcome_table: Record) -> None:
    """Landlock, seccomp and rlimits applied by an unprivileged uid hold the same way (and NPROC binds)."""
    uid = NON_ROOT_UID
    boot, note = usable_interpreter(uid)
    base = Path(tempfile.mkdtemp(prefix="kithost-sbx-"))
    arena = None
    try:
        base.chmod(0o755)
        arena = Arena(base)
        arena.outside.chmod(0o777)  # DAC would let uid 54321 write here: only Landlock stops it
        arena.secret.chmod(0o644)  # DAC would let it read this: only Landlock stops it
        os.chown(arena.work, uid, uid)
        arena.victim = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sleep",
                                         "60"], start_new_session=True)
        payload = arena.write_payload(NON_ROOT_ATTACKS)
        arena.ext.chmod(0o755)
        payload.chmod(0o644)
        interp = boot[0] if boot != BOOT else PY
        argv = [interp, "-I", str(payload)]
        confined_plan = BootPlan(
            exec_argv=argv, rlimits={"NPROC": (6, 6)}, drop_capabilities=True,
            landlock=arena.landlock(read=[*arena.read_paths(), os.path.realpath(interp)],
                                    execute=[os.path.realpath(interp), LD_SO]),
            seccomp=SeccompPolicy(allow_exec=True))
        open_plan = BootPlan(exec_argv=argv, drop_capabilities=False)
        as_user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *boot]
        confined, unconfined = finish(start(confined_plan, as_user)), finish(start(open_plan, as_user))
    finally:
        if arena is not None:
            arena.close()
        shutil.rmtree(base, ignore_errors=True)
    assert confined.rc == 0 and confined.ok and unconfined.rc == 0 and unconfined.ok, (confined, unconfined)
    got, free = confined.data["detail"], unconfined.data["detail"]
    assert got.pop("uid") == uid and free.pop("uid") == uid
    for name, outcome in free.items():
        assert outcome[0] == "ok", f"without a sandbox uid {uid} could not {name}: {outcome}"
        assert got[name][0] == "denied", f"uid {uid} under the sandbox could still {name}: {got[name]}"
        outcome_table(f"uid {uid}: {name}", NON_ROOT_LAYER[name], f"{got[name][2].split(':')[0]} errno={got[name][1]}",
                      "succeeded")
    assert free["fork bomb (NPROC)"][1] == 12
    assert got["fork bomb (NPROC)"][1] == errno.EAGAIN
    assert got["spawn /bin/sh"][1] == errno.EACCES  # Landlock's exec allow-list (exec_argv needs allow_exec)
    for name in ("read secret", "write outside", "victim environ"):
        assert got[name][1] == errno.EACCES, got[name]  # Landlock, not DAC: the files are open to this uid
    for name in ("abstract unix", "signal victim"):
        assert got[name][1] == errno.EPERM, got[name]
    print(note)


NON_ROOT_LAYER = {
    "read secret": "landlock fs", "write outside": "landlock fs", "victim environ": "landlock (ptrace)",
    "tcp connect": "seccomp", "udp": "seccomp", "abstract unix": "landlock scope", "signal victim": "landlock scope",
    "ptrace victim": "seccomp", "io_uring": "seccomp", "spawn /bin/sh": "landlock exec",
    "fork bomb (NPROC)": "rlimits", "unshare userns": "seccomp",
}


def test_venv_interpreter_readability_for_other_uids() -> None:
    """Report (not enforce) whether the test interpreter can be used by a dedicated extension uid."""
    if not IS_ROOT:
        pytest.skip("needs root to switch uid")
    real = os.path.realpath(PY)
    unreadable = [p for p in Path(real).parents if p != Path("/") and not (os.stat(p).st_mode & stat.S_IXOTH)]
    if unreadable:
        pytest.skip(f"{real} is not usable by other uids: {unreadable[-1]} has mode "
                    f"{stat.filemode(os.stat(unreadable[-1]).st_mode)} (the non-root test uses {SYSTEM_PY})")
