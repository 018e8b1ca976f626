"""Wrapping one launch in every layer the machine allows: the only place the layers are combined.

:class:`Confiner` (one per host) holds the probe's verdict (:mod:`.probe`,
taken once, with the operator's ``[sandbox] disable`` applied) and turns a
prepared :class:`~host.exthost.launch.Launch` plus what the extension was
granted (:class:`~host.exthost.trust.Grant`) into a :class:`Confined` launch:

1. **level check** — at ``weak`` isolation nothing starts unless the operator
   said ``[sandbox] allow_weak = true`` (:class:`SandboxRefused` names the
   missing layers and why each is missing). **Exec check**: a Node or
   command extension must be allowed ``execve`` by seccomp (the boot execs
   its runtime), so "no other programs" (``processes = false``) rests on
   Landlock's execute rule alone. Without Landlock in force such a launch
   could start any program: it is refused unless ``processes`` is granted or
   ``allow_weak`` is set, and with ``allow_weak`` it is shown as ``weak``,
   with a note saying why (:attr:`Confined.notes`);
2. **dedicated uid** (root host, uid layer on) — a uid/gid leased for the
   extension's slot; its private directory is shared with that gid (sockets
   0660, secret 0640, work dir owned by the uid);
3. **cgroup** (cgroup layer on) — memory (``memory_mb``) and pids limits over
   the whole tree; the argv starts with the join step, or — ``defer_join``, a
   parked Python launch — the host moves the tree in while the interpreter
   starts (:meth:`Confined.adopt`, before it hands over the secret);
4. **bubblewrap** (bwrap layer on) — allow-list filesystem (interpreter,
   venv, the SDK, the extension's directory read-only, granted paths), the
   socket directory, the work directory read-write, private ``/tmp``, no
   network unless granted, own pid namespace, dies with the host; in root mode
   the boot enters the dedicated uid (its plan's ``user``);
5. **the boot** — ``ext_sdk.sandbox.boot`` (``python -I -S``, :func:`..launch.python_command`) with a
   :class:`~ext_sdk.sandbox.plan.BootPlan` in ``KITHOST_SANDBOX``: rlimits
   (file size, core, CPU time, process count with a dedicated uid), the
   dedicated uid entered, capabilities dropped, Landlock (filesystem allow-list, TCP ports of the
   granted network targets, abstract-socket and signal scopes), seccomp (no
   network sockets unless granted, no exec unless granted or needed to start
   the runtime, no ptrace/io_uring/namespaces/mount/keyrings); then it runs the
   Python extension in-process, or execs ``node``/the command.

Layers that are off are simply not applied; :attr:`Confined.layers` lists
what is in force for this launch, in words, for ``ext status``. Every layer
the probe reports as available is *required* in the boot: if the child cannot
put it in force it exits with status 5 (not retried) instead of running with
less than the operator was shown.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import psutil

from ext_sdk.sandbox.plan import ENV_PLAN, BootPlan, LandlockRules, SeccompPolicy

from ...config import Access, HostConfig, SandboxLayer, Supervision
from ..launch import Launch, LaunchSpec, python_command
from ..manifest import Manifest
from ..process import descendant_pids, descendants
from . import cgroups, uids
from .bwrap import BwrapMode, BwrapPlan, bwrap_argv, detect_layout, runtime_paths
from .probe import IsolationLevel, Probe, probe

__all__ = ["Confined", "Confiner", "SandboxRefused", "exec_refused", "exec_unguarded"]

log = logging.getLogger("kithost.sandbox")

#: Where the dynamic loader lives (Landlock's execute right is needed on it to exec a program).
_LOADERS = ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1", "/usr/lib64/ld-linux-x86-64.so.2",
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "/usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1")
#: Read-only system paths every runtime needs (inside bubblewrap these are all there is).
_SYSTEM_READ = ("/usr", "/etc/ld.so.cache", "/etc/ssl", "/etc/ca-certificates", "/etc/alternatives",
                "/etc/localtime", "/dev/urandom", "/dev/random")


#: Confiners (hosts) made in this process so far.
_HOSTS = itertools.count()


class SandboxRefused(Exception):
    """The extension may not start at this isolation level."""


@dataclass
class Confined:
    """One confined launch: what to run, what is in force, and what to undo afterwards."""

    spec: LaunchSpec
    #: The layers in force for this launch, in words (for ``ext status``).
    layers: tuple[str, ...]
    level: IsolationLevel
    cgroup: cgroups.ExtensionCgroup | None = None
    lease: uids.IdLease | None = None
    #: What this launch's layers leave open beyond the probe's reasons, in words (for ``ext status``/``check``).
    notes: tuple[str, ...] = ()
    #: The cgroup's hard memory limit (bytes), when the kernel bounds this launch's memory.
    memory_limit_bytes: int | None = None
    #: The process does not join its cgroup by itself: the host moves its tree in (:meth:`adopt`) before it
    #: hands over the secret, which the child waits for before any extension code runs.
    join_deferred: bool = False
    _released: bool = field(default=False, repr=False)

    def adopt(self, root: int) -> list[int]:
        """A deferred join: move every process of the launch's tree (``root`` and its descendants) that is not
        in its cgroup yet, and check that each is; returns the tree. Nothing to do without a deferred join.
        Raises ``OSError``.

        Call it once the child waits at its secret (the final pass); :meth:`adopting` does the same while the
        child starts, so that this pass usually has nothing left to move.
        """
        if self.cgroup is None or not self.join_deferred:
            return []
        group = self.cgroup
        if not os.path.exists(f"/proc/{root}"):
            raise ProcessLookupError(f"process {root} exited before it joined its cgroup")
        try:
            tree = [root, *descendant_pids(root)]
        except OSError:  # no /proc children files here: psutil's slower walk
            tree = [root, *(p.pid for p in descendants(psutil.Process(root)))]
        inside = group.members()  # read once, not once per process
        if not inside.issuperset(tree):
            group.adopt(pid for pid in tree if pid not in inside)
            inside = group.members()
        left_out = [pid for pid in tree if pid not in inside and psutil.pid_exists(pid)]
        if left_out:
            raise cgroups.CgroupError(0, f"processes {left_out} are not in cgroup {group.name}")
        return tree

    def adopting(self, root: int) -> Callable[[], None]:
        """Start moving ``root``'s tree into the cgroup beside the child's start (a thread); returns the call
        that stops it and does the final :meth:`adopt` pass.

        The first move waits for an RCU grace period while the child goes on starting; processes it forks
        meanwhile are moved right after (then the kernel's migration path is still fast). The looks start 2 ms
        apart and back off to 25 ms: when many extensions start at once (``load_many``), each child takes
        longer to fork its tree, and a steady 2 ms poll per launch cost the host more CPU than the launch
        itself; the final :meth:`adopt` pass before the secret catches whatever a later look would have.
        """
        if self.cgroup is None or not self.join_deferred:
            return lambda: None
        stop = threading.Event()

        def early() -> None:
            deadline = time.monotonic() + 5.0
            last: frozenset[int] = frozenset()
            pause = 0.002
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    tree = frozenset(self.adopt(root))
                except OSError:
                    return  # the final pass reports it
                # Every process of the tree is inside (adopt checked it) and none was added since the last
                # look: a process forked from now on is born in its parent's cgroup, so the tree is done.
                if tree == last:
                    return
                last = tree
                stop.wait(pause)
                pause = min(pause * 1.5, 0.025)

        mover = threading.Thread(target=early, name=f"kithost-cgroup-{root}", daemon=True)
        mover.start()

        def finish() -> None:
            stop.set()
            mover.join(10)
            self.adopt(root)

        return finish

    def cgroup_memory(self) -> int | None:
        """The cgroup's current memory use (the whole tree, counted once), or ``None`` if it cannot be read."""
        if self.cgroup is None:
            return None
        try:
            return self.cgroup.stats().memory_bytes
        except OSError:
            return None

    def exit_reason(self) -> str | None:
        """Why the cgroup ended the process (memory or pids limit), if it did."""
        if self.cgroup is None:
            return None
        try:
            return self.cgroup.stats().verdict()
        except OSError:
            return None

    def release(self) -> None:
        """Kill what is left in the cgroup, remove it, give the uid back (idempotent)."""
        if self._released:
            return
        self._released = True
        if self.cgroup is not None:
            try:
                self.cgroup.kill()
                self.cgroup.remove()
            except OSError as exc:
                log.warning("could not remove cgroup %s: %s", self.cgroup, exc)
        if self.lease is not None:
            self.lease.release()


class Confiner:
    """Confinement for every launch of one host (see the module doc)."""

    def __init__(self, config: HostConfig) -> None:
        self._config = config
        self._probe: Probe | None = None
        #: Which host of this process it serves (0 = the first): part of its cgroup names.
        self._host = next(_HOSTS)

    @property
    def probe(self) -> Probe:
        """What this machine allows (probed on first use, then cached)."""
        if self._probe is None:
            self._probe = probe(frozenset(str(layer) for layer in self._config.sandbox.disable))
            if self._probe.level is IsolationLevel.WEAK:
                log.warning("sandbox: isolation is weak here (%s)", "; ".join(self._probe.reasons))
        return self._probe

    def sweep(self) -> None:
        """Remove cgroups left by hosts that died without cleaning up (their pid is gone)."""
        support, _ = cgroups.detect()
        if support is None:
            return
        for name in cgroups.sweep_stale(support, os.getpid()):
            log.info("sandbox: removed the cgroup %s of a host that is gone", name)

    def confine(self, launch: Launch, manifest: Manifest, access: Access, slot: int,
                supervision: Supervision, defer_join: bool = False) -> Confined:
        """Wrap ``launch`` (rules in the module doc); raises :class:`SandboxRefused`.

        ``defer_join``: for a parked launch of a Python extension (its SDK reads the secret pipe before the
        extension's code), the cgroup is joined by the host while the interpreter starts
        (:meth:`Confined.adopt`), not by an argv prefix before it: a migration costs a grace period.
        """
        found = self.probe
        level = found.level
        if level is IsolationLevel.WEAK and not self._config.sandbox.allow_weak:
            raise SandboxRefused(
                "isolation here is weak (" + "; ".join(found.reasons) + "); extensions do not start unless "
                "the operator allows it ([sandbox] allow_weak = true)")
        layers: list[str] = []
        on = {layer: found.on(str(layer)) for layer in SandboxLayer}
        notes: list[str] = []
        if exec_refused(manifest, access, found):
            open_exec = exec_unguarded(manifest, found)
            if not self._config.sandbox.allow_weak:
                raise SandboxRefused(open_exec + f"; it does not start unless it is granted processes "
                                     f"([access.\"{manifest.name}\"] processes = true) or the operator allows "
                                     "weak isolation ([sandbox] allow_weak = true)")
            notes.append(open_exec)
            level = IsolationLevel.WEAK
        use_bwrap = on[SandboxLayer.BWRAP] and found.bwrap_mode is not None
        lease = None
        # The boot enters the uid: as root in bwrap's root mode, or as root without bwrap where another uid can
        # reach the interpreter. (In userns mode the process would stay root on the host: no dedicated uid.)
        if on[SandboxLayer.UID] and (found.bwrap_mode is BwrapMode.ROOT if use_bwrap else not found.uid_needs_bwrap):
            folder = str(manifest.directory)
            blocked = uids.blockers(folder, bound=[folder] if use_bwrap else [], need=0o5)
            if blocked:  # else the process dies with a bare "Permission denied"
                raise SandboxRefused(f"the extension runs under its own uid and cannot read its folder: {blocked[0]} "
                                     f"(make it readable by others: chmod o+rx {folder})")
            lease = uids.lease_id(slot)
            uids.share_private_dir(launch.endpoints.directory, lease.uid, lease.gid, launch.endpoints.work_dir)
            layers.append(f"uid {lease.uid}")
        group = None
        memory = None
        try:
            if on[SandboxLayer.CGROUP] and found.cgroup is not None:
                pids = supervision.max_threads + supervision.max_children + 16 if supervision.max_threads else None
                memory = supervision.memory_mb * 1024 * 1024 if supervision.memory_mb else None
                group = cgroups.ExtensionCgroup.create(found.cgroup, cgroups.cgroup_name(os.getpid(), slot,
                                                                                         manifest.name, self._host),
                                                       memory, pids)
                layers.append(f"cgroup {found.cgroup.version} (memory {supervision.memory_mb} MiB, pids {pids})")
            plan = self._boot_plan(launch, manifest, access, supervision, lease, on)
            payload = python_command("ext_sdk.sandbox.boot")
            env = {**launch.spec.env, **plan.env()}
            argv: tuple[str, ...] = payload
            if use_bwrap:
                assert found.bwrap_mode is not None
                bplan = BwrapPlan(mode=found.bwrap_mode, socket_dir=str(launch.endpoints.directory),
                                  work_dir=str(launch.endpoints.work_dir), env=env, runtime=runtime_paths(),
                                  extension_dir=str(manifest.directory),
                                  read_only=tuple(str(p) for p in access.read if p.exists()),
                                  read_write=tuple(str(p) for p in access.write if p.exists()),
                                  network=bool(access.network),
                                  uid=lease.uid if lease is not None else None,
                                  gid=lease.gid if lease is not None else None,
                                  layout=detect_layout(), chdir=str(launch.spec.cwd),
                                  disable_userns=found.bwrap_disable_userns,
                                  bwrap=found.bwrap or "/usr/bin/bwrap")
                argv = (*bwrap_argv(bplan), *payload)
                layers.insert(0, f"bwrap ({found.bwrap_mode} mode{', network' if access.network else ', no network'})")
            deferred = defer_join and group is not None and launch.parked and manifest.runtime == "python"
            if group is not None and not deferred:
                argv = (*group.join_prefix(), *argv)
            if plan.landlock is not None:
                layers.append(f"landlock abi {found.landlock_abi}")
            if plan.seccomp is not None:
                inet = "inet" if plan.seccomp.allow_inet else "no inet"
                if not plan.seccomp.allow_exec:
                    exe = "no exec"
                elif access.processes:
                    exe = "exec allowed: processes granted"
                else:  # the boot must exec the runtime; only Landlock's execute rule keeps it to that
                    runtime = os.path.basename(launch.spec.argv[0]) if launch.spec.argv else manifest.runtime
                    exe = f"exec allowed: {runtime}" + ("" if plan.landlock is not None else ", any program")
                layers.append(f"seccomp ({inet}, {exe})")
            layers.append("rlimits")
        except BaseException:
            if group is not None:
                group.remove()
            if lease is not None:
                lease.release()
            raise
        wrappers = frozenset({"bwrap"}) if use_bwrap else frozenset()
        return Confined(replace(launch.spec, argv=argv, env=env, wrappers=wrappers), tuple(layers), level, group,
                        lease, tuple(notes), memory if group is not None else None, deferred)

    def _boot_plan(self, launch: Launch, manifest: Manifest, access: Access, supervision: Supervision,
                   lease: uids.IdLease | None, on: dict[SandboxLayer, bool]) -> BootPlan:
        spec = launch.spec
        python_runtime = manifest.runtime == "python"
        exec_argv = None if python_runtime else list(spec.argv)
        run_path = str(manifest.main) if python_runtime else None
        rlimits: dict[str, tuple[int, int]] = {"CORE": (0, 0)}
        if self._config.sandbox.max_file_mb:
            size = self._config.sandbox.max_file_mb * 1024 * 1024
            rlimits["FSIZE"] = (size, size)
        if supervision.cpu_seconds:
            seconds = int(supervision.cpu_seconds)
            rlimits["CPU"] = (seconds, seconds + 2)  # SIGXCPU first, then SIGKILL
        if supervision.max_fds:
            rlimits["NOFILE"] = (supervision.max_fds, supervision.max_fds)
        if lease is not None and supervision.max_threads:  # NPROC counts every task of the uid (root is exempt)
            tasks = supervision.max_threads + supervision.max_children + 16
            rlimits["NPROC"] = (tasks, tasks)
        landlock = None
        if on[SandboxLayer.LANDLOCK]:
            runtime = runtime_paths()
            # The private directory: the launch secret (read once at start) and the sockets (connect() on a
            # named socket is not a Landlock right up to ABI 7; reading the secret is).
            read = [*_SYSTEM_READ, *runtime.paths(), str(manifest.directory), str(launch.endpoints.directory),
                    *(str(p) for p in access.read)]
            execute: list[str] = []
            if access.processes:  # programs it may start: the system's, the runtime's and its own
                execute = ["/usr", "/bin", "/sbin", *runtime.paths(), str(manifest.directory),
                           *(p for p in _LOADERS if os.path.exists(p))]
            elif not python_runtime:
                program = shutil.which(spec.argv[0]) or spec.argv[0]
                execute = [program, os.path.realpath(program), *(p for p in _LOADERS if os.path.exists(p))]
                if manifest.runtime == "command":
                    execute.append(str(manifest.directory))
            ports = sorted({int(target.rsplit(":", 1)[1]) for target in access.network})
            landlock = LandlockRules(read=[p for p in read if os.path.exists(p)],
                                     write=[str(launch.endpoints.work_dir), "/dev/null",
                                            *(str(p) for p in access.write if p.exists())],
                                     execute=execute, tcp_connect=ports, tcp_bind=[], required=True)
        seccomp = None
        if on[SandboxLayer.SECCOMP]:
            seccomp = SeccompPolicy(allow_inet=bool(access.network),
                                    allow_exec=access.processes or not python_runtime, required=True)
        return BootPlan(rlimits=rlimits, user=(lease.uid, lease.gid) if lease is not None else None,
                        landlock=landlock, seccomp=seccomp, exec_argv=exec_argv, run_path=run_path)


def exec_unguarded(manifest: Manifest, found: Probe) -> str:
    """Why a non-Python extension without ``processes`` could start any program under ``found`` (no Landlock)."""
    detail = found.layer(str(SandboxLayer.LANDLOCK)).detail
    why = detail if detail.startswith("landlock") else f"landlock: {detail}"
    return (f"{manifest.runtime} extension {manifest.name} could start other programs: seccomp must allow exec "
            f"to start its runtime and Landlock, whose execute rule would stop the rest, is not in force ({why})")


def exec_refused(manifest: Manifest, access: Access, found: Probe) -> bool:
    """Whether the exec check applies: a non-Python runtime, ``processes`` not granted, Landlock off."""
    return manifest.runtime != "python" and not access.processes and not found.on(str(SandboxLayer.LANDLOCK))


def plan_of(spec: LaunchSpec) -> BootPlan | None:
    """The boot plan inside a confined launch's environment (tests and diagnostics)."""
    text = spec.env.get(ENV_PLAN)
    return BootPlan.decode(text) if text is not None else None
