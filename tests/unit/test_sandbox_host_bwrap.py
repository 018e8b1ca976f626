"""The bubblewrap argv builder (pure): mounts, order, namespaces, env, uid drop."""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePosixPath

import pytest

from host.exthost.sandbox.bwrap import (
    ETC_NETWORK,
    BwrapMode,
    BwrapPlan,
    RuntimePaths,
    SystemLayout,
    bwrap_argv,
    mount_points,
)

RUNTIME = RuntimePaths(python_prefix="/root/.pyenv/versions/3.11.7", venv="/work/main/.venv",
                       sdk="/work/main/ext_sdk")
SOCK = "/tmp/kithost-0/habc/x3"
WORK = SOCK + "/w"
EXT = "/work/main/extensions/hello"


def plan(**changes: object) -> BwrapPlan:
    base = BwrapPlan(mode=BwrapMode.USERNS, socket_dir=SOCK, work_dir=WORK, runtime=RUNTIME, extension_dir=EXT,
                     disable_userns=True,
                     env={"PATH": "/usr/bin:/bin", "KITHOST_EVENTS": f"ipc://{SOCK}/e", "HOME": WORK})
    return replace(base, **changes)  # type: ignore[arg-type]


_ARITY = {"--ro-bind": 2, "--ro-bind-try": 2, "--bind": 2, "--symlink": 2, "--setenv": 2, "--tmpfs": 1,
          "--dev": 1, "--proc": 1, "--dir": 1, "--perms": 1, "--remount-ro": 1, "--chdir": 1, "--uid": 1,
          "--gid": 1, "--seccomp": 1, "--cap-drop": 1, "--cap-add": 1, "--json-status-fd": 1}


def ops(argv: tuple[str, ...]) -> list[tuple[str, ...]]:
    """bwrap's options as ``(option, *args)`` tuples, up to ``--``."""
    out: list[tuple[str, ...]] = []
    i = 1
    while argv[i] != "--":
        n = _ARITY.get(argv[i], 0)
        out.append(tuple(argv[i:i + 1 + n]))
        i += 1 + n
    return out


def index(items: list[tuple[str, ...]], *op: str) -> int:
    return items.index(tuple(op))


def test_userns_mode_unshares_everything_and_keeps_nothing() -> None:
    argv = bwrap_argv(plan())
    items = ops(argv)
    assert argv[0] == "/usr/bin/bwrap" and argv[-1] == "--"
    for flag in ("--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--disable-userns",
                 "--clearenv"):
        assert (flag,) in items
    assert ("--cap-drop", "ALL") in items
    assert ("--share-net",) not in items and not any(o[0] == "--cap-add" for o in items)
    assert ("--chdir", WORK) in items


def test_allow_list_filesystem_at_the_same_paths() -> None:
    items = ops(bwrap_argv(plan()))
    for path in (*RUNTIME.paths(), "/usr", EXT):
        assert ("--ro-bind", path, path) in items
    assert ("--ro-bind", SOCK, SOCK) in items  # read-only: the host's sockets cannot be replaced
    assert ("--bind", WORK, WORK) in items
    for etc in ("/etc/ld.so.cache", "/etc/ssl", "/etc/alternatives"):
        assert ("--ro-bind-try", etc, etc) in items
    assert ("--symlink", "usr/bin", "/bin") in items and ("--symlink", "usr/lib64", "/lib64") in items
    assert ("--dev", "/dev") in items and ("--proc", "/proc") in items
    assert not any(o[0] == "--ro-bind" and o[1] == "/" for o in items)
    assert not any("/etc/resolv.conf" in o for o in items)  # only with the network


def test_tmpfs_tmp_comes_before_every_bind_under_tmp() -> None:
    items = ops(bwrap_argv(plan()))
    tmpfs = index(items, "--tmpfs", "/tmp")
    assert items[tmpfs - 1] == ("--perms", "1777")
    under_tmp = [i for i, o in enumerate(items) if o[0] in ("--bind", "--ro-bind", "--dir") and
                 o[-1].startswith("/tmp/")]
    assert under_tmp and min(under_tmp) > tmpfs


def test_missing_parents_are_made_0755_before_their_mount() -> None:
    items = ops(bwrap_argv(plan()))
    dirs = [o[1] for o in items if o[0] == "--dir"]
    for parent in ("/root", "/root/.pyenv", "/root/.pyenv/versions", "/work", "/work/main", "/etc",
                   "/tmp/kithost-0", "/tmp/kithost-0/habc"):
        i = index(items, "--dir", parent)
        assert items[i - 1] == ("--perms", "0755"), parent
    # each parent before any mount below it
    for i, o in enumerate(items):
        if o[0] in ("--bind", "--ro-bind", "--ro-bind-try"):
            for above in PurePosixPath(o[-1]).parents:
                if str(above) in dirs:
                    assert index(items, "--dir", str(above)) < i
    # never for a path inside a bind of host files (the work dir lies inside the bound socket dir),
    # nor for mount points themselves
    assert WORK not in dirs and SOCK not in dirs and "/tmp" not in dirs and "/usr" not in dirs


def test_no_dir_steps_inside_a_bound_tree() -> None:
    items = ops(bwrap_argv(plan(extension_dir="/usr/share/kithost/ext/hello")))
    assert not any(o[0] == "--dir" and o[1].startswith("/usr") for o in items)
    assert ("--ro-bind", "/usr/share/kithost/ext/hello", "/usr/share/kithost/ext/hello") in items


def test_mounts_are_parent_first_and_remount_ro_comes_last() -> None:
    items = ops(bwrap_argv(plan()))
    mounts = [o[-1] for o in items if o[0] in ("--bind", "--ro-bind", "--ro-bind-try", "--tmpfs", "--dev",
                                                "--proc", "--symlink")]
    depths = [len(PurePosixPath(m).parts) for m in mounts]
    assert depths == sorted(depths)
    last_mount = max(i for i, o in enumerate(items) if o[0] in ("--bind", "--ro-bind", "--ro-bind-try", "--dir"))
    assert index(items, "--remount-ro", "/") > last_mount


def test_env_is_cleared_then_set_one_by_one() -> None:
    items = ops(bwrap_argv(plan()))
    clear = index(items, "--clearenv")
    sets = [o for o in items if o[0] == "--setenv"]
    assert sets == [("--setenv", "HOME", WORK), ("--setenv", "KITHOST_EVENTS", f"ipc://{SOCK}/e"),
                    ("--setenv", "PATH", "/usr/bin:/bin")]
    assert all(items.index(s) > clear for s in sets)


def test_network_grant_shares_the_netns_and_binds_resolver_files() -> None:
    items = ops(bwrap_argv(plan(network=True)))
    assert ("--share-net",) in items
    for etc in ETC_NETWORK:
        assert ("--ro-bind-try", etc, etc) in items
    root = ops(bwrap_argv(plan(mode=BwrapMode.ROOT, network=True)))
    assert ("--unshare-net",) not in root
    assert ("--unshare-net",) in ops(bwrap_argv(plan(mode=BwrapMode.ROOT)))


def test_root_mode_has_no_user_namespace_and_keeps_only_what_the_uid_switch_inside_needs() -> None:
    argv = bwrap_argv(plan(mode=BwrapMode.ROOT, uid=1_900_000_003, gid=1_900_000_003))
    items = ops(argv)
    assert ("--unshare-all",) not in items and ("--unshare-user",) not in items
    assert ("--disable-userns",) not in items  # needs a user namespace
    assert ("--disable-userns",) not in ops(bwrap_argv(plan(disable_userns=False)))  # bwrap < 0.8
    for flag in ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--unshare-net"):
        assert (flag,) in items
    assert [o[1] for o in items if o[0] == "--cap-add"] == ["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP",
                                                                  "CAP_DAC_READ_SEARCH"]
    assert not any(o[0] in ("--uid", "--gid") for o in items)
    assert argv[-1] == "--" and argv.count("--") == 1  # the payload (the boot) enters the uid itself


def test_root_mode_without_uid_keeps_no_capability() -> None:
    argv = bwrap_argv(plan(mode=BwrapMode.ROOT))
    assert not any(o[0] == "--cap-add" for o in ops(argv)) and argv[-1] == "--"


def test_userns_uid_is_the_id_inside_the_namespace() -> None:
    items = ops(bwrap_argv(plan(uid=1000, gid=1001)))
    assert ("--uid", "1000") in items and ("--gid", "1001") in items


def test_seccomp_and_status_fds() -> None:
    items = ops(bwrap_argv(plan(seccomp_fd=7, status_fd=9)))
    assert ("--seccomp", "7") in items and ("--json-status-fd", "9") in items
    assert not any(o[0] == "--seccomp" for o in ops(bwrap_argv(plan())))


def test_granted_paths_and_precedence() -> None:
    items = ops(bwrap_argv(plan(read_only=("/data/ro", "/data/both"), read_write=("/data/rw", "/data/both"))))
    assert ("--ro-bind", "/data/ro", "/data/ro") in items
    assert ("--bind", "/data/rw", "/data/rw") in items
    assert ("--bind", "/data/both", "/data/both") in items  # granted both ways: read-write
    assert ("--ro-bind", "/data/both", "/data/both") not in items
    nested = ops(bwrap_argv(plan(read_write=("/data",), read_only=("/data/keys",))))
    assert index(nested, "--bind", "/data", "/data") < index(nested, "--ro-bind", "/data/keys", "/data/keys")


def test_socket_dir_read_write_on_request() -> None:
    assert ("--bind", SOCK, SOCK) in ops(bwrap_argv(plan(socket_dir_rw=True)))


def test_layout_without_merged_usr_binds_the_directories() -> None:
    layout = SystemLayout(symlinks=(("/lib64", "usr/lib64"),), directories=("/bin", "/lib"))
    items = ops(bwrap_argv(plan(layout=layout)))
    assert ("--ro-bind", "/bin", "/bin") in items and ("--ro-bind", "/lib", "/lib") in items
    assert ("--symlink", "usr/lib64", "/lib64") in items and ("--symlink", "usr/bin", "/bin") not in items


def test_paths_are_normalised_and_must_be_absolute() -> None:
    assert ("--ro-bind", "/opt/x", "/opt/x") in ops(bwrap_argv(plan(read_only=("/opt//x/",))))
    with pytest.raises(ValueError, match="absolute"):
        bwrap_argv(plan(read_only=("relative/path",)))
    with pytest.raises(ValueError, match="absolute"):
        bwrap_argv(plan(work_dir="w"))


def test_chdir_override_and_mount_points_helper() -> None:
    assert ("--chdir", EXT) in ops(bwrap_argv(plan(chdir=EXT)))
    dests = [m[2] for m in mount_points(plan())]
    assert len(dests) == len(set(dests)) and dests[0] in ("/bin", "/dev", "/lib", "/lib64", "/proc", "/sbin",
                                                          "/tmp", "/usr")
