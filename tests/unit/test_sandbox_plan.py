"""BootPlan (the JSON the host hands the sandboxed child), Landlock's per-ABI rights and rlimit lowering.

Pure functions and value objects only: no process, no syscall.
"""

from __future__ import annotations

import json

import pytest

from ext_sdk.sandbox import landlock, rlimits
from ext_sdk.sandbox.plan import (
    ENV_PLAN,
    EXIT_SANDBOX,
    BootPlan,
    LandlockRules,
    PlanError,
    SeccompPolicy,
)


def full_plan() -> BootPlan:
    return BootPlan(
        rlimits={"AS": (1 << 31, 1 << 31), "CORE": (0, 0), "NOFILE": (256, 256), "CPU": (60, -1)},
        user=(1_900_000_004, 1_900_000_004),
        landlock=LandlockRules(read=["/usr", "/etc/ld.so.cache"], write=["/w"], execute=["/usr/bin/node"],
                               tcp_connect=[443], tcp_bind=None, scope_signal=False, required=True),
        seccomp=SeccompPolicy(allow_inet=True, allow_exec=True, required=False),
        exec_argv=["/usr/bin/node", "ext.js"],
    )


def test_constants() -> None:
    assert ENV_PLAN == "KITHOST_SANDBOX"
    assert EXIT_SANDBOX == 5


def test_round_trip_through_json() -> None:
    plan = full_plan()
    text = plan.to_json()
    assert json.loads(text)["exec_argv"] == ["/usr/bin/node", "ext.js"]
    again = BootPlan.from_json(text)
    assert again == plan
    assert hash(again) == hash(plan)
    assert again.landlock is not None and again.landlock.tcp_bind is None and again.landlock.tcp_connect == (443,)
    assert BootPlan.from_env(plan.env()) == plan
    assert again.user == (1_900_000_004, 1_900_000_004) and json.loads(text)["user"] == [1_900_000_004] * 2
    assert "BootPlan(rlimits={'AS'" in repr(plan)


def test_defaults_are_the_strict_ones() -> None:
    plan = BootPlan(landlock=LandlockRules(), seccomp=SeccompPolicy(), run_path="/ext/main.py")
    assert plan.drop_capabilities
    assert plan.landlock == LandlockRules(tcp_connect=[], tcp_bind=[], scope_abstract_unix=True, scope_signal=True)
    assert plan.seccomp == SeccompPolicy(allow_inet=False, allow_exec=False, required=True)
    assert BootPlan.from_json('{"run_path": "/x.py"}') == BootPlan(run_path="/x.py")
    assert plan.user is None  # the ids stay as they are unless a dedicated uid is named


def test_immutable() -> None:
    plan = full_plan()
    with pytest.raises(AttributeError):
        plan.run_path = "/x"
    with pytest.raises(TypeError):
        plan.rlimits["AS"] = (1, 1)  # type: ignore[index]
    assert plan.landlock is not None
    with pytest.raises(AttributeError):
        del plan.landlock.read


@pytest.mark.parametrize(("text", "match"), [
    ("nope", "not JSON"),
    ("[]", "expected an object"),
    ('{"run_path": "/x", "extra": 1}', "unknown key"),
    ('{"run_path": "/x", "landlock": {"reed": []}}', "unknown key.*reed"),
    ('{"run_path": "/x", "seccomp": {"allow_inet": 1}}', "true or false"),
    ('{"run_path": "/x", "landlock": {"read": ["relative/path"]}}', "absolute"),
    ('{"run_path": "/x", "landlock": {"read": "/usr"}}', "string"),
    ('{"run_path": "/x", "landlock": {"read": 5}}', "not iterable"),
    ('{"run_path": "/x", "landlock": {"tcp_connect": [70000]}}', "TCP port"),
    ('{"run_path": "/x", "landlock": {"tcp_connect": [true]}}', "TCP port"),
    ('{"run_path": "/x", "rlimits": {"NOPE": [1, 1]}}', "unknown limit"),
    ('{"run_path": "/x", "rlimits": {"as": [1, 1]}}', "unknown limit"),
    ('{"run_path": "/x", "rlimits": {"AS": [2, 1]}}', "above hard"),
    ('{"run_path": "/x", "rlimits": {"AS": [1]}}', "soft, hard"),
    ('{"run_path": "/x", "rlimits": {"AS": [-5, 1]}}', "soft, hard"),
    ("{}", "exactly one"),
    ('{"run_path": "/x", "exec_argv": ["/bin/true"], "seccomp": {"allow_exec": true}}', "exactly one"),
    ('{"exec_argv": []}', "non-empty"),
    ('{"exec_argv": ["node"]}', "absolute"),
    ('{"exec_argv": ["/usr/bin/node"], "seccomp": {}}', "allow_exec"),
    ('{"run_path": "/x", "user": [0, 0]}', "not root"),
    ('{"run_path": "/x", "user": [1000]}', "uid, gid"),
    ('{"run_path": "/x", "user": ["1000", 1000]}', "uid, gid"),
    ('{"run_path": "/x", "user": [true, 1000]}', "uid, gid"),
])
def test_bad_plans_are_refused(text: str, match: str) -> None:
    with pytest.raises(PlanError, match=match):
        BootPlan.from_json(text)


def test_missing_env_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match=ENV_PLAN):
        BootPlan.from_env({})


# ---------------------------------------------------------------------------------------------- Landlock


def test_rights_per_abi() -> None:
    assert landlock.fs_rights(0) == 0
    assert landlock.fs_rights(1) == (1 << 13) - 1
    assert landlock.fs_rights(2) == landlock.fs_rights(1) | landlock.REFER
    assert landlock.fs_rights(3) == landlock.fs_rights(2) | landlock.TRUNCATE
    assert landlock.fs_rights(4) == landlock.fs_rights(3)  # ABI 4 adds TCP, not fs rights
    assert landlock.fs_rights(5) == landlock.fs_rights(4) | landlock.IOCTL_DEV
    assert landlock.fs_rights(7) == landlock.fs_rights(5) == (1 << 16) - 1


def test_ruleset_attr_size_per_abi() -> None:
    assert len(landlock.ruleset_attr(1, 1, 2, 3)) == 8
    assert len(landlock.ruleset_attr(3, 1, 2, 3)) == 8
    assert len(landlock.ruleset_attr(4, 1, 2, 3)) == 16
    assert len(landlock.ruleset_attr(5, 1, 2, 3)) == 16
    assert landlock.ruleset_attr(6, 1, 2, 3) == (1).to_bytes(8, "little") + (2).to_bytes(8, "little") + \
        (3).to_bytes(8, "little")


def test_a_file_gets_only_file_rights() -> None:
    """Directory rights on a file make landlock_add_rule fail with EINVAL: narrow them away."""
    write = landlock.KIND_RIGHTS["write"]
    assert landlock.narrow(write, is_dir=False, abi_version=7) == (
        landlock.WRITE_FILE | landlock.READ_FILE | landlock.TRUNCATE | landlock.IOCTL_DEV)
    assert landlock.narrow(write, is_dir=False, abi_version=1) == landlock.WRITE_FILE | landlock.READ_FILE
    assert landlock.narrow(write, is_dir=True, abi_version=1) & landlock.REFER == 0
    assert landlock.narrow(write, is_dir=True, abi_version=2) & landlock.REFER
    execute = landlock.narrow(landlock.KIND_RIGHTS["execute"], is_dir=False, abi_version=7)
    assert execute == landlock.EXECUTE | landlock.READ_FILE
    for kind in ("read", "write", "execute"):
        assert landlock.KIND_RIGHTS[kind] & (landlock.MAKE_CHAR | landlock.MAKE_BLOCK) == 0


def test_path_access_unions_the_lists() -> None:
    rules = LandlockRules(read=["/a", "/b"], write=["/b"], execute=["/a/x", "/b"])
    access = landlock.path_access(rules)
    assert access["/a"] == landlock.READ_RIGHTS
    assert access["/b"] == landlock.WRITE_RIGHTS | landlock.EXECUTE
    assert access["/a/x"] == landlock.EXECUTE_RIGHTS


# ---------------------------------------------------------------------------------------------- rlimits


@pytest.mark.parametrize(("current", "planned", "expected"), [
    ((1024, 4096), (256, 256), (256, 256)),
    ((1024, 4096), (8192, 8192), (4096, 4096)),  # never above the current hard limit
    ((-1, -1), (100, 200), (100, 200)),
    ((0, -1), (-1, -1), (-1, -1)),  # unlimited stays unlimited only where it already was
    ((10, 20), (-1, -1), (20, 20)),
    ((1024, 4096), (512, -1), (512, 4096)),
])
def test_rlimits_only_lower_the_hard_limit(current: tuple[int, int], planned: tuple[int, int],
                                           expected: tuple[int, int]) -> None:
    assert rlimits.lowered(current, planned) == expected


def test_the_environment_form_round_trips_and_the_json_form_is_still_read() -> None:
    plan = BootPlan(run_path="/x.py")
    encoded = plan.encode()
    assert not encoded.startswith("{") and BootPlan.decode(encoded) == plan  # not JSON: no json/re in the boot
    assert BootPlan.decode(plan.to_json()) == plan


@pytest.mark.parametrize("text", ["zz", "00", "", "e3"])
def test_a_damaged_environment_form_is_refused(text: str) -> None:
    with pytest.raises(PlanError):
        BootPlan.decode(text)
