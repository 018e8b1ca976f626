"""The command line of finding the bad extension: ``replay``, ``ext bisect``, ``ext call`` and ``--record``.

Each ``add_*`` function adds its parser and sets ``func`` (the function that runs it) with
``set_defaults``, so the CLI's dispatch is derived from the parsers. Output: one human report on stdout
(``--json``: one JSON document), progress on stderr, errors as :class:`~host.errors.HostError`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..cli_options import add_extension_paths, config_of
from ..config import HostConfig
from ..errors import HostError

__all__ = ["add_ext_parsers", "add_record_option", "add_replay_parser"]

def add_record_option(p: argparse.ArgumentParser) -> None:
    """``--record FILE`` for ``run`` and ``chat``."""
    p.add_argument("--record", type=Path, metavar="FILE",
                   help="record every event the host dispatches, with each handler's result and timing, to FILE "
                        "(JSON lines; replay it with `kithost replay FILE` or `kithost ext bisect FILE`)")


def add_replay_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                      common: argparse.ArgumentParser) -> None:
    """``kithost replay FILE [-e EXT ...]``."""
    p = sub.add_parser("replay", parents=[common], help="replay a recording against a set of extensions",
                       description="Dispatch every event of a recording (made with --record) again, in order, to "
                                   "the extensions given with -e (default: those recorded, from their recorded "
                                   "directories), each in its own confined process in a private host, and report "
                                   "every event whose outcome or handler answers differ from the recording. Exit "
                                   "status 0 when nothing differs, 1 otherwise.")
    p.add_argument("file", type=Path, help="recording (JSON lines) made with run/chat --record")
    add_extension_paths(p)
    p.add_argument("--json", action="store_true", help="one JSON document for machines")
    p.set_defaults(func=_replay)


def add_ext_parsers(ext_sub: argparse._SubParsersAction[argparse.ArgumentParser],
                    common: argparse.ArgumentParser) -> None:
    """``kithost ext bisect`` and ``kithost ext call``."""
    b = ext_sub.add_parser("bisect", parents=[common], help="find the extension that causes a recorded symptom",
                           description="Replay a recording (made with --record) against halves of its extensions "
                                       "to find the one (or the smallest set) that causes a symptom. --bad says "
                                       "which: KIND[:EVENT][~TEXT], KIND one of blocked (a gate stopped by a "
                                       "handler's decision), stopped (also by a fail-closed failure), failed (a "
                                       "handler failure), changed (a chain event's payload changed). One culprit "
                                       "among n extensions takes ceil(log2 n)+1 replays; a symptom that needs "
                                       "several extensions together falls back to ddmin.",
                           epilog="example: kithost ext bisect session.rec --bad 'blocked:tool_call~rm -rf'")
    b.add_argument("file", type=Path, help="recording (JSON lines) made with run/chat --record")
    b.add_argument("--bad", required=True, metavar="CONDITION",
                   help="the symptom: KIND[:EVENT][~TEXT], e.g. 'blocked:tool_call~rm' or 'failed'")
    add_extension_paths(b, "search among these extensions instead of the recorded ones (repeatable)")
    b.add_argument("--json", action="store_true", help="one JSON document for machines")
    b.set_defaults(func=_bisect)
    c = ext_sub.add_parser("call", parents=[common], help="send one event to an extension; print result and timing",
                           description="Start the extension (a directory or manifest, or a NAME found in the "
                                       "search dirs and -e paths) in its own confined process, exactly as an "
                                       "agent would, send it one EVENT with the PAYLOAD (a JSON file, '-' for "
                                       "stdin, or inline JSON starting with '{'), print its result, each timing "
                                       "and the host calls it made, then stop it. Exit status 1 if it did not "
                                       "start or its handler failed.",
                           epilog="example: kithost ext call extensions/permission_gate tool_call call.json")
    c.add_argument("target", help="extension directory, manifest, or name")
    c.add_argument("event", help="event name (kithost schema lists them), e.g. tool_call")
    c.add_argument("payload", nargs="?", default="{}",
                   help="payload: a JSON file, '-' for stdin, or inline JSON (default: {})")
    add_extension_paths(c)
    c.add_argument("--json", action="store_true", help="one JSON document for machines")
    c.set_defaults(func=_call)


def _dirs(args: argparse.Namespace, recorded: Sequence[str]) -> dict[str, Path]:
    """Extension name → directory: the -e paths, else the recorded directories (in load order)."""
    from ..exthost.discovery import discover

    if args.extension:
        found = discover((), args.extension)
        if found.problems:
            raise HostError("; ".join(problem for _, problem in found.problems))
        return {m.name: m.directory for m in found.manifests}
    missing = [p for p in recorded if not Path(p).exists()]
    if missing:
        raise HostError(f"recorded extension directories are gone: {', '.join(missing)} (give them with -e)")
    found = discover((), [Path(p) for p in recorded])
    if found.problems:
        raise HostError("; ".join(problem for _, problem in found.problems))
    return {m.name: m.directory for m in found.manifests}


def _progress(label: str) -> object:
    def show(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{label}: {done}/{total} events", end="" if done < total else "\n", file=sys.stderr,
                  flush=True)
    return show


def _replay(args: argparse.Namespace) -> int:
    from .record import read_recording
    from .replay import replay

    recording = read_recording(args.file)
    for line in recording.skipped:
        print(f"kithost: note: {args.file}: {line}", file=sys.stderr)
    dirs = _dirs(args, [e.path for e in recording.extensions])
    report = replay(recording, list(dirs.values()), config_of(args), _progress("replaying"))  # type: ignore[arg-type]
    if args.json:
        print(json.dumps({"extensions": list(report.extensions), "events": len(report.events),
                          "differences": [{"seq": d.seq, "event": d.event, "what": d.what}
                                          for d in report.differences]}, indent=2))
    elif not report.differences:
        print(f"no differences in {len(report.events)} events ({', '.join(report.extensions) or 'no extensions'})")
    else:
        print(f"{len(report.differences)} difference(s) in {len(report.events)} events:")
        for diff in report.differences:
            print(f"  {diff}")
    return 1 if report.differences else 0


def _bisect(args: argparse.Namespace) -> int:
    from .bisect import bisect_culprits
    from .record import read_recording
    from .replay import ReplayError, replay
    from .symptom import parse_symptom

    symptom = parse_symptom(args.bad)
    recording = read_recording(args.file)
    shown = symptom.where(recording.events)
    if not shown:
        raise HostError(f"the recording does not show {symptom} in its {len(recording.events)} events: nothing "
                        "to bisect")
    dirs = _dirs(args, [e.path for e in recording.extensions])
    config = config_of(args)
    chatty = not args.json
    if chatty:
        print(f"{symptom} shows at event(s) {', '.join(f'#{s}' for s in shown[:8])}"
              f"{' …' if len(shown) > 8 else ''}; searching {len(dirs)} extensions", file=sys.stderr)
    replays = 0

    def reproduces(subset: tuple[str, ...]) -> bool:
        nonlocal replays
        replays += 1
        try:
            report = replay(recording, [dirs[name] for name in subset], config)
            seen = bool(symptom.where(report.events))
        except ReplayError as exc:  # a subset that cannot start alone (needs a missing peer): not the symptom
            print(f"  replay {replays}: {', '.join(subset)} could not start: {exc}", file=sys.stderr)
            return False
        if chatty:
            print(f"  replay {replays}: {', '.join(subset)} → {'shows it' if seen else 'clean'}", file=sys.stderr)
        return seen

    result = bisect_culprits(list(dirs), reproduces)
    if args.json:
        print(json.dumps({"symptom": str(symptom), "culprits": list(result.culprits), "method": result.method,
                          "replays": result.replays,
                          "probes": [{"extensions": list(p.subset), "reproduced": p.reproduced}
                                     for p in result.probes]}, indent=2))
    elif not result.culprits:
        print(f"{symptom} did not reproduce in a replay ({result.replays} replays): it may depend on timing or on "
              "the model, not on one extension")
    elif len(result.culprits) == 1:
        print(f"culprit: {result.culprits[0]} ({result.replays} replays)")
    else:
        print(f"culprits (together): {', '.join(result.culprits)} ({result.replays} replays, {result.method})")
    return 0 if result.culprits else 1


def _payload(text: str) -> dict[str, object]:
    from .call import read_payload

    if text == "-":
        return read_payload(sys.stdin.read(), "stdin")
    if text.lstrip().startswith("{"):
        return read_payload(text, "the inline payload")
    path = Path(text)
    try:
        return read_payload(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise HostError(f"{path}: no such payload file (give a JSON file, '-' for stdin, or inline JSON)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HostError(f"{path}: cannot read it: {exc}") from None


def _target(args: argparse.Namespace, config: HostConfig) -> Path:
    path = Path(args.target)
    if path.exists():
        return path
    from ..exthost.discovery import discover

    found = discover(config.search_dirs, args.extension)
    for manifest in found.manifests:
        if manifest.name == args.target:
            return manifest.directory
    raise HostError(f"{args.target!r} is neither a path nor an extension in the search dirs or -e paths")


def _call(args: argparse.Namespace) -> int:
    from .call import call_extension

    config = config_of(args)
    payload = _payload(args.payload)
    report = call_extension(_target(args, config), args.event, payload, config)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        out = report.record.outcome
        print(f"{report.extension} ← {report.event}  (started in {report.start_ms:.0f} ms; dispatch "
              f"{report.ms:.2f} ms)")
        for step in report.record.steps:
            failure = step.get("failure")
            answer = f"FAILED {failure['kind']}: {failure['detail']}" if failure else json.dumps(step.get("result"))
            print(f"  {step.get('handler')}: {answer}  ({step.get('ms')} ms)")
        if not report.record.steps:
            print("  delivered (notify: no result)")
        if out.get("stopped"):
            print(f"  → stopped by {out.get('by')}: {out.get('reason')}")
        for call in report.host_calls:
            print(f"  host call {call.method}({json.dumps(call.args)[:80]}) → {'ok' if call.ok else 'refused'} "
                  f"({call.ms:.2f} ms)")
    return 1 if report.record.outcome.get("failures") else 0
