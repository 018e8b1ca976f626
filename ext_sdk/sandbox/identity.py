"""The dedicated-uid step: a child started as root becomes the extension's own uid before its code runs.

Stdlib only, no ctypes. Order (each step needs what the next one takes away):

1. the capability bounding set is emptied (``PR_CAPBSET_DROP`` needs
   CAP_SETPCAP, which the uid change removes);
2. supplementary groups are cleared, then the real, effective and saved gid
   set (needs CAP_SETGID);
3. the real, effective and saved uid set (needs CAP_SETUID): leaving uid 0 for
   good clears the permitted and effective capability sets (the kernel's rule
   without ``SECBIT_KEEP_CAPS``, which nothing here sets);
4. the result is read back: any id still different is an error.

The capabilities step that follows (:mod:`.capabilities`) sets NO_NEW_PRIVS
and empties what is left (inheritable, ambient). This replaces ``setpriv
--reuid U --regid G --clear-groups --bounding-set=-all`` as an extra program
in front of the interpreter (one exec less per start).
"""

from __future__ import annotations

import os

from . import capabilities

__all__ = ["become"]


def become(uid: int, gid: int) -> str:
    """Switch this process to ``uid``/``gid`` for good; returns what was done. Raises ``OSError``."""
    try:
        capabilities.drop_bounding()
        bounding = "bounding set emptied"
    except OSError:
        bounding = "bounding set kept (no CAP_SETPCAP)"
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise PermissionError(1, f"still uids {os.getresuid()}, gids {os.getresgid()}, groups {os.getgroups()}")
    return f"uid {uid}, gid {gid}, no groups, {bounding}"
