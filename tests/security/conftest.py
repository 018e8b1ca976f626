"""Hostile-extension suite: records attack → layer → outcome and prints the table after the run."""

from __future__ import annotations

from collections.abc import Callable

import pytest

#: (attack, layer, outcome under the layer, outcome without it), appended by the tests.
OUTCOMES: list[tuple[str, str, str, str]] = []


def record(attack: str, layer: str, stopped: str, unconfined: str) -> None:
    """Remember one row of the table printed at the end of the session."""
    OUTCOMES.append((attack, layer, stopped, unconfined))


@pytest.fixture
def outcome_table() -> Callable[[str, str, str, str], None]:
    """``record(attack, layer, outcome under the layer, outcome without it)`` for the end-of-run table."""
    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not OUTCOMES:
        return
    terminalreporter.section("sandbox: attack → layer that stopped it → outcome")
    widths = [max(len(row[i]) for row in OUTCOMES) for i in range(3)]
    head = ("attack", "layer", "under the layer")
    widths = [max(w, len(h)) for w, h in zip(widths, head, strict=True)]
    terminalreporter.write_line("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + "  without it")
    for attack, layer, stopped, unconfined in OUTCOMES:
        cells = (attack, layer, stopped)
        terminalreporter.write_line("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
                                    + "  " + unconfined)
