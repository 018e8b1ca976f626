"""``kithost conformance``: from the command line's words to a printed report and an exit status.

Contract of :func:`conformance_command`: ``words`` name the target
(:func:`~.target.parse_target`: a folder, or ``-- COMMAND...``); the report
goes to ``out`` as a table, or as JSON with ``as_json``; ``known_failures``
names a known-failures file (:func:`~.report.load_known_failures`). Returns 0
when every required check passed (known failures aside), 1 otherwise. A
target that cannot be driven at all (bad manifest, unreadable file, a
sandbox the config does not allow) raises :class:`~host.errors.HostError`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ..config import HostConfig
from .report import load_known_failures
from .runner import run_kit
from .target import parse_target

__all__ = ["conformance_command"]


def conformance_command(words: Sequence[str], config: HostConfig, as_json: bool = False,
                        known_failures: Path | None = None, out: TextIO | None = None) -> int:
    """Run the kit on ``words``' target and print the report (see the module doc)."""
    known = load_known_failures(known_failures) if known_failures is not None else frozenset()
    target = parse_target(words)
    report = run_kit(target, config)
    report.known = known
    report.known_file = str(known_failures) if known_failures is not None else None
    stream = out or sys.stdout
    stream.write(report.to_text(as_json) + "\n")
    stream.flush()
    return 0 if report.ok else 1
