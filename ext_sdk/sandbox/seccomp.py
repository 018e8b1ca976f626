"""The seccomp layer: a tiny classic-BPF assembler, the kithost filter, and its loader.

Pure Python → bytes (an array of ``struct sock_filter``), loaded with
``prctl(PR_SET_NO_NEW_PRIVS)`` + ``seccomp(SECCOMP_SET_MODE_FILTER, TSYNC)``
through ctypes. Stdlib only, on purpose: ``import pyseccomp`` costs ~26 ms in
the child (its ``find_library`` runs ldconfig) and libseccomp adds nothing a
60-instruction filter needs.

The filter (:func:`build`), for x86_64 and aarch64, default **allow**:

* wrong ``AUDIT_ARCH`` (the ia32 ABI on x86_64, incl. its ``socketcall``;
  arm32 compat on aarch64) and x32 syscall numbers → **kill** the process;
* ``socket``/``socketpair`` with a domain other than AF_UNIX, AF_NETLINK
  (node/Python enumerate interfaces through netlink) — and AF_INET/AF_INET6
  when ``allow_inet`` — → EPERM;
* ``clone`` with any ``CLONE_NEW*`` namespace flag → EPERM (threads and plain
  forks pass); ``clone3`` → ENOSYS (its flags sit behind a pointer BPF cannot
  read; libc then falls back to ``clone``); ``io_uring_*`` → ENOSYS (its
  operations bypass this filter);
* ``ioctl(TIOCSTI / TIOCLINUX)`` (typing into a terminal) → EPERM;
  ``mknod``/``mknodat`` of character/block devices → EPERM (FIFOs pass);
* ``execve``/``execveat`` unless ``allow_exec`` → EPERM;
* → EPERM: the debugging/cross-process calls (``ptrace``,
  ``process_vm_readv/writev``, ``process_madvise``, ``kcmp``, ``pidfd_open``,
  ``pidfd_getfd``), namespaces and mounts (``unshare``, ``setns``, ``mount``,
  ``umount2``, ``pivot_root``, ``chroot``, the new mount API), kernel
  attack surface (``bpf``, ``perf_event_open``, ``userfaultfd``, keyrings,
  ``fanotify_init``, ``*_handle_at``, ``lookup_dcookie``), modules/kexec,
  host administration (``reboot``, ``swapon/off``, ``acct``, ``quotactl*``,
  ``settimeofday``, ``clock_settime``, ``clock_adjtime``, ``sethostname``,
  ``setdomainname``, ``syslog``, ``vhangup``; on x86_64 also ``iopl``,
  ``ioperm``, ``uselib`` and the obsolete ``create_module`` & co.).

``seccomp(2)`` itself stays allowed: a nested filter can only restrict more
(the strictest action of all filters wins), and sandboxes inside the
extension (a browser, a nested bwrap without userns) need it.

What seccomp cannot see: the address behind ``connect()`` (so it cannot tell an
abstract from a named unix socket, or one path from another), file paths, or
fds received over SCM_RIGHTS. Those are Landlock's and bubblewrap's job.
"""

from __future__ import annotations

import ctypes
import struct

from ._sys import MACHINE, no_new_privs, syscall

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "ARCHES",
    "Assembler",
    "ENOSYS_CALLS",
    "EPERM_CALLS",
    "RET_ALLOW",
    "RET_KILL_PROCESS",
    "build",
    "decode",
    "describe",
    "install",
    "load",
    "ret_errno",
]

# --- classic BPF opcodes (linux/bpf_common.h) -------------------------------------------------
BPF_LD, BPF_ALU, BPF_JMP, BPF_RET = 0x00, 0x04, 0x05, 0x06
BPF_W, BPF_ABS, BPF_K = 0x00, 0x20, 0x00
BPF_AND = 0x50
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40
#: Largest program the kernel accepts.
BPF_MAXINSNS = 4096

# --- seccomp (linux/seccomp.h) ----------------------------------------------------------------
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
EPERM, ENOSYS = 1, 38

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]  (little endian here)
OFF_NR, OFF_ARCH = 0, 4


def off_arg(index: int) -> int:
    """Offset of the low 32 bits of ``args[index]`` in ``struct seccomp_data`` (little endian)."""
    return 16 + 8 * index


def ret_errno(errno: int) -> int:
    """The ``SECCOMP_RET_ERRNO`` action returning ``errno``."""
    return RET_ERRNO | (errno & 0xFFFF)


class _Arch:
    __slots__ = ("audit", "name", "nr", "sys_seccomp", "x32_bit")

    def __init__(self, name: str, audit: int, nr: dict[str, int], x32_bit: int, sys_seccomp: int) -> None:
        self.name, self.audit, self.nr, self.x32_bit, self.sys_seccomp = name, audit, nr, x32_bit, sys_seccomp


# Syscall numbers: x86_64 from asm/unistd_64.h, aarch64 from asm-generic/unistd.h (checked against
# linux-libc-dev 6.1 headers; open_tree_attr is 467 on every architecture since 6.15).
# name: (x86_64, aarch64); None = the architecture does not have it.
_NR: dict[str, tuple[int | None, int | None]] = {
    "socket": (41, 198), "socketpair": (53, 199), "clone": (56, 220), "clone3": (435, 435),
    "execve": (59, 221), "execveat": (322, 281), "ioctl": (16, 29), "mknod": (133, None), "mknodat": (259, 33),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "process_madvise": (440, 440), "kcmp": (312, 272), "pidfd_open": (434, 434), "pidfd_getfd": (438, 438),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "unshare": (272, 97), "setns": (308, 268), "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41),
    "chroot": (161, 51), "mount_setattr": (442, 442), "move_mount": (429, 429), "open_tree": (428, 428),
    "open_tree_attr": (467, 467), "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432),
    "fspick": (433, 433), "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218), "fanotify_init": (300, 262),
    "open_by_handle_at": (304, 265), "name_to_handle_at": (303, 264), "lookup_dcookie": (212, 18),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "init_module": (175, 105),
    "finit_module": (313, 273), "delete_module": (176, 106), "reboot": (169, 142), "swapon": (167, 224),
    "swapoff": (168, 225), "acct": (163, 89), "quotactl": (179, 60), "quotactl_fd": (443, 443),
    "settimeofday": (164, 170), "clock_settime": (227, 112), "clock_adjtime": (305, 266),
    "sethostname": (170, 161), "setdomainname": (171, 162), "syslog": (103, 116), "vhangup": (153, 58),
    "nfsservctl": (180, 42), "iopl": (172, None), "ioperm": (173, None), "uselib": (134, None),
    "create_module": (174, None), "get_kernel_syms": (177, None), "query_module": (178, None),
    "_sysctl": (156, None), "seccomp": (317, 277),
}

#: Denied with ENOSYS (callers are expected to fall back: libc's clone3 → clone; io_uring users → epoll).
ENOSYS_CALLS = ("clone3", "io_uring_setup", "io_uring_enter", "io_uring_register")
#: Denied with EPERM, whatever the arguments.
EPERM_CALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp", "pidfd_open", "pidfd_getfd",
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree",
    "open_tree_attr", "fsopen", "fsconfig", "fsmount", "fspick",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "fanotify_init",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "settimeofday", "clock_settime",
    "clock_adjtime", "sethostname", "setdomainname", "syslog", "vhangup", "nfsservctl",
    "iopl", "ioperm", "uselib", "create_module", "get_kernel_syms", "query_module", "_sysctl",
)
#: Denied with EPERM unless ``allow_exec``.
EXEC_CALLS = ("execve", "execveat")


def _arch_table(index: int) -> dict[str, int]:
    return {name: nrs[index] for name, nrs in _NR.items() if nrs[index] is not None}  # type: ignore[misc]


#: Architectures the filter is built for, by ``uname -m``.
ARCHES: dict[str, _Arch] = {
    # AUDIT_ARCH_X86_64 = EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE; x32 numbers have bit 30 set.
    "x86_64": _Arch("x86_64", 0xC000003E, _arch_table(0), 0x40000000, 317),
    # AUDIT_ARCH_AARCH64 = EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
    "aarch64": _Arch("aarch64", 0xC00000B7, _arch_table(1), 0, 277),
}

AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
#: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (CLONE_NEWTIME, 0x80, is a
#: clone3/unshare-only flag: in clone()'s first argument bit 0x80 belongs to the exit signal).
CLONE_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
S_IFMT, S_IFCHR, S_IFBLK = 0o170000, 0o020000, 0o060000


class Assembler:
    """Classic BPF with symbolic labels; :meth:`assemble` resolves them into ``struct sock_filter`` bytes.

    Conditional jumps take label names (or ``None`` = the next instruction)
    and may only go forward, at most 255 instructions (the 8-bit ``jt``/``jf``
    fields); :meth:`assemble` raises ``ValueError`` otherwise, or for an
    unknown or duplicate label.
    """

    def __init__(self) -> None:
        self._insns: list[tuple[int, str | None, str | None, int]] = []
        self._labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        """Mark the next instruction as ``name``."""
        if name in self._labels:
            raise ValueError(f"duplicate label {name!r}")
        self._labels[name] = len(self._insns)

    def ld_abs(self, offset: int) -> None:
        """``A = *(u32 *)(seccomp_data + offset)``."""
        self._insns.append((BPF_LD | BPF_W | BPF_ABS, None, None, offset))

    def and_k(self, k: int) -> None:
        """``A &= k``."""
        self._insns.append((BPF_ALU | BPF_AND | BPF_K, None, None, k))

    def jeq(self, k: int, jt: str | None, jf: str | None = None) -> None:
        """``if A == k goto jt else goto jf``."""
        self._insns.append((BPF_JMP | BPF_JEQ | BPF_K, jt, jf, k))

    def jge(self, k: int, jt: str | None, jf: str | None = None) -> None:
        """``if A >= k goto jt else goto jf`` (unsigned)."""
        self._insns.append((BPF_JMP | BPF_JGE | BPF_K, jt, jf, k))

    def jgt(self, k: int, jt: str | None, jf: str | None = None) -> None:
        """``if A > k goto jt else goto jf`` (unsigned)."""
        self._insns.append((BPF_JMP | BPF_JGT | BPF_K, jt, jf, k))

    def jset(self, k: int, jt: str | None, jf: str | None = None) -> None:
        """``if A & k goto jt else goto jf``."""
        self._insns.append((BPF_JMP | BPF_JSET | BPF_K, jt, jf, k))

    def ja(self, target: str) -> None:
        """``goto target``."""
        self._insns.append((BPF_JMP | BPF_JA, target, None, 0))

    def ret(self, k: int) -> None:
        """``return k`` (a ``SECCOMP_RET_*`` action)."""
        self._insns.append((BPF_RET | BPF_K, None, None, k))

    def _target(self, here: int, label: str | None) -> int:
        if label is None:
            return 0
        if label not in self._labels:
            raise ValueError(f"unknown label {label!r}")
        offset = self._labels[label] - here - 1
        if offset < 0:
            raise ValueError(f"backward jump to {label!r} at instruction {here}")
        return offset

    def assemble(self) -> bytes:
        """The program as ``struct sock_filter[]`` (``u16 code, u8 jt, u8 jf, u32 k``, native endian)."""
        if not self._insns or len(self._insns) > BPF_MAXINSNS:
            raise ValueError(f"program length {len(self._insns)} outside 1..{BPF_MAXINSNS}")
        if self._insns[-1][0] != BPF_RET | BPF_K:
            raise ValueError("the last instruction must be a return")
        out = bytearray()
        for here, (code, jt, jf, k) in enumerate(self._insns):
            if code == BPF_JMP | BPF_JA:
                out += struct.pack("=HBBI", code, 0, 0, self._target(here, jt))
                continue
            t, f = self._target(here, jt), self._target(here, jf)
            if t > 255 or f > 255:
                raise ValueError(f"jump too far at instruction {here} ({max(t, f)} > 255)")
            out += struct.pack("=HBBI", code, t, f, k & 0xFFFFFFFF)
        return bytes(out)


def decode(program: bytes) -> list[tuple[int, int, int, int]]:
    """``struct sock_filter[]`` bytes → ``[(code, jt, jf, k), ...]``."""
    if len(program) % 8:
        raise ValueError("a BPF program is a multiple of 8 bytes")
    return [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]


def build(arch: str, *, allow_inet: bool = False, allow_exec: bool = False) -> bytes:
    """The kithost filter for ``arch`` (``uname -m``: x86_64 or aarch64) as BPF bytes; ValueError otherwise."""
    spec = ARCHES.get(arch)
    if spec is None:
        raise ValueError(f"no seccomp filter for architecture {arch!r} (have: {', '.join(ARCHES)})")
    nr = spec.nr
    a = Assembler()
    a.ld_abs(OFF_ARCH)
    a.jeq(spec.audit, None, "kill")
    a.ld_abs(OFF_NR)
    if spec.x32_bit:
        a.jge(spec.x32_bit, "kill")
    a.jeq(nr["socket"], "socket")
    a.jeq(nr["socketpair"], "socket")
    a.jeq(nr["clone"], "clone")
    a.jeq(nr["ioctl"], "ioctl")
    a.jeq(nr["mknodat"], "mknodat")
    if "mknod" in nr:
        a.jeq(nr["mknod"], "mknod")
    for name in _present(nr, ENOSYS_CALLS):
        a.jeq(nr[name], "enosys")
    denied: Iterable[str] = EPERM_CALLS if allow_exec else EPERM_CALLS + EXEC_CALLS
    for name in _present(nr, denied):
        a.jeq(nr[name], "eperm")
    a.ret(RET_ALLOW)  # the common case returns here; the argument checks below jump forward to "allow"

    a.label("socket")  # socket(int domain, ...) / socketpair(int domain, ...): the kernel reads an int
    a.ld_abs(off_arg(0))
    a.jeq(AF_UNIX, "allow")
    a.jeq(AF_NETLINK, "allow")
    if allow_inet:
        a.jeq(AF_INET, "allow")
        a.jeq(AF_INET6, "allow")
    a.ja("eperm")

    a.label("clone")  # clone(unsigned long flags, ...): the kernel uses the low 32 bits only
    a.ld_abs(off_arg(0))
    a.jset(CLONE_NS_FLAGS, "eperm", "allow")

    a.label("ioctl")  # ioctl(unsigned int fd, unsigned int cmd, ...)
    a.ld_abs(off_arg(1))
    a.jeq(TIOCSTI, "eperm")
    a.jeq(TIOCLINUX, "eperm", "allow")

    a.label("mknodat")  # mknodat(int dfd, const char *path, umode_t mode, unsigned dev)
    a.ld_abs(off_arg(2))
    a.ja("mknod_mode")
    if "mknod" in nr:
        a.label("mknod")  # mknod(const char *path, umode_t mode, unsigned dev)
        a.ld_abs(off_arg(1))
    a.label("mknod_mode")
    a.and_k(S_IFMT)
    a.jeq(S_IFCHR, "eperm")
    a.jeq(S_IFBLK, "eperm", "allow")

    a.label("eperm")
    a.ret(ret_errno(EPERM))
    a.label("enosys")
    a.ret(ret_errno(ENOSYS))
    a.label("kill")
    a.ret(RET_KILL_PROCESS)
    a.label("allow")
    a.ret(RET_ALLOW)
    return a.assemble()


def _present(nr: dict[str, int], names: Iterable[str]) -> list[str]:
    return [name for name in names if name in nr]


def describe(*, allow_inet: bool, allow_exec: bool, arch: str | None = None) -> str:
    """One line saying what the filter allows, for the child's report."""
    sockets = "unix+netlink+inet sockets" if allow_inet else "unix+netlink sockets only"
    return f"seccomp {arch or MACHINE}: {sockets}, {'exec allowed' if allow_exec else 'no exec'}"


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def load(program: bytes) -> None:
    """Set NO_NEW_PRIVS and load ``program`` into this process, all threads (TSYNC).

    Raises ``OSError`` when the kernel refuses (no CONFIG_SECCOMP_FILTER:
    EINVAL; a thread that cannot be synchronised: ESRCH naming its tid) and
    ``ValueError`` on an architecture without a known ``seccomp`` syscall number.
    """
    spec = ARCHES.get(MACHINE)
    if spec is None:
        raise ValueError(f"no seccomp support for architecture {MACHINE!r}")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    no_new_privs()
    result = syscall(spec.sys_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(fprog))
    if result > 0:  # TSYNC: the id of a thread that could not be synchronised
        raise OSError(3, f"thread {result} could not be synchronised (TSYNC)")


def install(*, allow_inet: bool = False, allow_exec: bool = False) -> str:
    """:func:`build` the filter for this machine and :func:`load` it; returns :func:`describe`."""
    load(build(MACHINE, allow_inet=allow_inet, allow_exec=allow_exec))
    return describe(allow_inet=allow_inet, allow_exec=allow_exec)
