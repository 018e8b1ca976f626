"""What confinement this machine can give an extension: measured once per process, then cached.

:func:`probe` returns a :class:`Probe`: one :class:`Layer` per layer —
``available`` and a ``detail`` that is either what is in force
(``bubblewrap 0.8.0 (/usr/bin/bwrap): user namespaces; root mode``) or **the
exact reason it is missing** (bwrap's own first line of error text,
``landlock: ENOSYS (...)``, ``cgroup v2 has no memory controller
(cgroup.controllers: hugetlb)``, ``not root: no dedicated uid``,
``forced off by config``). Measured by:

==========  ===========================================================================
layer       how
==========  ===========================================================================
bwrap       found on ``PATH`` (absolute entries only) or ``/usr/bin``; ``bwrap
            --version``; then smoke tests with a 2 s timeout, run concurrently,
            with the options the builder relies on (``--proc``, ``--dev``,
            ``--perms``, ``--tmpfs``, ``--dir``, ``--remount-ro``, ``--clearenv``,
            ``--chdir``; an old bwrap fails here with its own "Unknown option"):
            ``--unshare-all --unshare-user`` (user namespaces; plus
            ``--disable-userns`` from 0.8), and as root the no-userns mode
            (``--unshare-net --unshare-pid --unshare-ipc --unshare-uts``) keeping
            only the capabilities the boot needs to enter a dedicated uid inside
landlock    ``landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)``
            (syscall 444) → the ABI; the errno otherwise (ENOSYS: not built in;
            EOPNOTSUPP: not enabled at boot; EPERM: blocked by a seccomp profile)
seccomp     the ``Seccomp:`` line of ``/proc/self/status`` (absent: no
            ``CONFIG_SECCOMP``; ``1``: strict mode), and
            ``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, NULL)`` → ``EFAULT``
            means filters are supported (``EINVAL``: no ``CONFIG_SECCOMP_FILTER``)
cgroup      :func:`.cgroups.detect` (file reads only)
uid         root (and ``CAP_SETUID``/``CAP_SETGID``), the
            id range free (:func:`.uids.collisions`), and whether another uid
            can run the interpreter and read the venv and SDK — directly, or only
            through bubblewrap's root-mode binds (a pyenv under a 0700 ``/root``)
==========  ===========================================================================

Cost: the file reads and syscalls take well under 1 ms; the bwrap processes
take ~5–15 ms together (the smoke tests run concurrently). :attr:`Probe.elapsed_ms`
records it. ``force_off`` disables layers on purpose (tests, operators): they
report ``forced off by config`` and their smoke tests are skipped.

Levels (:func:`assess`):

* **strong** — namespaces (bwrap) + seccomp + (Landlock or a dedicated uid);
* **reduced** — seccomp + Landlock without namespaces, or seccomp +
  namespaces with neither Landlock nor a dedicated uid (the mount namespace
  still hides the host's files; the defence in depth is missing);
* **weak** — anything less (no seccomp, or seccomp alone).

``assess`` returns the level and one reason per missing layer that keeps it
from the next level up (``bwrap: <detail>``); :func:`caveats` lists what is
missing without lowering the level (no cgroup: memory and process limits are
only rlimits; no dedicated uid).
"""

from __future__ import annotations

import ctypes
import enum
import errno
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from ...config import SandboxLayer
from . import cgroups, uids
from .bwrap import BWRAP, USER_SWITCH_CAPS, BwrapMode, detect_layout, runtime_paths

__all__ = [
    "LAYERS",
    "IsolationLevel",
    "Layer",
    "Probe",
    "assess",
    "caveats",
    "probe",
]

#: Every layer the probe reports, in this order.
#: The layer names, outermost concern first (derived from :class:`host.config.SandboxLayer`, defined once there).
LAYERS: Final = tuple(str(layer) for layer in SandboxLayer)
#: Detail of a layer disabled on purpose.
FORCED_OFF: Final = "forced off by config"
#: Timeout of each bwrap smoke test (seconds).
SMOKE_TIMEOUT: Final = 2.0
#: The bwrap version that has ``--disable-userns``.
DISABLE_USERNS_SINCE: Final = (0, 8, 0)

_LANDLOCK_CREATE_RULESET: Final = 444
_LANDLOCK_CREATE_RULESET_VERSION: Final = 1
_PR_SET_SECCOMP: Final = 22
_SECCOMP_MODE_FILTER: Final = 2
_CAP_SETGID, _CAP_SETUID = 6, 7


class IsolationLevel(enum.StrEnum):
    STRONG = "strong"
    REDUCED = "reduced"
    WEAK = "weak"


@dataclass(frozen=True, slots=True)
class Layer:
    """One confinement layer: whether it is available, and what is in force or why it is missing."""

    name: str
    available: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.name}: {'yes' if self.available else 'no'} — {self.detail}"


@dataclass(frozen=True, slots=True)
class Probe:
    """What :func:`probe` found."""

    #: One per name of :data:`LAYERS`, in that order.
    layers: tuple[Layer, ...]
    #: The bwrap executable, if found.
    bwrap: str | None = None
    #: ``(major, minor, patch)`` of bwrap, if found.
    bwrap_version: tuple[int, ...] = ()
    #: Pass ``--disable-userns`` (``BwrapPlan.disable_userns``): bwrap ≥ 0.8, and the smoke test used it.
    bwrap_disable_userns: bool = False
    #: The bwrap modes whose smoke test passed.
    bwrap_modes: frozenset[BwrapMode] = frozenset()
    #: The mode to launch with: root mode when the uid layer is on (the boot enters the uid inside, after
    #: root's binds), else userns (then no launch gets a dedicated uid: in a user namespace a root host's
    #: process stays root on the host).
    bwrap_mode: BwrapMode | None = None
    #: Landlock ABI version (0: none).
    landlock_abi: int = 0
    #: Where per-extension cgroups go (``None``: no cgroup layer).
    cgroup: cgroups.CgroupSupport | None = None
    #: The uid layer works only inside bwrap's root mode (the interpreter is not reachable otherwise).
    uid_needs_bwrap: bool = False
    #: Layers forced off.
    forced_off: frozenset[str] = frozenset()
    #: Wall time of the probe (ms).
    elapsed_ms: float = 0.0
    #: What each step took (ms), for the curious.
    timings: dict[str, float] = field(default_factory=dict)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def on(self, name: str) -> bool:
        """Whether layer ``name`` is available."""
        return self.layer(name).available

    @property
    def level(self) -> IsolationLevel:
        return assess(self.layers)[0]

    @property
    def reasons(self) -> list[str]:
        return assess(self.layers)[1]

    @property
    def why(self) -> list[str]:
        """Why each missing layer is missing (:attr:`reasons`), then what is missing without lowering the level."""
        return [*self.reasons, *caveats(self.layers)]

    def summary(self) -> str:
        """One line for people: the level, then :attr:`why`."""
        why = self.why
        return f"{self.level}" + (f" ({'; '.join(why)})" if why else "")

    def as_dict(self) -> dict[str, object]:
        """Plain data (for ``--json``)."""
        level, reasons = assess(self.layers)
        return {
            "level": str(level),
            "reasons": reasons,
            "caveats": caveats(self.layers),
            "layers": {lay.name: {"available": lay.available, "detail": lay.detail} for lay in self.layers},
            "bwrap_mode": None if self.bwrap_mode is None else str(self.bwrap_mode),
            "landlock_abi": self.landlock_abi,
            "elapsed_ms": round(self.elapsed_ms, 2),
        }

    def report(self) -> str:
        """Human text: the level, why not stronger, each layer."""
        level, reasons = assess(self.layers)
        lines = [f"isolation: {level}" + (f" ({'; '.join(reasons)})" if reasons else "")]
        lines += [f"  {layer}" for layer in self.layers]
        lines += [f"  note: {c}" for c in caveats(self.layers)]
        lines.append(f"  (probed in {self.elapsed_ms:.1f} ms)")
        return "\n".join(lines)


# ---- levels


def assess(layers: Iterable[Layer]) -> tuple[IsolationLevel, list[str]]:
    """The isolation level these layers give, and why it is not stronger (one reason per missing layer)."""
    by_name = {layer.name: layer for layer in layers}

    def on(name: str) -> bool:
        return name in by_name and by_name[name].available

    def why(name: str) -> str:
        return f"{name}: {by_name[name].detail}" if name in by_name else f"{name}: not probed"

    missing_core = [why(n) for n in ("bwrap", "seccomp") if not on(n)]
    no_fs_layer = [] if on("landlock") or on("uid") else [why("landlock"), why("uid")]
    if not missing_core and not no_fs_layer:
        return IsolationLevel.STRONG, []
    if on("seccomp") and (on("landlock") or on("bwrap")):
        return IsolationLevel.REDUCED, missing_core + no_fs_layer
    reasons = [why("seccomp")] if not on("seccomp") else []
    if not on("landlock") and not on("bwrap"):
        reasons += [why("bwrap"), why("landlock")]
    return IsolationLevel.WEAK, reasons


def caveats(layers: Iterable[Layer]) -> list[str]:
    """What is missing without lowering the level."""
    by_name = {layer.name: layer for layer in layers}
    out = []
    if "cgroup" in by_name and not by_name["cgroup"].available:
        out.append(f"memory and process limits are best-effort (rlimits): cgroup: {by_name['cgroup'].detail}")
    if "uid" in by_name and not by_name["uid"].available:
        out.append(f"extensions share the host's uid: uid: {by_name['uid'].detail}")
    return out


# ---- the layers


_libc = ctypes.CDLL(None, use_errno=True)


def _errno_name(code: int) -> str:
    return errno.errorcode.get(code, str(code))


def _landlock() -> tuple[Layer, int]:
    syscall = _libc.syscall
    syscall.restype = ctypes.c_long
    abi = int(syscall(ctypes.c_long(_LANDLOCK_CREATE_RULESET), None, ctypes.c_long(0),
                      ctypes.c_long(_LANDLOCK_CREATE_RULESET_VERSION)))
    if abi < 0:
        code = ctypes.get_errno()
        why = {errno.ENOSYS: "the kernel has no Landlock (CONFIG_SECURITY_LANDLOCK)",
               errno.EOPNOTSUPP: "built in but not enabled at boot (add landlock to lsm=)",
               errno.EPERM: "blocked (a container's seccomp profile?)"}.get(code, os.strerror(code))
        return Layer("landlock", False, f"landlock: {_errno_name(code)} ({why})"), 0
    what = ["filesystem"]
    if abi >= 4:
        what.append("TCP bind/connect")
    if abi >= 6:
        what.append("abstract unix socket and signal scoping")
    return Layer("landlock", True, f"Landlock ABI {abi}: {', '.join(what)}"), abi


def _status_field(name: str) -> str | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _seccomp() -> Layer:
    mode = _status_field("Seccomp")
    if mode is None:
        return Layer("seccomp", False, "seccomp: the kernel has no CONFIG_SECCOMP (no Seccomp line in "
                                       "/proc/self/status)")
    if mode == "1":
        return Layer("seccomp", False, "seccomp: this process is in strict mode")
    prctl = _libc.prctl
    prctl.restype = ctypes.c_int
    result = prctl(ctypes.c_int(_PR_SET_SECCOMP), ctypes.c_ulong(_SECCOMP_MODE_FILTER), ctypes.c_ulong(0),
                   ctypes.c_ulong(0), ctypes.c_ulong(0))
    code = ctypes.get_errno() if result < 0 else 0
    if code != errno.EFAULT:  # a NULL filter is refused with EFAULT exactly when filters are supported
        return Layer("seccomp", False, f"seccomp: PR_SET_SECCOMP(FILTER) gave {_errno_name(code)} "
                                       "(no CONFIG_SECCOMP_FILTER)")
    filters = _status_field("Seccomp_filters") or "0"
    stacked = f"; the host is already under {filters} filter(s), ours stack on top" if mode == "2" else ""
    return Layer("seccomp", True, f"seccomp filters (CONFIG_SECCOMP_FILTER){stacked}")


def _find_bwrap() -> str | None:
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory.startswith("/"):
            continue  # never a relative PATH entry: a planted ./bwrap
        candidate = os.path.join(directory, "bwrap")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return BWRAP if os.access(BWRAP, os.X_OK) else None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _smoke_mounts() -> list[str]:
    """The options the builder relies on (``--perms``/``--clearenv`` need bwrap ≥ 0.5), on a minimal tree."""
    args = ["--ro-bind", "/usr", "/usr"]
    layout = detect_layout()
    for link, target in layout.symlinks:
        args += ["--symlink", target, link]
    for directory in layout.directories:
        args += ["--ro-bind", directory, directory]
    return [*args, "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp", "--perms", "0755",
            "--dir", "/tmp/kithost-probe", "--remount-ro", "/", "--clearenv", "--setenv", "PATH", "/usr/bin",
            "--chdir", "/tmp/kithost-probe"]


def _true() -> str:
    return "/usr/bin/true" if os.path.exists("/usr/bin/true") else "/bin/true"


def _capabilities() -> int:
    try:
        return int(_status_field("CapEff") or "0", 16)
    except ValueError:
        return 0


@dataclass(slots=True)
class _BwrapFindings:
    path: str | None = None
    version: tuple[int, ...] = ()
    version_text: str = ""
    modes: set[BwrapMode] = field(default_factory=set)
    errors: dict[BwrapMode, str] = field(default_factory=dict)


def _version(path: str, found: _BwrapFindings) -> None:
    try:
        done = subprocess.run([path, "--version"], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=SMOKE_TIMEOUT, close_fds=True)
    except (OSError, subprocess.TimeoutExpired):
        return
    found.version_text = _first_line(done.stdout.decode(errors="replace"))
    numbers = found.version_text.rsplit(" ", 1)[-1].split(".")
    found.version = tuple(int(n) for n in numbers if n.isdigit())


def _run_smoke(path: str, want_root: bool) -> _BwrapFindings:
    found = _BwrapFindings(path)
    _version(path, found)
    userns = [path, "--unshare-all", "--unshare-user"]
    if found.version >= DISABLE_USERNS_SINCE:
        userns.append("--disable-userns")
    tests: dict[BwrapMode, list[str]] = {
        BwrapMode.USERNS: [*userns, "--die-with-parent", "--new-session", "--cap-drop", "ALL", *_smoke_mounts(),
                           "--", _true()],
    }
    if want_root:
        drop = [*(a for cap in USER_SWITCH_CAPS for a in ("--cap-add", cap)), *_smoke_mounts(), "--"]
        tests[BwrapMode.ROOT] = [path, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                                 "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                                 *drop, _true()]
    running: dict[BwrapMode, subprocess.Popen[bytes]] = {}
    try:
        for mode, argv in tests.items():
            running[mode] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE, close_fds=True, cwd="/")
        deadline = time.monotonic() + SMOKE_TIMEOUT
        for mode, proc in running.items():
            try:
                _, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                found.errors[mode] = f"bwrap smoke test timed out after {SMOKE_TIMEOUT:g} s"
                continue
            if proc.returncode == 0:
                found.modes.add(mode)
            else:
                found.errors[mode] = (_first_line(err.decode(errors="replace"))
                                      or f"bwrap exited with status {proc.returncode}")
    except OSError as exc:
        found.errors[BwrapMode.USERNS] = f"cannot run {path}: {exc.strerror}"
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return found


def _bwrap_layer(found: _BwrapFindings, want_root: bool) -> Layer:
    if found.path is None:
        return Layer("bwrap", False, "bwrap not found on PATH or in /usr/bin (install bubblewrap)")
    name = found.version_text or "bubblewrap"
    if not found.modes:
        detail = found.errors.get(BwrapMode.USERNS, "")
        if want_root and BwrapMode.ROOT in found.errors:
            detail += f"; as root without a user namespace: {found.errors[BwrapMode.ROOT]}"
        return Layer("bwrap", False, detail)
    parts = []
    if BwrapMode.USERNS in found.modes:
        parts.append("user namespaces")
    else:
        parts.append(f"no user namespaces ({found.errors.get(BwrapMode.USERNS, '?')})")
    if BwrapMode.ROOT in found.modes:
        parts.append("root mode (no user namespace, the dedicated uid entered inside)")
    elif want_root:
        parts.append(f"root mode failed ({found.errors.get(BwrapMode.ROOT, '?')})")
    return Layer("bwrap", True, f"{name} ({found.path}): {'; '.join(parts)}")


def _uid_layer(found: _BwrapFindings, bwrap_off: bool) -> tuple[Layer, bool]:
    if os.geteuid() != 0:
        return Layer("uid", False, "not root: no dedicated uid"), False
    caps = _capabilities()
    if not caps & (1 << _CAP_SETUID) or not caps & (1 << _CAP_SETGID):
        return Layer("uid", False, "root without CAP_SETUID/CAP_SETGID: no dedicated uid"), False
    taken = uids.collisions()
    if taken:
        return Layer("uid", False, f"id range {uids.ID_BASE}+ is in use: {', '.join(taken[:3])}"), False
    runtime = runtime_paths()
    trees = runtime.paths()
    interpreter = os.path.realpath(sys.executable)
    ids = f"uid/gid {uids.ID_BASE}+slot"
    direct = uids.runtime_blockers(trees, interpreter, bound=False)
    if not direct:
        return Layer("uid", True, f"{ids}; interpreter, venv and SDK readable by another uid"), False
    via_binds = uids.runtime_blockers(trees, interpreter, bound=True)
    if via_binds:
        return Layer("uid", False, f"another uid cannot run the interpreter even through bwrap's binds: "
                                   f"{'; '.join(via_binds[:3])}"), False
    if BwrapMode.ROOT in found.modes:
        return Layer("uid", True, f"{ids}; only inside bwrap root mode (without it another uid cannot reach "
                                  f"the interpreter: {direct[0]})"), True
    if bwrap_off:
        why = f"bwrap, whose root-mode binds would make it reachable, is {FORCED_OFF}"
    elif found.path is None:
        why = "bwrap, whose root-mode binds would make it reachable, is not installed"
    else:
        error = found.errors.get(BwrapMode.ROOT, "not tried")
        why = f"bwrap root mode, whose binds would make it reachable, failed: {error}"
    return Layer("uid", False, f"another uid cannot reach the interpreter ({direct[0]}) and {why}"), False


def _probe(force_off: frozenset[str]) -> Probe:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    layers: dict[str, Layer] = {}

    def timed(name: str, t0: float) -> None:
        timings[name] = round((time.perf_counter() - t0) * 1000, 2)

    t0 = time.perf_counter()
    abi = 0
    if "landlock" not in force_off:
        layers["landlock"], abi = _landlock()
    if "seccomp" not in force_off:
        layers["seccomp"] = _seccomp()
    support = None
    if "cgroup" not in force_off:
        try:
            support, why = cgroups.detect()
        except OSError as exc:
            support, why = None, f"cannot read /proc/self/mountinfo or /proc/self/cgroup: {exc.strerror}"
        detail = support.describe() + (f"; not v2: {why}" if why else "") if support else why
        layers["cgroup"] = Layer("cgroup", support is not None, detail)
    timed("files+syscalls", t0)

    t0 = time.perf_counter()
    root = os.geteuid() == 0
    found = _BwrapFindings()
    if "bwrap" not in force_off:
        path = _find_bwrap()
        found = _run_smoke(path, root) if path else _BwrapFindings()
        layers["bwrap"] = _bwrap_layer(found, root)
    timed("bwrap", t0)

    t0 = time.perf_counter()
    uid_needs_bwrap = False
    if "uid" not in force_off:
        layers["uid"], uid_needs_bwrap = _uid_layer(found, "bwrap" in force_off)
    timed("uid", t0)

    for name in force_off:
        layers[name] = Layer(name, False, FORCED_OFF)
    ordered = tuple(layers[n] for n in LAYERS if n in layers) + tuple(
        layers[n] for n in sorted(layers) if n not in LAYERS)

    mode = None
    if "bwrap" in layers and layers["bwrap"].available:
        uid_on = "uid" in layers and layers["uid"].available
        if BwrapMode.ROOT in found.modes and (uid_on or BwrapMode.USERNS not in found.modes):
            mode = BwrapMode.ROOT
        else:
            mode = BwrapMode.USERNS
    return Probe(
        layers=ordered, bwrap=found.path, bwrap_version=found.version, bwrap_modes=frozenset(found.modes),
        bwrap_disable_userns=found.version >= DISABLE_USERNS_SINCE and BwrapMode.USERNS in found.modes,
        bwrap_mode=mode, landlock_abi=abi, cgroup=support, uid_needs_bwrap=uid_needs_bwrap,
        forced_off=force_off, elapsed_ms=(time.perf_counter() - started) * 1000, timings=timings,
    )


_cache: dict[frozenset[str], Probe] = {}
_lock = threading.Lock()


def probe(force_off: Iterable[str] = frozenset(), fresh: bool = False) -> Probe:
    """Probe the machine (cached per ``force_off``; ``fresh`` re-measures). Thread-safe.

    A failing layer is reported in its :class:`Layer`, never raised; only an
    unknown name in ``force_off`` raises ``ValueError``.
    """
    key = frozenset(force_off)
    unknown = key - set(LAYERS)
    if unknown:
        raise ValueError(f"unknown sandbox layer(s) {sorted(unknown)}; known: {', '.join(LAYERS)}")
    with _lock:
        if not fresh and key in _cache:
            return _cache[key]
    result = _probe(key)
    with _lock:
        _cache[key] = result
    return result
