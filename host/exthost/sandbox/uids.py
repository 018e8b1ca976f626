"""A dedicated uid/gid per extension slot, for a host that runs as root.

The range. Ids are ``ID_BASE + n`` for ``n`` in ``[0, ID_COUNT)``, with
``ID_BASE = 1_900_000_000``, uid and gid equal. That number sits in the gap
systemd documents as unused (``1879048192…2147352575``: above the container
ranges that ``systemd-nspawn`` and ``systemd-machined`` hand out from 524288,
below the "foreign" image range at 2147352576 and the shadow-utils maximum
2147483647), far above ``login.defs``' user range (1000…60000), the dynamic
service users (61184…65519), ``nobody`` (65534) and the ``/etc/subuid`` ranges
``useradd`` hands out for rootless containers (from 100000 in blocks of 65536).
:func:`collisions` still checks ``/etc/passwd``, ``/etc/group``,
``/etc/subuid`` and ``/etc/subgid`` and the probe refuses the layer if
anything claims an id of the range. No passwd entry is created: the ids are
numbers only (``ls -l`` shows them as numbers).

Leases. :func:`lease_id` hands out ``ID_BASE + slot`` when free, otherwise the
next free id of the range. An id is held by an ``flock`` on
``/run/kithost-ids/<id>`` for as long as the lease (the host) lives, so two
root hosts on one machine (parallel CI jobs) never give two extensions the
same uid: with one uid they could signal and ptrace each other. A host that
dies drops its locks with its file descriptors.

The private directory (:func:`share_private_dir`): the extension's uid must
reach its own sockets and nothing else of the host's:

==========================  ======================================================
``x<slot>/``                ``0750 root:<gid>`` (enter and list; no writes)
``e``, ``c``, ``k``         ``0660 root:<gid>`` (zmq ``connect()`` needs write
                            permission on the socket; EACCES is *silent* in zmq:
                            the connect retries forever — see notes §2.7)
``secret``                  ``0640 root:<gid>`` (read once by the SDK)
``w/`` (work dir)           ``0700 <uid>:<gid>``, recursively (``os.fwalk``, no
                            symlink followed: safe against a previous occupant's links)
==========================  ======================================================

Sockets are bound by the host *after* the directory is made: call
:func:`grant_socket` (or :func:`share_private_dir` again) after binding and
before spawning.

Reachability (:func:`blockers`): the uid must be able to execute the
interpreter and read the venv and the SDK. Under a mode-0700 home (pyenv in
``/root``) it cannot, unless bubblewrap running as root binds those trees
(then only the permissions *inside* each bound tree matter: the parents are
recreated ``0755``). The probe uses this to say whether the uid layer needs
bwrap's root mode.

The uid is entered by the child itself, in the sandbox boot
(:mod:`ext_sdk.sandbox.identity`, the plan's ``user``), before any extension
code runs: no extra program in front of the interpreter.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = [
    "ID_BASE",
    "ID_COUNT",
    "LOCK_DIR",
    "IdLease",
    "blockers",
    "collisions",
    "dedicated_id",
    "grant_socket",
    "lease_id",
    "runtime_blockers",
    "share_private_dir",
]

#: First uid/gid of the dedicated range (see the module docstring for why here).
ID_BASE: Final = 1_900_000_000
#: Size of the range.
ID_COUNT: Final = 65_536
#: Where leases are held (root-only directory of lock files).
LOCK_DIR: Final = Path("/run/kithost-ids")
#: Socket files of a private directory (events, calls, control) and the launch secret.
SOCKETS: Final = ("e", "c", "k")
SECRET: Final = "secret"


def dedicated_id(slot: int) -> int:
    """The preferred uid (and gid) of extension slot ``slot``."""
    if not 0 <= slot < ID_COUNT:
        raise ValueError(f"slot {slot} outside the dedicated id range (0..{ID_COUNT - 1})")
    return ID_BASE + slot


def _in_range(first: int, count: int = 1) -> bool:
    return first < ID_BASE + ID_COUNT and first + count > ID_BASE


def collisions(etc: Path = Path("/etc")) -> list[str]:
    """Entries of passwd/group/subuid/subgid that claim an id of the range (empty: the range is free)."""
    out = []
    for name, id_field in (("passwd", 2), ("group", 2)):
        try:
            lines = (etc / name).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split(":")
            if len(parts) > id_field and parts[id_field].isdigit() and _in_range(int(parts[id_field])):
                out.append(f"/etc/{name}: {parts[0]} ({parts[id_field]})")
    for name in ("subuid", "subgid"):
        try:
            lines = (etc / name).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit() and _in_range(int(parts[1]),
                                                                                        int(parts[2])):
                out.append(f"/etc/{name}: {parts[0]} ({parts[1]}+{parts[2]})")
    return out


@dataclass(slots=True)
class IdLease:
    """One dedicated uid/gid, held until :meth:`release` (or until the host dies)."""

    id: int
    _fd: int | None = field(default=None, repr=False)

    @property
    def uid(self) -> int:
        return self.id

    @property
    def gid(self) -> int:
        return self.id

    def release(self) -> None:
        """Give the id back (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> IdLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lease_id(slot: int, lock_dir: Path = LOCK_DIR) -> IdLease:
    """Lease ``dedicated_id(slot)``, or the next free id of the range; raises ``OSError`` if none is free."""
    lock_dir.mkdir(mode=0o700, exist_ok=True)
    st = lock_dir.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise PermissionError(f"{lock_dir}: must be a directory of uid {os.geteuid()} with mode 0700")
    first = dedicated_id(slot) - ID_BASE
    for step in range(ID_COUNT):
        candidate = ID_BASE + (first + step) % ID_COUNT
        fd = os.open(lock_dir / str(candidate), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return IdLease(candidate, fd)
    raise OSError(f"no free id in {ID_BASE}..{ID_BASE + ID_COUNT - 1}")


def grant_socket(path: Path, gid: int) -> None:
    """Let group ``gid`` connect to the unix socket ``path``: ``0660 <owner>:<gid>`` (no symlink followed)."""
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise PermissionError(f"{path} is not a socket")
    os.chown(path, -1, gid, follow_symlinks=False)
    os.chmod(path, 0o660)  # not a symlink (checked); the directory is root's, so nobody else can swap it


def share_private_dir(directory: Path, uid: int, gid: int, work_dir: Path | None = None) -> None:
    """Give the extension's uid/gid what it needs of its private directory, and nothing more (see the table)."""
    directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(directory_fd, -1, gid)
        os.fchmod(directory_fd, 0o750)
        for name, mode in ((*((s, 0o660) for s in SOCKETS), (SECRET, 0o640))):
            try:
                st = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                raise PermissionError(f"{directory / name} is a symlink")
            os.chown(name, -1, gid, dir_fd=directory_fd, follow_symlinks=False)
            os.chmod(name, mode, dir_fd=directory_fd)  # not a symlink; only the host can write this directory
    finally:
        os.close(directory_fd)
    work = work_dir if work_dir is not None else directory / "w"
    _chown_tree(work, uid, gid)
    os.chmod(work, 0o700)  # a real directory (checked by _chown_tree) in a directory only the host writes


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    """``chown -R uid:gid top`` without following any symlink (``fwalk`` works on directory fds)."""
    if top.is_symlink() or not top.is_dir():
        raise NotADirectoryError(f"{top}: the work dir must be a real directory")
    for _root, dirs, files, root_fd in os.fwalk(top, follow_symlinks=False):
        os.fchown(root_fd, uid, gid)
        # files, and symlinks (to directories too: fwalk lists them in dirs without entering them)
        for name in (*files, *dirs):
            if name in files or stat.S_ISLNK(os.stat(name, dir_fd=root_fd, follow_symlinks=False).st_mode):
                os.chown(name, uid, gid, dir_fd=root_fd, follow_symlinks=False)


def _mode_allows(st: os.stat_result, bits: int) -> bool:
    """Whether "others" (an unrelated uid in no group of the file) have ``bits`` (r=4, w=2, x=1)."""
    return (st.st_mode & 0o007 & bits) == bits


def blockers(path: str, bound: Iterable[str] = (), need: int = 0o4) -> list[str]:
    """Why an unrelated uid cannot reach ``path`` (empty: it can).

    ``need`` is what it needs on ``path`` itself (``0o4`` read, ``0o5`` read+
    execute/enter, ``0o1`` execute). Directories on the way need ``x``. When
    ``path`` is inside one of ``bound`` (bubblewrap binds that tree and makes
    its parents ``0755``), only the part from the bound root down counts.
    """
    real = os.path.realpath(path)
    start = "/"
    for root in bound:
        root = os.path.realpath(root)
        if (real == root or real.startswith(root.rstrip("/") + "/")) and len(root) > len(start):
            start = root
    out = []
    parts = real.split("/")[1:]
    current = ""
    for index, part in enumerate(parts):
        current = f"{current}/{part}"
        last = index == len(parts) - 1
        if not last and len(current) < len(start) and start.startswith(current + "/"):
            continue  # above the bound root: bwrap recreates it 0755
        try:
            st = os.stat(current)
        except OSError as exc:
            return [f"{current}: {exc.strerror}"]
        if last:
            if not _mode_allows(st, need):
                out.append(f"{current} is mode {stat.S_IMODE(st.st_mode):04o}")
        elif not _mode_allows(st, 0o1):
            out.append(f"{current} is mode {stat.S_IMODE(st.st_mode):04o} (others cannot enter)")
    return out


def runtime_blockers(runtime_paths: Iterable[str], interpreter: str, bound: bool) -> list[str]:
    """Why an unrelated uid cannot run ``interpreter`` with the given trees (with or without bwrap's binds)."""
    trees = list(runtime_paths)
    roots = trees if bound else []
    out = blockers(interpreter, roots, need=0o1)
    for tree in trees:
        out += blockers(tree, roots, need=0o5)
    return list(dict.fromkeys(out))
