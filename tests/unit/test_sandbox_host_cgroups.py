"""cgroup detection, naming, stats parsing and stale sweeping on synthetic trees (no process is started)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from host.exthost.sandbox.cgroups import (
    EXIT_JOIN,
    CgroupSupport,
    CgroupVersion,
    ExtensionCgroup,
    cgroup_name,
    detect,
    host_pid_of,
    sweep_stale,
)

#: A pid no process can have (above the largest pid_max Linux allows).
DEAD_PID = 4_194_305


def test_names_are_unique_per_host_and_slot_and_parse_back() -> None:
    name = cgroup_name(1234, 7, "hello")
    assert name == "kithost-1234-x7-hello"
    assert host_pid_of(name) == 1234
    assert cgroup_name(1234, 8, "hello") != name and cgroup_name(1235, 7, "hello") != name
    assert cgroup_name(1, 0, "../../etc passwd") == "kithost-1-x0-_.._etc_passwd"
    assert "/" not in cgroup_name(1, 0, "a/b") and cgroup_name(1, 0, "..") == "kithost-1-x0-_"
    assert host_pid_of("sbx-test") is None and host_pid_of("kithost-abc-x1") is None


def test_bad_names_are_refused(tmp_path: Path) -> None:
    support = CgroupSupport(CgroupVersion.V2, tmp_path, tmp_path)
    for bad in ("", ".", "..", "a/b"):
        with pytest.raises(ValueError):
            ExtensionCgroup(support, bad)


def mountinfo(**points: str) -> str:
    lines = ["22 1 0:21 / / rw - ext4 /dev/vda rw"]
    for i, (kind, point) in enumerate(points.items()):
        if kind == "unified":
            lines.append(f"{40 + i} 31 0:{38 + i} / {point} rw,relatime - cgroup2 cgroup2 rw")
        else:
            lines.append(f"{40 + i} 31 0:{38 + i} / {point} rw,relatime - cgroup cgroup rw,{kind}")
    return "\n".join(lines) + "\n"


def test_hybrid_v1_like_this_vm(tmp_path: Path) -> None:
    memory, pids, unified = tmp_path / "memory", tmp_path / "pids", tmp_path / "unified"
    (memory / "process_api" / "abc").mkdir(parents=True)
    pids.mkdir()
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("hugetlb\n")
    info = mountinfo(memory=str(memory), pids=str(pids), unified=str(unified))
    own = "8:pids:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/\n"
    support, why = detect(info, own)
    assert support == CgroupSupport(CgroupVersion.V1, memory / "process_api" / "abc", pids)
    assert why == "cgroup v2 has no memory and no pids controller (cgroup.controllers: hugetlb)"
    assert support.bases == (memory / "process_api" / "abc", pids)
    assert support.describe().startswith("cgroup v1 (memory: ")


def test_v2_at_the_root_enables_controllers_on_first_use(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids io\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    support, why = detect(mountinfo(unified=str(tmp_path)), "0::/\n")
    assert support == CgroupSupport(CgroupVersion.V2, tmp_path, tmp_path, enable=True) and why == ""
    assert support.bases == (tmp_path,)


def test_v2_host_in_a_leaf_uses_its_parent(tmp_path: Path) -> None:
    leaf = tmp_path / "user.slice" / "session-1.scope"
    leaf.mkdir(parents=True)
    (leaf / "cgroup.controllers").write_text("memory pids\n")
    (leaf / "cgroup.subtree_control").write_text("")
    (leaf / "cgroup.type").write_text("domain\n")
    (leaf.parent / "cgroup.subtree_control").write_text("memory pids\n")
    support, _ = detect(mountinfo(unified=str(tmp_path)), "0::/user.slice/session-1.scope\n")
    assert support == CgroupSupport(CgroupVersion.V2, leaf.parent, leaf.parent)


def test_v2_mount_root_inside_a_container(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory pids\n")
    (tmp_path / "cgroup.type").write_text("domain\n")
    info = f"40 31 0:38 /docker/abc {tmp_path} rw - cgroup2 cgroup2 rw\n"
    support, _ = detect(info, "0::/docker/abc\n")
    assert support == CgroupSupport(CgroupVersion.V2, tmp_path, tmp_path)


def test_v2_container_namespace_top_holding_the_host_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    (tmp_path / "cgroup.type").write_text("domain\n")  # not the true root: no internal processes
    support, why = detect(f"40 31 0:38 / {tmp_path} rw - cgroup2 cgroup2 rw\n", "0::/\n")
    assert support is None
    assert why.startswith(f"cgroup v2: the host's cgroup {tmp_path} holds processes, so it cannot enable "
                          "controllers for child cgroups, and it is the top of this cgroup namespace")


def test_v2_parent_that_does_not_delegate(tmp_path: Path) -> None:
    leaf = tmp_path / "system.slice" / "x.service"
    leaf.mkdir(parents=True)
    (leaf / "cgroup.controllers").write_text("memory pids\n")
    (leaf / "cgroup.type").write_text("domain\n")
    (leaf.parent / "cgroup.subtree_control").write_text("memory\n")
    support, why = detect(mountinfo(unified=str(tmp_path)), "0::/system.slice/x.service\n")
    assert support is None and f"its parent {leaf.parent} does not delegate memory and pids" in why


def test_nothing_usable_says_why_for_both_versions(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu\n")
    info = mountinfo(unified=str(tmp_path), memory=str(tmp_path / "nope"), pids=str(tmp_path / "nope2"))
    support, why = detect(info, "0::/\n4:memory:/\n8:pids:/\n")
    assert support is None
    assert why.startswith("cgroup v2 has no memory and no pids controller (cgroup.controllers: cpu); "
                          f"cgroup v1 memory hierarchy {tmp_path / 'nope'} is not writable")
    assert detect("", "")[1] == "cgroup v2 is not mounted; cgroup v1 has no memory hierarchy"


def test_mountinfo_escapes_are_decoded(tmp_path: Path) -> None:
    spaced = tmp_path / "cg root"
    spaced.mkdir()
    (spaced / "cgroup.controllers").write_text("memory pids\n")
    (spaced / "cgroup.subtree_control").write_text("memory pids\n")
    escaped = str(spaced).replace(" ", "\\040")
    support, _ = detect(f"40 31 0:38 / {escaped} rw - cgroup2 cgroup2 rw\n", "0::/\n")
    assert support is not None and support.memory == spaced


def test_join_prefix_writes_every_procs_file_then_execs(tmp_path: Path) -> None:
    support = CgroupSupport(CgroupVersion.V1, tmp_path / "mem it's", tmp_path / "pids")
    prefix = ExtensionCgroup(support, "kithost-1-x0-a").join_prefix()
    assert prefix[:2] == ("/bin/sh", "-c") and prefix[3] == "kithost-cgroup-join"
    script = prefix[2]
    assert script.endswith(f'|| exit {EXIT_JOIN}; exec "$@"')
    assert f"echo $$ > '{tmp_path}/mem it'\"'\"'s/kithost-1-x0-a/cgroup.procs'" in script
    assert f"&& echo $$ > '{tmp_path}/pids/kithost-1-x0-a/cgroup.procs'" in script


def test_v1_stats_and_verdicts(tmp_path: Path) -> None:
    support = CgroupSupport(CgroupVersion.V1, tmp_path / "m", tmp_path / "p")
    group = ExtensionCgroup(support, "kithost-1-x0-a")
    mem, pids = group.paths
    mem.mkdir(parents=True)
    pids.mkdir(parents=True)
    (mem / "memory.usage_in_bytes").write_text("4096\n")
    (mem / "memory.max_usage_in_bytes").write_text("67108864\n")
    (mem / "memory.limit_in_bytes").write_text("67108864\n")
    (mem / "memory.failcnt").write_text("12\n")
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    (pids / "pids.max").write_text("16\n")
    (pids / "pids.current").write_text("0\n")
    (pids / "pids.events").write_text("max 0\n")
    stats = group.stats()
    assert (stats.memory_bytes, stats.memory_peak_bytes, stats.memory_limit_bytes) == (4096, 1 << 26, 1 << 26)
    assert (stats.oom_kills, stats.memory_limit_hits, stats.pids, stats.pids_limit) == (1, 12, 0, 16)
    assert stats.verdict() == "killed: memory limit 64 MiB (cgroup out-of-memory kill)"
    (mem / "memory.oom_control").write_text("oom_kill 0\n")
    (mem / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (pids / "pids.events").write_text("max 3\n")
    stats = group.stats()
    assert stats.memory_limit_bytes is None and stats.verdict() == "fork refused: cgroup pids limit (16)"


def test_v2_stats(tmp_path: Path) -> None:
    group = ExtensionCgroup(CgroupSupport(CgroupVersion.V2, tmp_path, tmp_path), "kithost-1-x0-a")
    (path,) = group.paths
    path.mkdir()
    (path / "memory.current").write_text("100\n")
    (path / "memory.max").write_text("max\n")
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 5\noom 1\noom_kill 2\noom_group_kill 1\n")
    (path / "pids.max").write_text("max\n")
    stats = group.stats()
    assert (stats.memory_bytes, stats.memory_limit_bytes, stats.oom_kills, stats.memory_limit_hits) == (
        100, None, 2, 5)
    assert stats.pids_limit is None and stats.verdict() == "killed: memory limit (cgroup out-of-memory kill)"


def test_sweep_removes_only_dead_hosts_cgroups(tmp_path: Path) -> None:
    support = CgroupSupport(CgroupVersion.V1, tmp_path / "m", tmp_path / "p")
    dead = cgroup_name(DEAD_PID, 0, "a")
    mine = cgroup_name(os.getpid(), 0, "a")
    alive = cgroup_name(1, 3, "b")  # pid 1 is older than any cgroup made now
    for base in support.bases:
        for name in (dead, mine, alive, "someone-else"):
            (base / name).mkdir(parents=True)
    assert sweep_stale(support) == [dead]
    for base in support.bases:
        assert sorted(p.name for p in base.iterdir()) == sorted([mine, alive, "someone-else"])
    assert sweep_stale(support, own_pid=DEAD_PID) == []  # our pid is alive and older than the cgroup
    for base in support.bases:  # ... unless the cgroup is older than the process: the pid was reused
        os.utime(base / mine, (0, 0))
    assert sweep_stale(support, own_pid=DEAD_PID) == [mine]
