"""``kithost demo`` (what ``make demo`` runs): a real agent session, offline, with the bundled extensions.

The agent runs on the ``scripted`` provider (``host/demo_data/demo_script.json``)
in a throw-away workspace holding a ``.env`` with an API key and a ``build/``
directory. Five extensions run, each in its own process:

* ``permission-gate`` blocks the model's ``rm -rf /`` (the command never runs);
* ``secret-redactor`` scrubs the key from the tool output — the script's
  ``expect`` fails the run if the model ever receives it;
* ``usage-budget`` counts tokens and cost per call and reports at turn end;
* ``context-pruner`` keeps the window small;
* ``misbehaving`` hangs past its deadline once and crashes once: the agent
  moves on at the deadline, the supervisor restarts it.

It ends with the operator's view of every extension. No network, no key;
about ten seconds.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from .config import HostConfig, Sandbox
from .exthost.host import ExtensionHost
from .exthost.manifest import load_manifest
from .exthost.supervisor import ExtState

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ("permission_gate", "secret_redactor", "usage_budget", "context_pruner")
SCRIPT = Path(__file__).with_name("demo_data") / "demo_script.json"
PROMPT = "Look around this project, check its config, and clean up everything."


class _FailureNotes(logging.Handler):
    """Shows kithost's warnings (extension failures, restarts) inline, readably."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.write(f"   ⚠ {record.getMessage()}\n")
        self.out.flush()


def _workspace(base: Path) -> Path:
    work = base / "project"
    (work / "build").mkdir(parents=True)
    (work / "build" / "app.o").write_bytes(b"\x7fELF")
    (work / "README.md").write_text("# demo project\n")
    (work / ".env").write_text("DEBUG=false\nOPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z\n")
    return work


def _status_table(host: ExtensionHost, out: TextIO) -> None:
    out.write(f"\n   {'extension':<16} {'state':<9} {'restarts':>8} {'handled':>8} {'failures':<34} last reason\n")
    for ext in host.extensions():
        info: dict[str, Any] = ext.info()
        stats = info["stats"]
        fails = ", ".join(f"{k}={v}" for k, v in sorted(stats["failures"].items())) or "-"
        out.write(f"   {ext.name:<16} {info['state']:<9} {info['restarts']:>8} "
                  f"{stats['handled'] + stats['notified']:>8} {fails:<34} {info['last_reason'][:60]}\n")


def run_demo(quiet: bool = False) -> int:
    """Run the demo; returns the exit status (non-zero if the scripted scenario did not play out)."""
    from .agent.cli.render import render_event_for_humans
    from .agent.session import AgentSession

    out = sys.stdout
    notes = _FailureNotes(out)
    kithost_log = logging.getLogger("kithost")
    kithost_log.addHandler(notes)
    kithost_log.propagate = False
    base = Path(tempfile.mkdtemp(prefix="kithost-demo-"))
    try:
        work = _workspace(base)
        extensions = [ROOT / "extensions" / name for name in BUNDLED]
        extensions.append(Path(__file__).parent / "demo_extensions" / "misbehaving")

        def on_event(event: str, data: dict[str, Any]) -> None:
            if quiet or event == "tool_output":
                return  # show what the model sees (tool_result, after the extensions), not the raw stream
            if event == "tool_result":
                lines = str(data.get("content", "")).splitlines() or [""]
                mark = "✗" if data.get("is_error") else "✓"
                out.write(f"  {mark} the model sees: {lines[0]}\n" + "".join(f"                   {ln}\n"
                                                                          for ln in lines[1:6]))
                out.flush()
                return
            text = render_event_for_humans(event, data)
            if text:
                out.write(text)
                out.flush()

        def on_print(extension: str, level: str, text: str) -> None:
            mark = {"error": "✗", "info": "ℹ"}.get(level, "·")
            out.write(f"   {mark} [{extension}] {text}\n")
            out.flush()

        # The demo's operator grants each bundled extension what its manifest asks, in its config (the
        # same tables an operator writes; without a grant an extension that asks for more does not start).
        manifests = [load_manifest(path) for path in extensions]
        # allow_weak: the demo runs on any machine; it prints the isolation level it got.
        config = HostConfig(search_dirs=(), permissions={m.name: m.permissions for m in manifests},
                            access={m.name: m.access for m in manifests}, sandbox=Sandbox(allow_weak=True))
        out.write(f"kithost demo — workspace {work}\n"
                  f"== starting {len(extensions)} extensions, each in its own process, each granted what its "
                  "manifest asks (the demo's config)\n")
        session = AgentSession.open("scripted/demo", SCRIPT, extensions, base / "demo.jsonl", work,
                                    config, on_event=on_event, on_print=on_print)
        with session:
            for ext in session.host.extensions():
                subs = ", ".join(f"{h.event}({h.policy})" for h in ext.declared.handlers)
                out.write(f"   {ext.name:<16} pid {ext.process.pid if ext.process else '-':<7} {subs}\n")
            first = session.host.extensions()[0].confined if session.host.extensions() else None
            if first is not None:
                out.write(f"   sandbox: {first.level} — {', '.join(first.layers)}\n")
            out.write(f"\n== user: {PROMPT}\n")
            result = session.run(PROMPT)
            session.host.flush(10)
            broken = session.host.extension("misbehaving")
            end = time.monotonic() + 10
            while broken.state is not ExtState.READY and time.monotonic() < end:  # bounded: the supervisor's backoff
                time.sleep(0.05)
            out.write(f"\n== the supervisor restarted misbehaving {broken.restarts} time(s); it is {broken.state.value}"
                      f" again (last exit: {broken.last_exit})\n")
            leftovers = [p for p in ("build",) if (work / p).exists()]
            out.write("\n== what each extension did")
            _status_table(session.host, out)
            state = session.host.state.snapshot()
            out.write(f"\n   state kept by the host (survives crashes): {state}\n")
        ok = result.stop_reason == "completed" and not leftovers and (work / ".env").exists()
        out.write("\n" + ("demo finished: dangerous command blocked, secret redacted, usage reported, "
                          "misbehaving extension contained; all extension processes stopped.\n" if ok else
                          f"demo did not play out as scripted (stop reason {result.stop_reason}).\n"))
        return 0 if ok else 1
    finally:
        kithost_log.removeHandler(notes)
        kithost_log.propagate = True
        shutil.rmtree(base, ignore_errors=True)
