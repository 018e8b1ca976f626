"""Isolation levels from synthetic layers (pure: no probe of the machine runs here)."""

from __future__ import annotations

import pytest

from host.exthost.sandbox.probe import LAYERS, IsolationLevel, Layer, Probe, assess, caveats, probe

DETAILS = {
    "bwrap": "bwrap: No permissions to create new namespace, likely because the kernel does not allow "
             "non-privileged user namespaces.",
    "landlock": "landlock: ENOSYS (the kernel has no Landlock (CONFIG_SECURITY_LANDLOCK))",
    "seccomp": "seccomp: PR_SET_SECCOMP(FILTER) gave EINVAL (no CONFIG_SECCOMP_FILTER)",
    "cgroup": "cgroup v2 has no memory controller (cgroup.controllers: hugetlb)",
    "uid": "not root: no dedicated uid",
}


def layers(*off: str) -> tuple[Layer, ...]:
    return tuple(Layer(n, n not in off, DETAILS[n] if n in off else f"{n} in force") for n in LAYERS)


def test_all_layers_are_strong() -> None:
    assert assess(layers()) == (IsolationLevel.STRONG, [])


@pytest.mark.parametrize("off", [("landlock",), ("uid",), ("cgroup",), ("uid", "cgroup")])
def test_strong_needs_landlock_or_uid_besides_namespaces_and_seccomp(off: tuple[str, ...]) -> None:
    assert assess(layers(*off)) == (IsolationLevel.STRONG, [])


def test_namespaces_and_seccomp_without_landlock_or_uid_is_reduced() -> None:
    level, reasons = assess(layers("landlock", "uid"))
    assert level is IsolationLevel.REDUCED
    assert reasons == [f"landlock: {DETAILS['landlock']}", f"uid: {DETAILS['uid']}"]


def test_landlock_and_seccomp_without_namespaces_is_reduced_with_bwraps_own_words() -> None:
    level, reasons = assess(layers("bwrap", "uid", "cgroup"))
    assert level is IsolationLevel.REDUCED
    assert reasons == [f"bwrap: {DETAILS['bwrap']}"]


def test_seccomp_alone_is_weak() -> None:
    level, reasons = assess(layers("bwrap", "landlock"))
    assert level is IsolationLevel.WEAK
    assert reasons == [f"bwrap: {DETAILS['bwrap']}", f"landlock: {DETAILS['landlock']}"]


def test_no_seccomp_is_weak_whatever_else() -> None:
    level, reasons = assess(layers("seccomp"))
    assert level is IsolationLevel.WEAK and reasons == [f"seccomp: {DETAILS['seccomp']}"]


def test_a_layer_not_probed_counts_as_missing() -> None:
    level, reasons = assess([Layer("seccomp", True, "x"), Layer("landlock", True, "y")])
    assert level is IsolationLevel.REDUCED and reasons == ["bwrap: not probed"]


def test_caveats_name_cgroup_and_uid() -> None:
    assert caveats(layers()) == []
    notes = caveats(layers("cgroup", "uid"))
    assert notes == [f"memory and process limits are best-effort (rlimits): cgroup: {DETAILS['cgroup']}",
                     f"extensions share the host's uid: uid: {DETAILS['uid']}"]


def test_probe_record_reports_level_layers_and_json() -> None:
    result = Probe(layers=layers("bwrap"), landlock_abi=7, elapsed_ms=12.345)
    assert result.level is IsolationLevel.REDUCED and result.reasons == [f"bwrap: {DETAILS['bwrap']}"]
    assert result.on("seccomp") and not result.on("bwrap")
    text = result.report()
    assert text.splitlines()[0].startswith("isolation: reduced (bwrap: bwrap: No permissions")
    assert "  bwrap: no — bwrap: No permissions" in text and "probed in 12.3 ms" in text
    data = result.as_dict()
    assert data["level"] == "reduced" and data["elapsed_ms"] == 12.35
    assert data["layers"] == {lay.name: {"available": lay.available, "detail": lay.detail} for lay in layers("bwrap")}
    with pytest.raises(KeyError):
        result.layer("apparmor")


def test_unknown_forced_off_layer_is_refused_before_probing() -> None:
    with pytest.raises(ValueError, match="unknown sandbox layer"):
        probe(force_off={"bwarp"})
