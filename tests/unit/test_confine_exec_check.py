"""Confiner's exec check (issue 8): a Node extension without ``processes`` where Landlock is not in force.

The boot of a Node or command extension execs its runtime, so seccomp must allow ``execve`` for it; only
Landlock's execute rule keeps it from starting other programs. Without Landlock such a launch is refused
unless ``processes`` is granted or ``allow_weak`` is set, and then it is shown as weak, with why. Pure: a
synthetic probe, launches prepared but never started.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from host.config import Access, HostConfig, Sandbox, Supervision
from host.exthost.launch import prepare_launch
from host.exthost.manifest import Manifest, load_manifest
from host.exthost.sandbox.bwrap import BwrapMode
from host.exthost.sandbox.confine import Confined, Confiner, SandboxRefused, exec_refused
from host.exthost.sandbox.probe import LAYERS, IsolationLevel, Layer, Probe

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="no node on PATH (a node manifest needs it)")

LANDLOCK_OFF = "landlock: ENOSYS (the kernel has no Landlock (CONFIG_SECURITY_LANDLOCK))"


def found(landlock: bool) -> Probe:
    """bwrap (userns) + seccomp, Landlock as asked; no cgroup, no uid: nothing here touches the machine."""
    on = {"bwrap": True, "landlock": landlock, "seccomp": True, "cgroup": False, "uid": False}
    details = {"landlock": "Landlock ABI 7" if landlock else LANDLOCK_OFF}
    layers = tuple(Layer(n, on[n], details.get(n, f"{n} {'in force' if on[n] else 'off'}")) for n in LAYERS)
    return Probe(layers=layers, bwrap="/usr/bin/bwrap", bwrap_modes=frozenset({BwrapMode.USERNS}),
                 bwrap_mode=BwrapMode.USERNS, landlock_abi=7 if landlock else 0)


def manifest(tmp_path: Path, runtime: str) -> Manifest:
    folder = tmp_path / runtime
    folder.mkdir()
    main = "index.mjs" if runtime == "node" else "main.py"
    (folder / main).write_text("")
    (folder / "extension.toml").write_text(f'name = "x-{runtime}"\nversion = "0.1.0"\nruntime = "{runtime}"\n'
                                           f'main = "{main}"\n')
    return load_manifest(folder / "extension.toml")


def confine(tmp_path: Path, runtime: str, landlock: bool, allow_weak: bool = False,
            processes: bool = False) -> Confined:
    confiner = Confiner(HostConfig(sandbox=Sandbox(allow_weak=allow_weak)))
    confiner._probe = found(landlock)  # the probe's verdict, without probing this machine
    m = manifest(tmp_path, runtime)
    host_dir = tmp_path / "host"
    host_dir.mkdir(exist_ok=True)
    launch = prepare_launch(m, host_dir, 0)
    return confiner.confine(launch, m, Access(processes=processes), 0, replace(Supervision(), memory_mb=0))


def seccomp(confined: Confined) -> str:
    [layer] = [layer for layer in confined.layers if layer.startswith("seccomp")]
    return layer


def test_node_without_landlock_and_without_processes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SandboxRefused) as caught:
        confine(tmp_path, "node", landlock=False)
    message = str(caught.value)
    assert "node extension x-node could start other programs" in message, message
    assert f"({LANDLOCK_OFF})" in message, message
    assert '[access."x-node"] processes = true' in message and "[sandbox] allow_weak = true" in message, message


def test_with_allow_weak_it_starts_shown_as_weak_with_why(tmp_path: Path) -> None:
    confined = confine(tmp_path, "node", landlock=False, allow_weak=True)
    assert confined.level is IsolationLevel.WEAK  # the probe alone says reduced: the launch claims less
    assert seccomp(confined) == "seccomp (no inet, exec allowed: node, any program)"
    [note] = confined.notes
    assert note.startswith("node extension x-node could start other programs") and LANDLOCK_OFF in note


def test_granted_processes_it_starts_at_the_probes_level(tmp_path: Path) -> None:
    confined = confine(tmp_path, "node", landlock=False, processes=True)
    assert confined.level is IsolationLevel.REDUCED and confined.notes == ()
    assert seccomp(confined) == "seccomp (no inet, exec allowed: processes granted)"


def test_with_landlock_node_may_exec_only_itself(tmp_path: Path) -> None:
    confined = confine(tmp_path, "node", landlock=True)
    assert confined.level is IsolationLevel.STRONG and confined.notes == ()
    assert seccomp(confined) == "seccomp (no inet, exec allowed: node)"


def test_python_is_never_refused_seccomp_denies_it_exec(tmp_path: Path) -> None:
    confined = confine(tmp_path, "python", landlock=False)
    assert confined.level is IsolationLevel.REDUCED and confined.notes == ()
    assert seccomp(confined) == "seccomp (no inet, no exec)"


def test_the_check_applies_exactly_to_other_runtimes_without_processes_and_without_landlock(tmp_path: Path) -> None:
    node = manifest(tmp_path, "node")
    assert exec_refused(node, Access(), found(landlock=False))
    assert not exec_refused(node, Access(processes=True), found(landlock=False))
    assert not exec_refused(node, Access(), found(landlock=True))
    (tmp_path / "py").mkdir()
    assert not exec_refused(manifest(tmp_path / "py", "python"), Access(), found(landlock=False))
