"""The conformance kit: drive one extension through scripted scenarios, acting as the host at the wire level.

``kithost conformance PATH`` (an extension folder) or ``kithost conformance
-- COMMAND...`` (any executable) starts the extension exactly as the host
does — the same launch (private directory, 32-byte secret file, environment),
the same sandbox layers, the same ZAP gate — but talks to it over the kit's
own sockets, so it can also send what a host never sends: a rejected
handshake, bad frames. Then it prints a table of checks (pass / fail / skip,
and why), or JSON with ``--json``.

What holds (each module states its own part):

* every check has a stable id and says what it verifies (:mod:`.catalog`);
  the run fails only on a required check that fails, unless the
  known-failures file lists it (:mod:`.report`);
* samples are derived from the event schemas, never hand-listed
  (:mod:`.samples`); the handshake is decided by the host's own function
  (:mod:`.handshake`), and host calls answered by the host's own router
  (:mod:`.answers`), so the kit accepts exactly what the host accepts;
* scenarios share a launch while it stays in step; a request with no reply
  gets the next scenario a fresh launch, so one broken handler fails only
  its own checks; the version mismatch runs on a launch of its own, at the
  same time (:mod:`.runner`);
* every wait is bounded by the config's deadlines, and no process outlives
  a run (:mod:`.launcher`).

Modules: :mod:`.target` (what to drive), :mod:`.launcher` (starting and
ending launches), :mod:`.peer` (the kit's sockets), :mod:`.session` (one
welcomed launch: requests, pings, host calls), :mod:`.judge` (the rules of
a reply), :mod:`.handshake`, :mod:`.exchanges`, :mod:`.liveness`,
:mod:`.mismatch` (the scenarios), :mod:`.plan` (what they share),
:mod:`.runner` (the order and the launches), :mod:`.report`,
:mod:`.command` (the CLI's entry).
"""

from __future__ import annotations

from .catalog import CHECKS, CheckResult, Status, describe
from .command import conformance_command
from .report import Report, load_known_failures
from .runner import run_kit
from .target import Target, parse_target

__all__ = ["CHECKS", "CheckResult", "Report", "Status", "Target", "conformance_command", "describe",
           "load_known_failures", "parse_target", "run_kit"]
