"""The kit's report: a table for people, JSON for machines, and the known-failures file applied.

Contract:

* :class:`Report` holds the results of one run in report order, and what
  was driven (target, name, version, SDK), how long it took and how many
  launches it needed.
* A known-failures file (:func:`load_known_failures`) is UTF-8 text with one
  check id per line; ``#`` starts a comment; blank lines are ignored. A
  listed check that fails is *known*: it does not fail the run. A listed
  check that passes is reported as *fixed* — the entry can be removed. A
  listed id that no check of this run has is reported too (a typo, or a
  check that did not run here).
* :attr:`Report.ok` is true when no required check failed, known failures
  aside. The CLI's exit status is 0 exactly then. In the table a failed
  advisory check shows as ``warn``, a known failure as ``known``, a listed
  check that passes as ``fixed``.
* :meth:`Report.as_json` shape (``kithost conformance --json``)::

      {"kit": "kithost conformance", "protocol_versions": [1],
       "target": str, "extension": {"name", "version", "sdk"},
       "ok": bool, "seconds": float, "launches": int,
       "summary": {"pass", "fail", "warn", "known", "skip", "fixed"},
       "checks": [{"id", "status": "pass"|"fail"|"skip", "required": bool,
                   "known_failure": bool, "why", "verifies"}],
       "known_failures": {"file": str|null, "fixed": [id], "unknown": [id]}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ext_sdk.wire import PROTOCOL_VERSIONS

from ..errors import HostError
from .catalog import CheckResult, Status, describe

__all__ = ["Report", "load_known_failures"]


def load_known_failures(path: Path) -> frozenset[str]:
    """The check ids listed in ``path`` (format in the module doc); raises :class:`HostError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HostError(f"{path}: cannot read the known-failures file: {exc.strerror}") from exc
    ids = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return frozenset(i for i in ids if i)


@dataclass
class Report:
    """One run of the kit on one extension."""

    target: str
    name: str
    version: str
    sdk: str
    results: list[CheckResult]
    seconds: float
    launches: int
    known: frozenset[str] = frozenset()
    known_file: str | None = None
    _ids: frozenset[str] = field(init=False, repr=False, default=frozenset())

    def __post_init__(self) -> None:
        self._ids = frozenset(r.id for r in self.results)

    def is_known(self, result: CheckResult) -> bool:
        return result.id in self.known and result.status is Status.FAIL

    def is_fixed(self, result: CheckResult) -> bool:
        return result.id in self.known and result.status is Status.PASS

    @property
    def failures(self) -> list[CheckResult]:
        """Required checks that failed and are not known failures."""
        return [r for r in self.results if r.status is Status.FAIL and r.required and not self.is_known(r)]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def fixed(self) -> list[str]:
        return [r.id for r in self.results if self.is_fixed(r)]

    @property
    def unknown(self) -> list[str]:
        return sorted(self.known - self._ids)

    def result(self, check_id: str) -> CheckResult:
        """The result of ``check_id``; ``KeyError`` if it did not run."""
        for r in self.results:
            if r.id == check_id:
                return r
        raise KeyError(check_id)

    def summary(self) -> dict[str, int]:
        """Checks by outcome: ``pass`` (``fixed`` among them), ``fail`` (required, not known), ``warn``
        (advisory), ``known`` (known failures), ``skip``."""
        counts = {"pass": 0, "fail": 0, "warn": 0, "known": 0, "skip": 0, "fixed": 0}
        for r in self.results:
            label = self._label(r)
            counts[{"FAIL": "fail", "fixed": "pass"}.get(label, label)] += 1
            counts["fixed"] += label == "fixed"
        return counts

    def as_json(self) -> dict[str, Any]:
        return {
            "kit": "kithost conformance",
            "protocol_versions": list(PROTOCOL_VERSIONS),
            "target": self.target,
            "extension": {"name": self.name, "version": self.version, "sdk": self.sdk},
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "launches": self.launches,
            "summary": self.summary(),
            "checks": [{"id": r.id, "status": r.status.value, "required": r.required,
                        "known_failure": r.id in self.known, "why": r.why, "verifies": describe(r.id)}
                       for r in self.results],
            "known_failures": {"file": self.known_file, "fixed": self.fixed, "unknown": self.unknown},
        }

    def _label(self, r: CheckResult) -> str:
        if self.is_known(r):
            return "known"
        if self.is_fixed(r):
            return "fixed"
        if r.status is Status.FAIL and not r.required:
            return "warn"
        return {Status.PASS: "pass", Status.FAIL: "FAIL", Status.SKIP: "skip"}[r.status]

    def table(self) -> str:
        """The human report (see ``kithost conformance --help``)."""
        who = f"{self.name} {self.version}".strip() + (f" ({self.sdk})" if self.sdk else "")
        lines = [f"kithost conformance: {who} — {self.target}"]
        width = max([len("check"), *(len(r.id) for r in self.results)])
        lines.append(f"  {'check':<{width}}  result  why")
        for r in self.results:
            lines.append(f"  {r.id:<{width}}  {self._label(r):<6}  {r.why}")
        counts = self.summary()
        tail = f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"
        if counts["warn"]:
            tail += f", {counts['warn']} advisory failed"
        if counts["known"]:
            tail += f", {counts['known']} known failure(s)"
        lines.append(f"{len(self.results)} checks: {tail} · {self.launches} launch(es) · {self.seconds:.1f} s"
                     f" → {'PASS' if self.ok else 'FAIL'}")
        source = self.known_file or "the known-failures file"
        for check_id in self.fixed:
            lines.append(f"known failure {check_id} passes now: remove it from {source}")
        for check_id in self.unknown:
            lines.append(f"known failure {check_id} is not a check of this run: fix or remove it in {source}")
        return "\n".join(lines)

    def to_text(self, as_json: bool) -> str:
        return json.dumps(self.as_json(), indent=2) if as_json else self.table()
