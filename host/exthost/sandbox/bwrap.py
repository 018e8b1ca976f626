"""The bubblewrap command line of one sandboxed extension: a pure function of a :class:`BwrapPlan`.

:func:`bwrap_argv` returns the argv *prefix* (ending in ``--``); the payload (``python -I -m
ext_sdk.sandbox.boot …`` or ``node …``) is appended by the caller. It reads no
file and starts nothing: the impure facts it needs (the layout of ``/``, where
the interpreter lives) are looked up once by :func:`detect_layout` and
:func:`runtime_paths` and passed in the plan, so tests build plans by hand.

What the sandbox sees (an allow-list; everything else of the host is absent):

=================================  ============================================================
``/usr`` + ``/bin /lib /lib64 …``  read-only (symlinks into ``/usr`` on a merged-/usr system,
                                   read-only binds otherwise)
``/etc``                           only ``ld.so.cache``, ``ssl``, ``ca-certificates``,
                                   ``alternatives`` (node!), ``localtime``; plus ``resolv.conf``,
                                   ``hosts``, ``nsswitch.conf``… when the network is granted
python prefix, venv, SDK package   read-only at the same paths (``sys.base_prefix``,
                                   ``sys.prefix``, the ``ext_sdk`` package directory)
the extension's directory          read-only, same path
``read_only`` / ``read_write``     operator-granted paths, same paths
the private socket directory       same path (the ``ipc://`` endpoints in the environment are
                                   absolute paths); **read-only by default**: ``connect()`` on a
                                   unix socket needs no writable mount, and a read-only dir
                                   means the extension cannot unlink or replace the host's
                                   sockets or plant files there (``socket_dir_rw`` to relax)
the work dir                       read-write, the cwd (``chdir``)
``/tmp``                           a private tmpfs, mode 1777 (emitted *before* any bind under
                                   ``/tmp``: the runtime dir is often there, and a later tmpfs
                                   would hide it)
``/dev``, ``/proc``                bwrap's minimal ``/dev``; a ``/proc`` of the new pid namespace
``/``                              bwrap's tmpfs, remounted read-only at the end
=================================  ============================================================

Mounts are emitted parent-first (by depth), and every missing parent of a
mount point that lies on a tmpfs gets ``--perms 0755 --dir`` first: bwrap
running as real root creates them ``0700`` otherwise, and a dropped uid then
cannot reach ``/root/.pyenv/...`` (``python: can't open file ...:
[Errno 13] Permission denied``).

Modes (:class:`BwrapMode`, chosen from what the probe found):

* ``userns`` — ``--unshare-all --unshare-user``: works unprivileged. ``uid``/
  ``gid`` become ``--uid/--gid``, the identity *inside* the user namespace
  only; on the host the process keeps the caller's uid (for a root host: uid 0,
  the owner of root's files, so only the mount namespace hides them). With
  ``disable_userns`` (bwrap ≥ 0.8: pass ``Probe.bwrap_disable_userns``) the
  child cannot make nested user namespaces.
* ``root`` — real root without a user namespace (``--unshare-net --unshare-pid
  --unshare-ipc --unshare-uts --unshare-cgroup-try``): binds are made with
  root's rights (so a ``/root/.pyenv`` interpreter is reachable), then the
  payload — the sandbox boot, whose plan names the uid — drops to the
  dedicated uid *inside* (:mod:`ext_sdk.sandbox.identity`). bwrap keeps only
  :data:`USER_SWITCH_CAPS` for that step (``CAP_SETUID``, ``CAP_SETGID``,
  ``CAP_SETPCAP``, and ``CAP_DAC_READ_SEARCH`` for the ``--chdir`` into the
  uid's 0700 work dir); the boot ends with no capability at all (effective,
  permitted, bounding, inheritable, ambient). ``uid``/``gid`` of the plan only
  decide that here: the payload must do the switch.

Always: ``--die-with-parent`` and the pid namespace (so SIGKILL of the bwrap pid
kills the whole tree), ``--new-session``, ``--cap-drop ALL``, no network unless
``network`` (then ``--share-net``/no ``--unshare-net``), ``--clearenv`` plus one
``--setenv`` per variable of ``env``. Note: the values are on bwrap's command
line, which any local user can read in ``/proc/<pid>/cmdline`` while bwrap
sets up (~5 ms) — give secrets as files (the launch secret is one), not env.

``seccomp_fd`` becomes ``--seccomp FD``; bwrap *consumes* the descriptor's
offset, so every spawn needs a freshly opened (or rewound) fd, passed with
``Popen(pass_fds=...)``. ``status_fd`` becomes ``--json-status-fd FD`` (bwrap
writes ``{"child-pid": N}``: the payload's pid as seen by the host).
"""

from __future__ import annotations

import enum
import functools
import os
import stat
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "BWRAP",
    "ETC_BASE",
    "ETC_NETWORK",
    "MERGED_USR",
    "USER_SWITCH_CAPS",
    "BwrapMode",
    "BwrapPlan",
    "RuntimePaths",
    "SystemLayout",
    "bwrap_argv",
    "detect_layout",
    "mount_points",
    "runtime_paths",
]

#: Where Debian (and most distributions) install bubblewrap.
BWRAP = "/usr/bin/bwrap"
#: What root-mode bwrap keeps for the payload's switch to the dedicated uid (the boot then drops them, and
#: every other capability). ``CAP_DAC_READ_SEARCH`` lets bwrap, still uid 0, ``--chdir`` into the work dir
#: (mode 0700, owned by the dedicated uid): without it, ``bwrap: Can't chdir to …/w: Permission denied``.
USER_SWITCH_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_DAC_READ_SEARCH")

#: ``/etc`` entries every runtime needs (bound with ``--ro-bind-try``: absent ones are skipped).
ETC_BASE = ("/etc/ld.so.cache", "/etc/ssl", "/etc/ca-certificates", "/etc/alternatives", "/etc/localtime")
#: ``/etc`` entries name resolution needs: bound only when the network is granted.
ETC_NETWORK = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/host.conf",
               "/etc/services", "/etc/protocols")

#: Top-level entries that may be symlinks into /usr (merged /usr) or real directories.
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


class BwrapMode(enum.StrEnum):
    """How bwrap gets its namespaces."""

    #: ``--unshare-all --unshare-user``: an unprivileged user namespace (works for any uid).
    USERNS = "userns"
    #: Real root, no user namespace; the payload enters the dedicated uid inside.
    ROOT = "root"


@dataclass(frozen=True, slots=True)
class SystemLayout:
    """Which top-level directories are symlinks into ``/usr`` (merged /usr) and which are real."""

    #: ``(path, target)`` pairs recreated with ``--symlink target path`` (``("/bin", "usr/bin")``).
    symlinks: tuple[tuple[str, str], ...]
    #: Real top-level directories bound read-only (``/bin`` on a system without merged /usr).
    directories: tuple[str, ...] = ()


#: Debian ≥ 12, Fedora, Arch, Ubuntu: /bin /lib /lib64 /sbin are symlinks into /usr.
MERGED_USR = SystemLayout(symlinks=(("/bin", "usr/bin"), ("/lib", "usr/lib"), ("/lib64", "usr/lib64"),
                                    ("/sbin", "usr/sbin")))


@functools.cache
def detect_layout() -> SystemLayout:
    """This machine's :class:`SystemLayout` (``lstat`` of /bin, /lib, ...; cached)."""
    symlinks: list[tuple[str, str]] = []
    directories: list[str] = []
    for path in _TOP_LEVEL:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            symlinks.append((path, os.readlink(path)))
        elif stat.S_ISDIR(st.st_mode):
            directories.append(path)
    return SystemLayout(tuple(symlinks), tuple(directories))


@dataclass(frozen=True, slots=True)
class RuntimePaths:
    """Where the host's interpreter and the SDK live: bound read-only at the same paths."""

    #: ``sys.base_prefix``: the interpreter and its standard library (pyenv, /usr, ...).
    python_prefix: str
    #: ``sys.prefix``: the venv (site-packages with pyzmq, msgpack; the editable-install finder).
    venv: str
    #: The ``ext_sdk`` package directory (the venv holds an editable install pointing at it).
    sdk: str

    def paths(self) -> tuple[str, ...]:
        """The distinct paths, in order."""
        return tuple(dict.fromkeys((self.python_prefix, self.venv, self.sdk)))


@functools.cache
def runtime_paths() -> RuntimePaths:
    """The :class:`RuntimePaths` of this host (symlinks resolved; cached).

    Only the ``ext_sdk`` package is bound, not the whole repository: the
    sandboxed child imports nothing else of the project, and the repository
    may hold the operator's project-local ``.kithost/`` config and sessions.
    """
    import ext_sdk

    sdk = os.path.dirname(os.path.realpath(ext_sdk.__file__))
    return RuntimePaths(os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), sdk)


@dataclass(frozen=True, slots=True)
class BwrapPlan:
    """Everything :func:`bwrap_argv` needs for one extension process."""

    mode: BwrapMode
    #: The extension's private socket directory, bound at the same path.
    socket_dir: str
    #: Its work dir: bound read-write, the cwd unless ``chdir`` says otherwise.
    work_dir: str
    #: The whole environment of the payload (``--clearenv`` then one ``--setenv`` each).
    env: Mapping[str, str]
    #: Interpreter, venv and SDK (from :func:`runtime_paths`).
    runtime: RuntimePaths
    #: The extension's own directory (read-only); ``None`` for a command extension without one.
    extension_dir: str | None = None
    #: Extra paths granted read-only.
    read_only: tuple[str, ...] = ()
    #: Extra paths granted read-write.
    read_write: tuple[str, ...] = ()
    #: Whether the network is granted (shares the host's network namespace).
    network: bool = False
    #: An open fd of a compiled BPF program for ``--seccomp`` (fresh per spawn), or ``None``.
    seccomp_fd: int | None = None
    #: An fd for ``--json-status-fd`` (bwrap reports the payload's host pid there), or ``None``.
    status_fd: int | None = None
    #: The dedicated uid/gid (root mode: entered by the payload, bwrap keeps it the capabilities for that;
    #: userns mode: the id inside the namespace).
    uid: int | None = None
    gid: int | None = None
    #: The layout of ``/`` (from :func:`detect_layout`).
    layout: SystemLayout = MERGED_USR
    #: The working directory inside; ``None`` means ``work_dir``.
    chdir: str | None = None
    #: Bind the socket directory read-write (default read-only; the work dir is read-write anyway).
    socket_dir_rw: bool = False
    #: userns mode: ``--disable-userns`` (no nested user namespaces). bwrap ≥ 0.8 only (older ones fail
    #: with "Unknown option"): pass ``Probe.bwrap_disable_userns``.
    disable_userns: bool = False
    bwrap: str = BWRAP
    #: Extra ``/etc`` entries (on top of :data:`ETC_BASE`, and :data:`ETC_NETWORK` with ``network``).
    etc: tuple[str, ...] = ()


#: A mount operation: (bwrap option, source or None, destination).
_Mount = tuple[str, str | None, str]
_BIND_KINDS = frozenset({"--ro-bind", "--bind"})


def _norm(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"bwrap plan: path must be absolute: {path!r}")
    return os.path.normpath(path)


def mount_points(plan: BwrapPlan) -> list[_Mount]:
    """The plan's mounts, de-duplicated, parent-first (without the ``--dir`` steps)."""
    mounts: dict[str, _Mount] = {}

    def add(kind: str, source: str | None, dest: str) -> None:
        dest = _norm(dest)
        old = mounts.get(dest)
        if old is not None and old[0] == "--bind" and kind != "--bind":
            return  # the same path granted read-write and read-only: read-write wins
        mounts[dest] = (kind, None if source is None else _norm(source), dest)

    add("--dev", None, "/dev")
    add("--proc", None, "/proc")
    add("--tmpfs", None, "/tmp")
    add("--ro-bind", "/usr", "/usr")
    for link, target in plan.layout.symlinks:
        mounts[_norm(link)] = ("--symlink", target, _norm(link))
    for directory in plan.layout.directories:
        add("--ro-bind", directory, directory)
    etc = ETC_BASE + (ETC_NETWORK if plan.network else ()) + plan.etc
    for path in dict.fromkeys(etc):
        add("--ro-bind-try", path, path)
    for path in plan.runtime.paths():
        add("--ro-bind", path, path)
    if plan.extension_dir is not None:
        add("--ro-bind", plan.extension_dir, plan.extension_dir)
    for path in plan.read_only:
        add("--ro-bind", path, path)
    add("--bind" if plan.socket_dir_rw else "--ro-bind", plan.socket_dir, plan.socket_dir)
    add("--bind", plan.work_dir, plan.work_dir)
    for path in plan.read_write:
        add("--bind", path, path)
    return sorted(mounts.values(), key=lambda m: (_depth(m[2]), m[2]))


def _depth(path: str) -> int:
    """Components of a normalised absolute path (``/`` has none)."""
    return 0 if path == "/" else path.count("/")


@functools.lru_cache(maxsize=1024)
def _parents(path: str) -> tuple[str, ...]:
    """The proper ancestors of a normalised absolute path, outermost first, without ``/`` (string work
    only: every launch asks this for the same few dozen paths, and ``pathlib`` was a third of its cost)."""
    out: list[str] = []
    parent = os.path.dirname(path)
    while parent not in ("/", ""):
        out.append(parent)
        parent = os.path.dirname(parent)
    return tuple(reversed(out))


def _missing_parents(dest: str, binds: Iterable[str], made: set[str]) -> list[str]:
    """Parents of ``dest`` that bwrap must create (they lie on a tmpfs, not inside a bind of host files)."""
    out = []
    for text in _parents(dest):
        if text in made:
            continue
        if any(text == b or text.startswith(b + "/") for b in binds):
            continue  # inside a bind of a host directory: it exists already
        out.append(text)
    return out


def bwrap_argv(plan: BwrapPlan) -> tuple[str, ...]:
    """The argv prefix that runs a payload under ``plan`` (append the payload's argv to it)."""
    argv: list[str] = [plan.bwrap]
    if plan.mode is BwrapMode.USERNS:
        argv += ["--unshare-all", "--unshare-user"]
        if plan.network:
            argv.append("--share-net")
        if plan.disable_userns:
            argv.append("--disable-userns")
        if plan.uid is not None:
            argv += ["--uid", str(plan.uid)]
        if plan.gid is not None:
            argv += ["--gid", str(plan.gid)]
    else:
        argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if not plan.network:
            argv.append("--unshare-net")
    argv += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    drop_uid = plan.mode is BwrapMode.ROOT and plan.uid is not None
    if drop_uid:
        for cap in USER_SWITCH_CAPS:
            argv += ["--cap-add", cap]

    mounts = mount_points(plan)
    binds: list[str] = []
    made: set[str] = set()
    for kind, source, dest in mounts:
        for parent in _missing_parents(dest, binds, made):
            argv += ["--perms", "0755", "--dir", parent]
            made.add(parent)
        if kind == "--tmpfs":
            argv += ["--perms", "1777", "--tmpfs", dest]
        elif kind in ("--dev", "--proc"):
            argv += [kind, dest]
        else:
            assert source is not None
            argv += [kind, source, dest]
        made.add(dest)
        if kind in _BIND_KINDS:
            binds.append(dest)
    argv += ["--remount-ro", "/"]

    argv.append("--clearenv")
    for key in sorted(plan.env):
        argv += ["--setenv", key, plan.env[key]]
    argv += ["--chdir", _norm(plan.chdir or plan.work_dir)]
    if plan.seccomp_fd is not None:
        argv += ["--seccomp", str(plan.seccomp_fd)]
    if plan.status_fd is not None:
        argv += ["--json-status-fd", str(plan.status_fd)]
    argv.append("--")
    return tuple(argv)
