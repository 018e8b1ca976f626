"""The capabilities layer: a child started as root gives up every capability before extension code runs.

Stdlib only (ctypes ``prctl``/``capset``). Why: without a dedicated uid or a
user namespace, an extension of a root host *is* root. Landlock and seccomp
still apply to root, but CAP_NET_ADMIN over the netlink socket the filter must
allow would let it reconfigure the host's network, CAP_DAC_OVERRIDE reads
other users' files wherever Landlock is off, CAP_KILL signals anyone, and
CAP_SYS_ADMIN covers dozens of less obvious calls. Root without capabilities
is an ordinary uid 0: it still owns root's files (only Landlock, bubblewrap or
a dedicated uid hide those).

:func:`drop_all` sets NO_NEW_PRIVS, then empties the ambient, bounding,
inheritable, permitted and effective sets. No later ``execve`` brings any
back: with NO_NEW_PRIVS the kernel caps a root exec (and a setuid or
file-capability binary) at the old permitted set, which is empty; the empty
bounding set says so a second time (it needs CAP_SETPCAP to change, so it is
left alone when that one is missing). A process that holds no capability
(non-root) has nothing to drop.
"""

from __future__ import annotations

import ctypes

from ._sys import MACHINE, no_new_privs, prctl, syscall

__all__ = ["drop_all", "drop_bounding", "held"]

PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SYS_CAPGET = {"x86_64": 125, "aarch64": 90}
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}


class _Header(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _Data(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))


def _capget() -> tuple[int, int, int]:
    header = _Header(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    syscall(SYS_CAPGET[MACHINE], ctypes.byref(header), data)
    eff = data[0].effective | data[1].effective << 32
    prm = data[0].permitted | data[1].permitted << 32
    inh = data[0].inheritable | data[1].inheritable << 32
    return eff, prm, inh


def held() -> int:
    """The permitted capability set of this process, as a bit mask."""
    return _capget()[1]


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


def drop_bounding() -> None:
    """Empty the bounding set (needs CAP_SETPCAP; raises ``OSError`` ``EPERM`` without it)."""
    for cap in range(_last_cap() + 1):
        prctl(PR_CAPBSET_DROP, cap)


def drop_all() -> str:
    """Drop every capability for good; returns what was done. Raises ``OSError`` / ``ValueError``."""
    if MACHINE not in SYS_CAPSET:
        raise ValueError(f"capability syscalls unknown for architecture {MACHINE!r}")
    no_new_privs()
    eff, prm, inh = _capget()
    try:
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass  # kernel < 4.3 has no ambient set
    if not (eff or prm or inh):
        return "capabilities: none held"
    bounding = "bounding set emptied"
    try:
        drop_bounding()
    except OSError:  # EPERM without CAP_SETPCAP: NO_NEW_PRIVS + an empty permitted set still hold
        bounding = "bounding set kept (no CAP_SETPCAP)"
    header = _Header(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    syscall(SYS_CAPSET[MACHINE], ctypes.byref(header), data)
    if any(_capget()):
        raise OSError(1, "capabilities still held after capset")
    return f"capabilities: all dropped, {bounding}"
