"""Dedicated ids: the range, leases, the private directory's permissions, reachability (no process started)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from host.exthost.sandbox.uids import (
    ID_BASE,
    ID_COUNT,
    blockers,
    collisions,
    dedicated_id,
    lease_id,
    runtime_blockers,
    share_private_dir,
)

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def test_range_is_clear_of_system_user_and_subordinate_ids() -> None:
    assert dedicated_id(0) == ID_BASE and dedicated_id(5) == ID_BASE + 5
    assert 60_000 < 65_534 < 600_100_000 < ID_BASE  # login.defs UID_MAX, nobody, SUB_UID_MAX
    assert ID_BASE + ID_COUNT < 2_147_352_576  # below systemd's "foreign" range and 2^31 - 1
    for bad in (-1, ID_COUNT):
        with pytest.raises(ValueError):
            dedicated_id(bad)


def test_collisions_read_passwd_group_and_subids(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text("root:x:0:0::/root:/bin/sh\nodd:x:1900000007:1::/:/bin/false\n")
    (tmp_path / "group").write_text("root:x:0:\n")
    (tmp_path / "subuid").write_text("alice:100000:65536\nbig:1899990000:20000\n")
    assert collisions(tmp_path) == ["/etc/passwd: odd (1900000007)", "/etc/subuid: big (1899990000+20000)"]
    assert collisions(tmp_path / "missing") == []


def test_this_machine_has_the_range_free() -> None:
    assert collisions() == []


def test_leases_never_hand_out_one_id_twice(tmp_path: Path) -> None:
    locks = tmp_path / "ids"
    with lease_id(3, locks) as first, lease_id(3, locks) as second:
        assert first.uid == first.gid == ID_BASE + 3
        assert second.id == ID_BASE + 4
        assert stat.S_IMODE(locks.stat().st_mode) == 0o700
    with lease_id(3, locks) as again:  # released: free again
        assert again.id == ID_BASE + 3
    again.release()  # idempotent


def test_a_loose_lock_dir_is_refused(tmp_path: Path) -> None:
    locks = tmp_path / "ids"
    locks.mkdir(mode=0o755)
    locks.chmod(0o755)
    with pytest.raises(PermissionError, match="mode 0700"):
        lease_id(0, locks)


@root_only
def test_share_private_dir_gives_the_uid_its_sockets_and_work_dir_only(tmp_path: Path) -> None:
    uid = gid = ID_BASE + 42
    directory = tmp_path / "x1"
    work = directory / "w"
    (work / "sub").mkdir(parents=True)
    (work / "sub" / "f").write_text("x")
    (work / "link").symlink_to("/etc/hostname")
    (directory / "secret").write_bytes(b"k" * 32)
    (directory / "secret").chmod(0o600)
    directory.chmod(0o700)
    share_private_dir(directory, uid, gid)
    st = directory.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), gid, 0o750)
    st = (directory / "secret").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), gid, 0o640)
    for path in (work, work / "sub", work / "sub" / "f"):
        assert (path.stat().st_uid, path.stat().st_gid) == (uid, gid)
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    assert (work / "link").lstat().st_uid == uid
    assert Path("/etc/hostname").stat().st_uid != uid  # the link's target was not touched


@root_only
def test_share_private_dir_refuses_a_symlinked_secret(tmp_path: Path) -> None:
    directory = tmp_path / "x1"
    (directory / "w").mkdir(parents=True)
    (directory / "secret").symlink_to("/etc/shadow")
    with pytest.raises(PermissionError, match="symlink"):
        share_private_dir(directory, ID_BASE, ID_BASE)


def test_blockers_find_a_closed_home_and_binds_bypass_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    tree = home / "py"
    (tree / "bin").mkdir(parents=True)
    exe = tree / "bin" / "python"
    exe.write_text("")
    exe.chmod(0o755)
    for d in (tree, tree / "bin"):
        d.chmod(0o755)
    home.chmod(0o700)
    tmp_path.chmod(0o755)
    assert blockers(str(exe), need=0o1) and f"{home} is mode 0700 (others cannot enter)" in blockers(
        str(exe), need=0o1)
    assert blockers(str(exe), bound=[str(tree)], need=0o1) == []
    assert runtime_blockers([str(tree)], str(exe), bound=True) == []
    assert runtime_blockers([str(tree)], str(exe), bound=False) != []
    (tree / "bin").chmod(0o700)  # closed inside the bound tree: binds do not help
    assert blockers(str(exe), bound=[str(tree)], need=0o1) == [f"{tree / 'bin'} is mode 0700 (others cannot enter)"]
    assert blockers(str(tmp_path / "nope"))[0].endswith("No such file or directory")
