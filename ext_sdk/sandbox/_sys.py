"""Raw Linux system calls through ctypes (libc's ``syscall`` and ``prctl``), for the sandbox layers.

Stdlib only. Every argument is passed as a C ``long`` or pointer explicitly:
``syscall(2)`` is variadic and ctypes would otherwise pass Python ints as C
``int``. Errors raise ``OSError`` with the errno, like the ``os`` module.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["MACHINE", "PR_SET_NO_NEW_PRIVS", "PR_SET_PDEATHSIG", "no_new_privs", "prctl", "syscall"]

#: ``uname -m`` of this machine (the seccomp filter and a few syscall numbers depend on it).
MACHINE = os.uname().machine

PR_SET_NO_NEW_PRIVS = 38
#: ``prctl`` option: the signal this process gets when its parent dies.
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int


def _arg(value: object) -> object:
    return ctypes.c_long(value) if isinstance(value, int) else value


def syscall(number: int, *args: object) -> int:
    """``syscall(number, *args)``; ints travel as C longs, ctypes objects/None as pointers. Raises OSError."""
    result: int = _syscall(ctypes.c_long(number), *(_arg(a) for a in args))
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """``prctl(option, ...)`` with unsigned long arguments. Raises OSError."""
    result: int = _prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4),
                         ctypes.c_ulong(arg5))
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def no_new_privs() -> None:
    """``PR_SET_NO_NEW_PRIVS``: no exec can gain privileges from now on (needed by seccomp and Landlock)."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)
