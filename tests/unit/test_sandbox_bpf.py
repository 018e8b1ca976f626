"""The seccomp filter, run through a small classic-BPF interpreter written here (no process, no kernel).

The interpreter checks the program the way the kernel's verifier does
(forward in-range jumps, aligned loads inside ``struct seccomp_data``, a
return at the end) and then executes it for a syscall number, architecture and
arguments, so each assertion is "the kernel would answer X to this call".
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from ext_sdk.sandbox import seccomp
from ext_sdk.sandbox.seccomp import (
    ARCHES,
    ENOSYS_CALLS,
    EPERM_CALLS,
    RET_ALLOW,
    RET_KILL_PROCESS,
    Assembler,
    build,
    decode,
    ret_errno,
)

EPERM = ret_errno(1)
ENOSYS = ret_errno(38)
SECCOMP_DATA_SIZE = 64
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_ARM = 0x40000028


def verify(program: bytes) -> None:
    """What the kernel checks before accepting a seccomp program."""
    insns = decode(program)
    assert 0 < len(insns) <= 4096
    for pc, (code, jt, jf, k) in enumerate(insns):
        cls = code & 0x07
        if cls == 0x00:  # LD
            assert code == 0x20, f"{pc}: only LD|W|ABS is used"
            assert k % 4 == 0 and k + 4 <= SECCOMP_DATA_SIZE, f"{pc}: load outside seccomp_data"
        elif cls == 0x05:  # JMP
            if code == 0x05:  # JA
                assert pc + 1 + k < len(insns), f"{pc}: ja out of range"
            else:
                assert pc + 1 + max(jt, jf) < len(insns), f"{pc}: jump out of range"
        elif cls == 0x06:
            assert code == 0x06, f"{pc}: RET|K only"
        else:
            assert code == 0x54, f"{pc}: only ALU|AND|K is used, got {code:#x}"
    assert insns[-1][0] == 0x06


def run(program: bytes, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """Execute the filter on a ``struct seccomp_data``; returns the SECCOMP_RET_* value."""
    full = (*args, *([0] * (6 - len(args))))
    data = struct.pack("<IIQ6Q", nr & 0xFFFFFFFF, arch, 0x401000, *full)
    insns = decode(program)
    acc = 0
    pc = 0
    for _ in range(len(insns) + 1):  # forward-only: at most one pass
        code, jt, jf, k = insns[pc]
        if code == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:
            acc &= k
        elif code == 0x06:
            return k
        elif code == 0x05:
            pc += 1 + k
            continue
        else:
            op = code & 0xF0
            taken = {0x10: acc == k, 0x20: acc > k, 0x30: acc >= k, 0x40: bool(acc & k)}[op]
            pc += 1 + (jt if taken else jf)
            continue
        pc += 1
    raise AssertionError("program did not return")


POLICIES = [(inet, exe) for inet in (False, True) for exe in (False, True)]


@pytest.fixture(params=["x86_64", "aarch64"])
def arch(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def call(arch: str, name: str, *args: int, allow_inet: bool = False, allow_exec: bool = False) -> int:
    spec = ARCHES[arch]
    return run(build(arch, allow_inet=allow_inet, allow_exec=allow_exec), spec.nr[name], spec.audit, args)


# ---------------------------------------------------------------------------------------------- program


@pytest.mark.parametrize(("allow_inet", "allow_exec"), POLICIES)
def test_every_program_passes_the_verifier_and_is_deterministic(arch: str, allow_inet: bool,
                                                                allow_exec: bool) -> None:
    program = build(arch, allow_inet=allow_inet, allow_exec=allow_exec)
    verify(program)
    assert program == build(arch, allow_inet=allow_inet, allow_exec=allow_exec)
    assert len(program) // 8 < 120  # small: the common path is a short chain of compares


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="riscv64"):
        build("riscv64")


# ---------------------------------------------------------------------------------------------- arch checks


def test_a_foreign_architecture_is_killed(arch: str) -> None:
    program = build(arch)
    other = ARCHES["aarch64" if arch == "x86_64" else "x86_64"].audit
    for audit in (other, AUDIT_ARCH_I386, AUDIT_ARCH_ARM, 0):
        assert run(program, 0, audit) == RET_KILL_PROCESS
        assert run(program, 102, audit, (1,)) == RET_KILL_PROCESS  # ia32 socketcall(SYS_SOCKET, ...)


def test_x32_syscalls_are_killed_on_x86_64() -> None:
    program = build("x86_64")
    audit = ARCHES["x86_64"].audit
    assert run(program, 0x40000000 | 41, audit, (2,)) == RET_KILL_PROCESS  # x32 socket(AF_INET)
    assert run(program, 0x40000000 | 0, audit) == RET_KILL_PROCESS
    assert run(program, 0xFFFFFFFF, audit) == RET_KILL_PROCESS


# ---------------------------------------------------------------------------------------------- allowed by default


ORDINARY = {
    "x86_64": {"read": 0, "write": 1, "openat": 257, "mmap": 9, "futex": 202, "connect": 42, "sendto": 44,
               "getpid": 39, "kill": 62, "fork": 57, "vfork": 58, "exit_group": 231, "prctl": 157,
               "pidfd_send_signal": 424, "landlock_create_ruleset": 444, "landlock_restrict_self": 446,
               "seccomp": 317, "epoll_wait": 232, "setrlimit": 160, "prlimit64": 302, "capset": 126},
    "aarch64": {"read": 63, "write": 64, "openat": 56, "mmap": 222, "futex": 98, "connect": 203, "sendto": 206,
                "getpid": 172, "kill": 129, "exit_group": 94, "prctl": 167, "pidfd_send_signal": 424,
                "landlock_create_ruleset": 444, "landlock_restrict_self": 446, "seccomp": 277,
                "epoll_pwait": 22, "setrlimit": 164, "prlimit64": 261, "capset": 91},
}


@pytest.mark.parametrize(("allow_inet", "allow_exec"), POLICIES)
def test_ordinary_syscalls_are_allowed(arch: str, allow_inet: bool, allow_exec: bool) -> None:
    program = build(arch, allow_inet=allow_inet, allow_exec=allow_exec)
    for name, nr in ORDINARY[arch].items():
        assert run(program, nr, ARCHES[arch].audit, (3, 0, 0)) == RET_ALLOW, name


def test_nothing_else_is_denied(arch: str) -> None:
    """Sweep every syscall number: exactly the listed ones (with zero arguments) are denied."""
    spec = ARCHES[arch]
    program = build(arch)
    denied = {spec.nr[n] for n in (*EPERM_CALLS, *ENOSYS_CALLS, "execve", "execveat") if n in spec.nr}
    denied.add(spec.nr["socket"])  # domain 0 (AF_UNSPEC) is not a unix socket
    denied.add(spec.nr["socketpair"])
    for nr in range(600):
        verdict = run(program, nr, spec.audit)
        assert (verdict != RET_ALLOW) == (nr in denied), f"syscall {nr}: {verdict:#x}"


# ---------------------------------------------------------------------------------------------- denials


def test_listed_calls_get_eperm_and_io_uring_clone3_enosys(arch: str) -> None:
    program = build(arch, allow_inet=True, allow_exec=True)
    spec = ARCHES[arch]
    for name in EPERM_CALLS:
        if name in spec.nr:
            assert run(program, spec.nr[name], spec.audit, (0, 0, 0)) == EPERM, name
    for name in ENOSYS_CALLS:
        assert run(program, spec.nr[name], spec.audit) == ENOSYS, name


def test_the_calls_the_brief_names_are_covered(arch: str) -> None:
    must = {"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "unshare", "setns", "mount",
            "umount2", "pivot_root", "chroot", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key",
            "request_key", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
            "open_by_handle_at", "name_to_handle_at", "fanotify_init", "quotactl", "acct", "swapon", "swapoff",
            "reboot", "settimeofday", "clock_settime", "mount_setattr", "move_mount", "open_tree", "fsopen",
            "fsmount", "fsconfig", "fspick"}
    assert must <= set(EPERM_CALLS)
    assert {"io_uring_setup", "io_uring_enter", "io_uring_register", "clone3"} == set(ENOSYS_CALLS)
    assert "seccomp" not in EPERM_CALLS  # nested filters can only restrict more


@pytest.mark.parametrize("allow_exec", [False, True])
def test_exec_follows_the_policy(arch: str, allow_exec: bool) -> None:
    for name in ("execve", "execveat"):
        assert call(arch, name, allow_exec=allow_exec) == (RET_ALLOW if allow_exec else EPERM)


AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
OTHER_FAMILIES = {"AF_UNSPEC": 0, "AF_AX25": 3, "AF_IPX": 4, "AF_PACKET": 17, "AF_BLUETOOTH": 31, "AF_ALG": 38,
                  "AF_VSOCK": 40, "AF_XDP": 44, "AF_MCTP": 45, "huge": 0xFFFF}


@pytest.mark.parametrize("allow_inet", [False, True])
@pytest.mark.parametrize("name", ["socket", "socketpair"])
def test_socket_families(arch: str, name: str, allow_inet: bool) -> None:
    sock_stream, sock_dgram = 1, 2
    for kind in (sock_stream, sock_dgram):
        assert call(arch, name, AF_UNIX, kind, allow_inet=allow_inet) == RET_ALLOW
        assert call(arch, name, AF_NETLINK, 3, 0, allow_inet=allow_inet) == RET_ALLOW
        for family in (AF_INET, AF_INET6):
            assert call(arch, name, family, kind, allow_inet=allow_inet) == (RET_ALLOW if allow_inet else EPERM)
        for family in OTHER_FAMILIES.values():
            assert call(arch, name, family, kind, allow_inet=allow_inet) == EPERM, family


def test_socket_domain_high_bits_do_not_fool_the_filter(arch: str) -> None:
    """The kernel reads ``int domain`` (the low 32 bits); so does the filter."""
    assert call(arch, "socket", (1 << 32) | AF_INET, 1) == EPERM
    assert call(arch, "socket", (0xFFFFFFFF << 32) | AF_INET6, 1) == EPERM
    assert call(arch, "socket", (1 << 32) | AF_UNIX, 1) == RET_ALLOW  # the kernel creates AF_UNIX: fine


CLONE_NEW = {"NEWNS": 0x00020000, "NEWCGROUP": 0x02000000, "NEWUTS": 0x04000000, "NEWIPC": 0x08000000,
             "NEWUSER": 0x10000000, "NEWPID": 0x20000000, "NEWNET": 0x40000000}
SIGCHLD = 17
THREAD_FLAGS = 0x003D0F00  # what glibc's pthread_create passes to clone
VFORK_FLAGS = 0x00004100 | SIGCHLD  # CLONE_VM | CLONE_VFORK (posix_spawn)


def test_clone_threads_and_forks_pass_namespaces_do_not(arch: str) -> None:
    for flags in (SIGCHLD, THREAD_FLAGS, VFORK_FLAGS, 0x01200000 | SIGCHLD):  # last: fork() in glibc
        assert call(arch, "clone", flags) == RET_ALLOW, hex(flags)
    for name, flag in CLONE_NEW.items():
        assert call(arch, "clone", flag | SIGCHLD) == EPERM, name
        assert call(arch, "clone", flag | THREAD_FLAGS) == EPERM, name
    assert call(arch, "clone", sum(CLONE_NEW.values())) == EPERM


def test_ioctl_terminal_injection_is_denied_other_ioctls_pass(arch: str) -> None:
    tcgets, fionread, tiocsti, tioclinux = 0x5401, 0x541B, 0x5412, 0x541C
    assert call(arch, "ioctl", 0, tiocsti) == EPERM
    assert call(arch, "ioctl", 0, tioclinux) == EPERM
    assert call(arch, "ioctl", 0, (1 << 32) | tiocsti) == EPERM  # cmd is an unsigned int
    for cmd in (tcgets, fionread, 0x8901):
        assert call(arch, "ioctl", 3, cmd) == RET_ALLOW


def test_device_nodes_are_denied_fifos_pass(arch: str) -> None:
    s_ifchr, s_ifblk, s_ififo, s_ifreg, s_ifsock = 0o020000, 0o060000, 0o010000, 0o100000, 0o140000
    for mode, verdict in ((s_ifchr, EPERM), (s_ifblk, EPERM), (s_ififo, RET_ALLOW), (s_ifreg, RET_ALLOW),
                          (s_ifsock, RET_ALLOW), (0, RET_ALLOW)):
        assert call(arch, "mknodat", -100 & 0xFFFFFFFF, 0x1000, mode | 0o600, 0) == verdict, oct(mode)
        if arch == "x86_64":
            assert call(arch, "mknod", 0x1000, mode | 0o644, 0) == verdict, oct(mode)


# ---------------------------------------------------------------------------------------------- syscall table


HEADERS = {"x86_64": (Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"), 0),
           "aarch64": (Path("/usr/include/asm-generic/unistd.h"), 1)}


def test_syscall_numbers_match_the_kernel_headers(arch: str) -> None:
    header, _ = HEADERS[arch]
    if not header.exists():
        pytest.skip(f"{header} not installed (linux-libc-dev)")
    defined = {m[1]: int(m[2]) for m in re.finditer(r"^#define __NR_(\w+)\s+(\d+)\s*$", header.read_text(), re.M)}
    table = ARCHES[arch].nr
    checked = 0
    for name, nr in table.items():
        if name in defined:
            assert defined[name] == nr, f"{arch} {name}: table {nr}, header {defined[name]}"
            checked += 1
        else:
            assert name == "open_tree_attr" or name not in defined, name  # 467 is newer than the headers
    assert checked >= len(table) - 1


# ---------------------------------------------------------------------------------------------- assembler


def test_assembler_resolves_labels_and_encodes_sock_filter() -> None:
    a = Assembler()
    a.ld_abs(0)
    a.jeq(7, "yes", "no")
    a.label("no")
    a.ret(1)
    a.label("yes")
    a.ret(2)
    program = a.assemble()
    assert decode(program) == [(0x20, 0, 0, 0), (0x15, 1, 0, 7), (0x06, 0, 0, 1), (0x06, 0, 0, 2)]
    assert run(program, 7, 0) == 2
    assert run(program, 8, 0) == 1
    assert program[:8] == struct.pack("=HBBI", 0x20, 0, 0, 0)


def test_assembler_refuses_bad_programs() -> None:
    a = Assembler()
    a.label("top")
    a.ld_abs(0)
    a.jeq(1, "top")
    a.ret(0)
    with pytest.raises(ValueError, match="backward"):
        a.assemble()

    far = Assembler()
    far.ld_abs(0)
    far.jeq(1, "end")
    for _ in range(256):
        far.and_k(1)
    far.label("end")
    far.ret(0)
    with pytest.raises(ValueError, match="too far"):
        far.assemble()

    ja_far = Assembler()  # ja has a 32-bit offset: fine
    ja_far.ja("end")
    for _ in range(300):
        ja_far.and_k(1)
    ja_far.label("end")
    ja_far.ret(5)
    assert run(ja_far.assemble(), 0, 0) == 5

    unknown = Assembler()
    unknown.jeq(1, "nowhere")
    unknown.ret(0)
    with pytest.raises(ValueError, match="unknown label"):
        unknown.assemble()

    dup = Assembler()
    dup.label("x")
    with pytest.raises(ValueError, match="duplicate"):
        dup.label("x")

    no_ret = Assembler()
    no_ret.ld_abs(0)
    with pytest.raises(ValueError, match="return"):
        no_ret.assemble()
    with pytest.raises(ValueError):
        Assembler().assemble()
    with pytest.raises(ValueError):
        decode(b"\0" * 7)


def test_describe_says_what_is_allowed() -> None:
    assert seccomp.describe(allow_inet=False, allow_exec=False, arch="x86_64") == \
        "seccomp x86_64: unix+netlink sockets only, no exec"
    assert "inet" in seccomp.describe(allow_inet=True, allow_exec=True, arch="aarch64")
