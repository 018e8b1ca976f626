"""The Landlock layer: filesystem, TCP and scope rules through raw syscalls (ctypes).

Stdlib only. Not the PyPI ``landlock`` package: it has no network rules (ABI 4)
and no scopes (ABI 6), and it rejects directory rights on a file path with
EINVAL instead of narrowing them; ~100 lines of ctypes do all of it.

* :func:`abi` — the ABI version, ``(0, reason)`` when unavailable: ENOSYS
  (kernel without Landlock, or the syscall is filtered, e.g. by an old
  container runtime), EOPNOTSUPP (built in but not enabled: not in ``lsm=``).
* Best effort per ABI: access bits the running kernel does not know are dropped
  (REFER needs ABI 2, TRUNCATE 3, TCP 4, IOCTL_DEV 5, scopes 6); the ruleset
  attribute is 8, 16 or 24 bytes accordingly. Every filesystem right the ABI
  knows is *handled*, so whatever the rules do not grant is denied.
* A path rule on a file gets only the file rights (EXECUTE, WRITE_FILE,
  READ_FILE, TRUNCATE, IOCTL_DEV); directory-only rights on a file make the
  kernel answer EINVAL. Paths that do not exist, or that this uid cannot
  reach (EACCES on a parent: then nothing beneath is reachable anyway), are
  skipped and counted in the description.
* :func:`apply` sets NO_NEW_PRIVS, restricts the calling process and returns
  what is in force (e.g. ``"landlock abi 7: fs, tcp, scopes"``). Landlock
  binds the calling *thread* only: call it before any thread starts (the boot
  does; it refuses when ``/proc/self/task`` shows more than one).

Landlock (ABI ≤ 7) does not control ``connect()`` to *named* unix sockets, UDP,
or fds the process already holds; ptrace and ``/proc/<pid>`` access to
processes outside the domain are denied by Landlock itself at every ABI.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from ._sys import no_new_privs, syscall

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .plan import LandlockRules

__all__ = ["abi", "apply", "fs_rights", "narrow", "path_access", "ruleset_attr"]

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH, RULE_NET_PORT = 1, 2

# LANDLOCK_ACCESS_FS_*
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
# LANDLOCK_ACCESS_NET_* (ABI 4)
BIND_TCP = 1 << 0
CONNECT_TCP = 1 << 1
# LANDLOCK_SCOPE_* (ABI 6)
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

#: Rights that apply to a file (everything else is directory-only).
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
#: What each kind of grant means. Write implies read; device nodes are never created.
READ_RIGHTS = READ_FILE | READ_DIR
WRITE_RIGHTS = (READ_RIGHTS | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO
                | MAKE_SYM | REFER | TRUNCATE | IOCTL_DEV)
EXECUTE_RIGHTS = READ_RIGHTS | EXECUTE
KIND_RIGHTS = {"read": READ_RIGHTS, "write": WRITE_RIGHTS, "execute": EXECUTE_RIGHTS}


def fs_rights(abi_version: int) -> int:
    """Every filesystem access right the given ABI knows (0 for ABI 0)."""
    if abi_version < 1:
        return 0
    rights = (1 << 13) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi_version >= 2:
        rights |= REFER
    if abi_version >= 3:
        rights |= TRUNCATE
    if abi_version >= 5:
        rights |= IOCTL_DEV
    return rights



def ruleset_attr(abi_version: int, fs: int, net: int, scoped: int) -> bytes:
    """``struct landlock_ruleset_attr`` cut to the size the ABI knows (8, 16 or 24 bytes)."""
    size = 8 if abi_version < 4 else 16 if abi_version < 6 else 24
    return struct.pack("=QQQ", fs, net, scoped)[:size]


def path_access(rules: LandlockRules) -> dict[str, int]:
    """Path → requested rights (the union of every list the path is in), before file/ABI narrowing."""
    out: dict[str, int] = {}
    for kind, paths in (("read", rules.read), ("write", rules.write), ("execute", rules.execute)):
        for path in paths:
            out[path] = out.get(path, 0) | KIND_RIGHTS[kind]
    return out


def narrow(rights: int, *, is_dir: bool, abi_version: int) -> int:
    """Rights as the kernel accepts them for this path: file rights only on a file, ABI-known bits only."""
    return rights & fs_rights(abi_version) & (-1 if is_dir else FILE_RIGHTS)


def abi() -> tuple[int, str]:
    """``(version, "")``, or ``(0, reason)`` when Landlock cannot be used here."""
    try:
        return syscall(SYS_CREATE_RULESET, None, 0, CREATE_RULESET_VERSION), ""
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return 0, "ENOSYS: the kernel has no Landlock (or a seccomp filter hides its syscalls)"
        if exc.errno == errno.EOPNOTSUPP:
            return 0, "EOPNOTSUPP: Landlock is built in but disabled at boot (not in the lsm= list)"
        return 0, f"landlock_create_ruleset: {exc.strerror} (errno {exc.errno})"


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1  # no /proc: cannot tell; the boot runs before any thread anyway


def apply(rules: LandlockRules, abi_version: int | None = None) -> str:
    """Restrict this process by ``rules``; returns what is in force. Raises ``OSError`` / ``RuntimeError``.

    Does not look at ``rules.required``: the caller decides what an
    unavailable Landlock means. When ``abi_version`` is 0 (or :func:`abi`
    says so) nothing is done and the description says why.
    """
    if abi_version is None:
        abi_version, reason = abi()
        if abi_version == 0:
            return f"landlock off: {reason}"
    threads = _threads()
    if threads > 1:
        raise RuntimeError(f"{threads} threads: Landlock would confine only the calling one")
    fs = fs_rights(abi_version)
    net = 0
    scoped = 0
    parts = ["fs"]
    if abi_version >= 4:
        net = (CONNECT_TCP if rules.tcp_connect is not None else 0) | (BIND_TCP if rules.tcp_bind is not None else 0)
        if net:
            parts.append("tcp")
    elif rules.tcp_connect is not None or rules.tcp_bind is not None:
        parts.append("no tcp rules (abi < 4)")
    if abi_version >= 6:
        scoped = (SCOPE_ABSTRACT_UNIX_SOCKET if rules.scope_abstract_unix else 0) | (
            SCOPE_SIGNAL if rules.scope_signal else 0)
        if scoped:
            parts.append("scopes")
    elif rules.scope_abstract_unix or rules.scope_signal:
        parts.append("no scopes (abi < 6)")

    raw_attr = ruleset_attr(abi_version, fs, net, scoped)
    attr = ctypes.create_string_buffer(raw_attr, len(raw_attr))
    ruleset = syscall(SYS_CREATE_RULESET, attr, len(raw_attr), 0)
    try:
        skipped = 0
        for path, rights in path_access(rules).items():
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                skipped += 1  # missing, or unreachable for this uid (then nothing beneath it is reachable either)
                continue
            try:
                is_dir = (os.fstat(fd).st_mode & 0o170000) == 0o040000
                access = narrow(rights, is_dir=is_dir, abi_version=abi_version)
                rule = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)
                syscall(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, rule, 0)
            except OSError as exc:
                raise OSError(exc.errno, f"rule for {path}: {exc.strerror}") from None
            finally:
                os.close(fd)
        if net:
            ports: dict[int, int] = {}
            for port in rules.tcp_connect or ():
                ports[port] = ports.get(port, 0) | CONNECT_TCP
            for port in rules.tcp_bind or ():
                ports[port] = ports.get(port, 0) | BIND_TCP
            for port, access in ports.items():
                rule = ctypes.create_string_buffer(struct.pack("=QQ", access, port), 16)
                syscall(SYS_ADD_RULE, ruleset, RULE_NET_PORT, rule, 0)
        no_new_privs()
        syscall(SYS_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)
    extra = f" ({skipped} missing or unreachable path{'s' if skipped != 1 else ''} skipped)" if skipped else ""
    return f"landlock abi {abi_version}: {', '.join(parts)}{extra}"
