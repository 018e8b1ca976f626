"""One cgroup per extension: a hard memory limit and a pids limit for its whole process tree.

Detection (:func:`detect`, pure file reads of ``/proc/self/mountinfo`` and
``/proc/self/cgroup``) picks where per-extension cgroups can be made:

* **v2** when the unified hierarchy offers ``memory`` and ``pids`` and a base
  is writable. A cgroup with processes cannot enable controllers for its
  children ("no internal processes"), and the host sits in its own cgroup, so
  the base is, in order: the host's cgroup if it is the true root (no
  ``cgroup.type``; the controllers are enabled in its ``cgroup.subtree_control``
  on first use) or already delegates both controllers; else its *parent*
  (the extension cgroups are siblings of the host's, e.g. in a systemd slice
  delegated to the user). A container's ``/`` (cgroup namespace) holding the
  host is neither: no cgroup layer, and the reason says so.
* **v1** when the ``memory`` and ``pids`` hierarchies are mounted and the
  host's own cgroup in each (from ``/proc/self/cgroup``) is writable: the
  extension cgroups are made under it (``…/memory/<ours>/kithost-…`` and
  ``…/pids/<ours>/kithost-…``).
* else ``None`` and the exact reason (``cgroup v2 has no memory controller
  (cgroup.controllers: hugetlb)``, ``… is not writable (not root)``).

:class:`ExtensionCgroup` is one extension's cgroup (v1: a pair of dirs):

* :meth:`~ExtensionCgroup.create` makes it with ``memory.max`` /
  ``memory.limit_in_bytes`` (swap capped too where the kernel accounts it; v2
  also ``memory.oom.group=1``: an OOM kills the whole tree) and ``pids.max``.
  These count the whole tree once, and ``pids.max`` applies to root too
  (``RLIMIT_NPROC`` does not).
* :meth:`~ExtensionCgroup.join_prefix` is how the child gets in *before* any
  extension code runs, without ``preexec_fn`` (the host has threads): an argv
  prefix ``/bin/sh -c 'echo $$ > …/cgroup.procs && … || exit 125; exec "$@"'``.
  Place it first, before any uid drop (``cgroup.procs`` is root's). Exit
  status :data:`EXIT_JOIN` (125) means the join failed and nothing ran.
* :meth:`~ExtensionCgroup.adopt` is the other way, for a child that waits
  before any extension code runs (a Python extension, at reading its secret
  pipe): the host moves every process of the tree in while it starts. A
  migration waits for an RCU grace period (``cgroup_threadgroup_rwsem``; about
  5-20 ms on a busy 2-CPU VM, measured): done beside the interpreter's start
  instead of before it, it no longer adds to a cold start.
* :meth:`~ExtensionCgroup.kill` kills every process in it (v2
  ``cgroup.kill``; v1: SIGKILL to each pid of ``cgroup.procs`` until it stays
  empty — the pids limit bounds how fast a fork bomb can refill it).
* :meth:`~ExtensionCgroup.remove` kills what is left and removes the dirs.
* :meth:`~ExtensionCgroup.stats` reads usage and the OOM-kill count (v1
  ``memory.oom_control`` ``oom_kill``, ``memory.failcnt``; v2
  ``memory.events`` ``oom_kill``); :meth:`CgroupStats.verdict` says
  ``killed: memory limit 64 MiB (cgroup out-of-memory kill)``.

Names are ``kithost-<host pid>-x<slot>-<extension>`` (:func:`cgroup_name`):
unique per host and per extension. :func:`sweep_stale` removes those of hosts
that died (pid gone, or reused by a process younger than the cgroup), killing
what is still inside; run it at host start.

All writes go through ``os.write`` on an unbuffered fd: a buffered
``open().write()`` reports a cgroupfs error only at close, or never.
"""

from __future__ import annotations

import enum
import errno
import os
import re
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = [
    "EXIT_JOIN",
    "CgroupError",
    "CgroupStats",
    "CgroupSupport",
    "CgroupVersion",
    "ExtensionCgroup",
    "cgroup_name",
    "detect",
    "host_pid_of",
    "sweep_stale",
]

#: Exit status of the join prefix when the child could not enter its cgroup (nothing else ran).
EXIT_JOIN = 125
#: Prefix of every cgroup this module makes.
PREFIX = "kithost-"
_NAME = re.compile(r"^kithost-(\d+)-")
_SH = "/bin/sh"


class CgroupError(OSError):
    """A cgroup could not be made, configured or removed (the message names the file and the errno)."""


class CgroupVersion(enum.StrEnum):
    V1 = "v1"
    V2 = "v2"


@dataclass(frozen=True, slots=True)
class CgroupSupport:
    """Where this host makes per-extension cgroups."""

    version: CgroupVersion
    #: Base of the memory cgroups (v2: of the one cgroup per extension).
    memory: Path
    #: Base of the pids cgroups (v2: the same as ``memory``).
    pids: Path
    #: v2: ``+memory +pids`` must be written to ``memory/cgroup.subtree_control`` before the first cgroup.
    enable: bool = False

    @property
    def bases(self) -> tuple[Path, ...]:
        return (self.memory,) if self.memory == self.pids else (self.memory, self.pids)

    def describe(self) -> str:
        if self.version is CgroupVersion.V2:
            return f"cgroup v2 at {self.memory}" + (" (controllers enabled on first use)" if self.enable else "")
        return f"cgroup v1 (memory: {self.memory}, pids: {self.pids})"


# ---- detection


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True, slots=True)
class _Mount:
    root: str
    point: str
    fstype: str
    options: frozenset[str]


def _mounts(mountinfo: str) -> list[_Mount]:
    out = []
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if not sep or len(fields) < 5 or len(rest) < 3:
            continue
        out.append(_Mount(_unescape(fields[3]), _unescape(fields[4]), rest[0], frozenset(rest[2].split(","))))
    return out


def _own_paths(self_cgroup: str) -> tuple[dict[str, str], str | None]:
    """``controller -> path`` of the v1 hierarchies, and the v2 path, from ``/proc/self/cgroup``."""
    v1: dict[str, str] = {}
    v2 = None
    for line in self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        else:
            for controller in parts[1].split(","):
                v1[controller] = parts[2]
    return v1, v2


def _under(mount: _Mount, path: str) -> Path:
    """The directory of cgroup ``path`` in ``mount`` (whose root may itself be a sub-cgroup)."""
    root = mount.root.rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root):]
    return Path(mount.point) / path.lstrip("/")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def _detect_v2(mounts: list[_Mount], own: str | None) -> tuple[CgroupSupport | None, str]:
    mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if mount is None or own is None:
        return None, "cgroup v2 is not mounted"
    here = _under(mount, own)
    controllers = set(_read(here / "cgroup.controllers").split())
    missing = [c for c in ("memory", "pids") if c not in controllers]
    if missing:
        have = " ".join(sorted(controllers)) or "none"
        return None, f"cgroup v2 has no {' and no '.join(missing)} controller (cgroup.controllers: {have})"
    delegated = set(_read(here / "cgroup.subtree_control").split())
    # Only the true root cgroup (no cgroup.type file) may hold processes and delegate controllers at once;
    # the root of a cgroup namespace (a container's "/") is an ordinary cgroup.
    true_root = not (here / "cgroup.type").exists()
    if {"memory", "pids"} <= delegated or true_root:
        if _writable(here):
            return CgroupSupport(CgroupVersion.V2, here, here, enable=not {"memory", "pids"} <= delegated), ""
        return None, f"cgroup v2: {here} is not writable" + ("" if os.geteuid() == 0 else " (not root)")
    why = (f"cgroup v2: the host's cgroup {here} holds processes, so it cannot enable controllers for "
           "child cgroups")
    if here == Path(mount.point):
        return None, f"{why}, and it is the top of this cgroup namespace"
    parent = here.parent
    if not {"memory", "pids"} <= set(_read(parent / "cgroup.subtree_control").split()):
        return None, f"{why}, and its parent {parent} does not delegate memory and pids"
    if not _writable(parent):
        return None, f"{why}, and its parent {parent} is not writable" + ("" if os.geteuid() == 0 else
                                                                            " (not root)")
    return CgroupSupport(CgroupVersion.V2, parent, parent), ""


def _detect_v1(mounts: list[_Mount], own: dict[str, str]) -> tuple[CgroupSupport | None, str]:
    bases: dict[str, Path] = {}
    for controller in ("memory", "pids"):
        mount = next((m for m in mounts if m.fstype == "cgroup" and controller in m.options), None)
        if mount is None or controller not in own:
            return None, f"cgroup v1 has no {controller} hierarchy"
        base = _under(mount, own[controller])
        if not _writable(base):
            why = "" if os.geteuid() == 0 else " (not root)"
            return None, f"cgroup v1 {controller} hierarchy {base} is not writable{why}"
        bases[controller] = base
    return CgroupSupport(CgroupVersion.V1, bases["memory"], bases["pids"]), ""


def detect(mountinfo: str | None = None, self_cgroup: str | None = None) -> tuple[CgroupSupport | None, str]:
    """Where per-extension cgroups can be made, or ``(None, why not)``. Reads ``/proc/self`` when not given.

    With v1 chosen on a hybrid system, the second item says why v2 was not (else it is empty).
    """
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    if self_cgroup is None:
        self_cgroup = Path("/proc/self/cgroup").read_text()
    mounts = _mounts(mountinfo)
    own_v1, own_v2 = _own_paths(self_cgroup)
    v2, why_v2 = _detect_v2(mounts, own_v2)
    if v2 is not None:
        return v2, ""
    v1, why_v1 = _detect_v1(mounts, own_v1)
    if v1 is not None:
        return v1, why_v2 if own_v2 is not None else ""
    return None, f"{why_v2}; {why_v1}"


# ---- names


def cgroup_name(host_pid: int, slot: int, extension: str, host: int = 0) -> str:
    """``kithost-<host pid>-x<slot>-<extension>`` (the name made safe for a directory); the ``host``-th host of
    that process (after the first) adds ``h<host>-`` before the slot, so two hosts in one process never meet."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", extension)[:64].strip(".") or "_"
    return f"{PREFIX}{host_pid}-{f'h{host}-' if host else ''}x{slot}-{safe}"


def host_pid_of(name: str) -> int | None:
    """The host pid in a name made by :func:`cgroup_name`; ``None`` for any other name."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


# ---- files


def _write(path: Path, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        raise CgroupError(exc.errno, f"cannot open {path}: {exc.strerror}") from exc
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise CgroupError(exc.errno, f"cannot write {value!r} to {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _keyed(path: Path) -> dict[str, int]:
    """``key value`` lines (``memory.events``, ``memory.oom_control``, ``pids.events``)."""
    out = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def _number(path: Path) -> int | None:
    text = _read(path)
    return int(text) if text.isdigit() else None


def _procs(directory: Path) -> set[int]:
    try:
        text = (directory / "cgroup.procs").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


@dataclass(frozen=True, slots=True)
class CgroupStats:
    """What one extension's cgroup has seen (``None``: the kernel does not report it)."""

    memory_bytes: int | None
    memory_peak_bytes: int | None
    #: The hard memory limit (``None``: unlimited).
    memory_limit_bytes: int | None
    #: Processes killed by the OOM killer because of this cgroup's limit.
    oom_kills: int
    #: Times the memory limit was hit (v1 ``memory.failcnt``; v2 ``memory.events`` ``max``).
    memory_limit_hits: int
    pids: int | None
    pids_limit: int | None
    #: Forks refused by the pids limit (``pids.events`` ``max``).
    forks_refused: int

    def verdict(self) -> str | None:
        """``killed: memory limit 64 MiB (cgroup out-of-memory kill)`` / ``fork refused: cgroup pids limit (16)``,
        or ``None`` (the memory wording matches the host's own RSS watchdog: one reason, two enforcers)."""
        if self.oom_kills:
            limit = f" {self.memory_limit_bytes // (1 << 20)} MiB" if self.memory_limit_bytes else ""
            return f"killed: memory limit{limit} (cgroup out-of-memory kill)"
        if self.forks_refused:
            limit = f" ({self.pids_limit})" if self.pids_limit is not None else ""
            return f"fork refused: cgroup pids limit{limit}"
        return None


#: v1 reports "unlimited" as a huge number (PAGE_COUNTER_MAX pages).
_V1_UNLIMITED = 1 << 62


class ExtensionCgroup:
    """One extension's cgroup (v1: its memory dir and its pids dir)."""

    def __init__(self, support: CgroupSupport, name: str) -> None:
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"bad cgroup name {name!r}")
        self.support = support
        self.name = name
        #: The cgroup directories (v2: one; v1: memory, pids).
        self.paths = tuple(base / name for base in support.bases)

    def __repr__(self) -> str:
        return f"ExtensionCgroup({self.name!r}, {self.support.version})"

    @property
    def _memory(self) -> Path:
        return self.paths[0]

    @property
    def _pids(self) -> Path:
        return self.paths[-1]

    @classmethod
    def create(cls, support: CgroupSupport, name: str, memory_bytes: int | None,
               pids_max: int | None) -> ExtensionCgroup:
        """Make the cgroup with its limits (``None``: no limit). A leftover of the same name is emptied first."""
        group = cls(support, name)
        if support.enable:
            control = support.memory / "cgroup.subtree_control"
            if not {"memory", "pids"} <= set(_read(control).split()):
                _write(control, "+memory +pids")
        made: list[Path] = []
        try:
            for path in group.paths:
                try:
                    path.mkdir(mode=0o755)
                except FileExistsError:
                    group.kill()
                    path.rmdir()
                    path.mkdir(mode=0o755)
                made.append(path)
            group._limit(memory_bytes, pids_max)
        except OSError as exc:
            for path in reversed(made):
                try:
                    path.rmdir()
                except OSError:
                    pass
            if isinstance(exc, CgroupError):
                raise
            raise CgroupError(exc.errno, f"cannot make cgroup {name}: {exc}") from exc
        return group

    def _limit(self, memory_bytes: int | None, pids_max: int | None) -> None:
        mem, pids = self._memory, self._pids
        if self.support.version is CgroupVersion.V2:
            if memory_bytes is not None:
                _write(mem / "memory.max", str(memory_bytes))
                if (mem / "memory.swap.max").exists():
                    _write(mem / "memory.swap.max", "0")
            if (mem / "memory.oom.group").exists():
                _write(mem / "memory.oom.group", "1")
        elif memory_bytes is not None:
            _write(mem / "memory.limit_in_bytes", str(memory_bytes))
            if (mem / "memory.memsw.limit_in_bytes").exists():
                try:  # fails with EINVAL when swap accounting is off: then there is nothing to cap
                    _write(mem / "memory.memsw.limit_in_bytes", str(memory_bytes))
                except CgroupError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
        if pids_max is not None:
            _write(pids / "pids.max", str(pids_max))

    def adopt(self, pids: Iterable[int]) -> None:
        """Move each of ``pids`` (whole thread groups) into this cgroup, in every hierarchy where it is not yet
        (each write takes the kernel's migration lock, even for a process already there).

        A pid that is already gone is skipped. Raises :class:`CgroupError` when a move fails otherwise.
        """
        wanted = list(pids)
        if not wanted:
            return
        for path in self.paths:
            inside = _procs(path)
            for pid in wanted:
                if pid in inside:
                    continue
                try:
                    _write(path / "cgroup.procs", str(pid))
                except CgroupError as exc:
                    if exc.errno != errno.ESRCH:  # ESRCH: exited meanwhile, nothing left to move
                        raise

    def members(self) -> set[int]:
        """The processes in this cgroup in every hierarchy (v1: in both its memory and its pids cgroup)."""
        first, *rest = self.paths
        inside = _procs(first)
        for path in rest:
            inside &= _procs(path)
        return inside

    def holds(self, pid: int) -> bool:
        """Whether process ``pid`` is in this cgroup (every hierarchy)."""
        return pid in self.members()

    def join_prefix(self) -> tuple[str, ...]:
        """An argv prefix that moves the process into this cgroup, then execs the rest of the argv."""
        steps = " && ".join(f"echo $$ > {_quote(str(p / 'cgroup.procs'))}" for p in self.paths)
        return (_SH, "-c", f'{steps} || exit {EXIT_JOIN}; exec "$@"', "kithost-cgroup-join")

    def pids(self) -> set[int]:
        """Every process now in the cgroup."""
        out: set[int] = set()
        for path in self.paths:
            out |= _procs(path)
        return out

    def kill(self, timeout: float = 2.0) -> bool:
        """SIGKILL every process in the cgroup; ``True`` when it is empty within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        kill_file = self._memory / "cgroup.kill"
        if self.support.version is CgroupVersion.V2 and kill_file.exists():
            try:
                _write(kill_file, "1")
            except CgroupError:
                pass  # gone already, or an old kernel: fall back to the loop below
        while True:
            left = self.pids()
            if not left:
                return True
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    continue
            if time.monotonic() >= deadline:
                return not self.pids()
            time.sleep(0.01)

    def remove(self, timeout: float = 2.0) -> bool:
        """Kill what is left and remove the cgroup; ``True`` when every directory is gone."""
        deadline = time.monotonic() + timeout
        if not self.kill(timeout):
            return False
        left = [p for p in self.paths if p.exists()]
        while left:
            for path in list(left):
                try:
                    path.rmdir()
                    left.remove(path)
                except FileNotFoundError:
                    left.remove(path)
                except OSError:
                    pass  # EBUSY while the last processes finish exiting
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        return not left

    def __enter__(self) -> ExtensionCgroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def stats(self) -> CgroupStats:
        """Usage and limit events now."""
        mem, pids = self._memory, self._pids
        pid_events = _keyed(pids / "pids.events")
        pids_limit = _number(pids / "pids.max")
        pids_now = _number(pids / "pids.current")
        if self.support.version is CgroupVersion.V2:
            events = _keyed(mem / "memory.events")
            limit = _number(mem / "memory.max")
            return CgroupStats(_number(mem / "memory.current"), _number(mem / "memory.peak"), limit,
                               events.get("oom_kill", 0), events.get("max", 0), pids_now, pids_limit,
                               pid_events.get("max", 0))
        limit = _number(mem / "memory.limit_in_bytes")
        return CgroupStats(_number(mem / "memory.usage_in_bytes"), _number(mem / "memory.max_usage_in_bytes"),
                           None if limit is None or limit >= _V1_UNLIMITED else limit,
                           _keyed(mem / "memory.oom_control").get("oom_kill", 0),
                           _number(mem / "memory.failcnt") or 0, pids_now, pids_limit, pid_events.get("max", 0))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _host_alive(pid: int, since: float) -> bool:
    """Whether the host of a cgroup made at ``since`` (unix time) still runs (and is not a reused pid)."""
    try:
        return bool(psutil.Process(pid).create_time() <= since + 1.0)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell: leave it alone


def sweep_stale(support: CgroupSupport, own_pid: int | None = None) -> list[str]:
    """Kill the processes in, and remove, cgroups of hosts that died; returns the names removed."""
    own = os.getpid() if own_pid is None else own_pid
    names: set[str] = set()
    for base in support.bases:
        try:
            entries: Iterable[os.DirEntry[str]] = list(os.scandir(base))
        except OSError:
            continue
        for entry in entries:
            pid = host_pid_of(entry.name)
            if pid is None or pid == own or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                made = entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            if not _host_alive(pid, made):
                names.add(entry.name)
    removed = []
    for name in sorted(names):
        if ExtensionCgroup(support, name).remove():
            removed.append(name)
    return removed
