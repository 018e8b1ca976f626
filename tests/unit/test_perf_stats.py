"""The latency split kept per extension: three parts per successful round trip, percentiles per part."""

from __future__ import annotations

from host.exthost.stats import SPLIT_PARTS, ExtensionStats


def test_no_split_until_an_extension_reports_its_time() -> None:
    stats = ExtensionStats()
    stats.record_ok(120.0)
    assert stats.split() is None and stats.snapshot()["latency_split"] is None


def test_the_split_has_a_p50_and_p99_per_part() -> None:
    stats = ExtensionStats(window=100)
    for i in range(1, 101):
        stats.record_split(float(i), 10.0 * i, 100.0 * i)
    split = stats.split()
    assert split is not None and tuple(split) == SPLIT_PARTS
    assert split["host"] == {"p50_us": 50.0, "p99_us": 99.0}
    assert split["transit"]["p50_us"] == 500.0 and split["extension"]["p99_us"] == 9900.0
    assert stats.snapshot()["latency_split"] == split


def test_the_split_window_is_bounded() -> None:
    stats = ExtensionStats(window=10)
    for i in range(25):
        stats.record_split(float(i), 0.0, 0.0)
    split = stats.split()
    assert split is not None and split["host"]["p50_us"] == 19.0  # only the last 10 (15..24) are kept
