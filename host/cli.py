"""``kithost`` command line: parse arguments, build the config, call the right function.

No logic lives here beyond turning arguments into calls and errors into
messages: every :class:`~host.errors.HostError` is printed as one clear line
(exit status 1), never as a traceback; bad usage exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .cli_options import add_extension_paths, config_of
from .config import HostConfig, default_config_path
from .errors import HostError
from .forensics.commands import add_ext_parsers, add_record_option, add_replay_parser
from .hooks import command as hooks_command
from .remote import commands as remote_commands

__all__ = ["main"]

_DESCRIPTION = """\
kithost runs an agent whose extensions each live in their own process, confined
by every sandbox layer this machine allows (`kithost ext sandbox` shows which),
talking to the host over ZeroMQ with signed msgpack frames. A hung, crashed or
malicious extension cannot take the agent down: every handler has a deadline and
a failure policy. An extension that asks for more than the defaults starts only
once the operator trusts it (`kithost ext trust NAME`).
"""

_EPILOG = """\
examples:
  kithost demo                           a real agent session with the bundled extensions (offline)
  kithost run --script s.json -e extensions "fix the tests"
                                         one turn on the offline scripted provider
  kithost chat --model openai/gpt-4o     interactive (needs OPENAI_API_KEY)
  kithost chat --continue                the session used last in this directory (--resume to pick one)
  kithost session list                   sessions kept for this directory (repair: `kithost session repair FILE`)
  kithost ext list -e extensions         list extensions and what they subscribe to
  kithost ext check extensions/permission_gate
                                         start one extension, show its handshake, stop it
  kithost ext trust permission-gate -e extensions
                                         review what it asks for and trust it
  kithost ext sandbox                    the isolation level here and each layer in force
  kithost ext reload permission-gate     reload an extension from its files in its running host (no downtime)
  kithost hooks import .claude/settings.json
                                         run Claude Code / Gemini CLI / Codex hook scripts, sandboxed
  kithost run --record s.rec -e extensions "deploy"
                                         record what every extension answered; then find the culprit with
  kithost ext bisect s.rec --bad 'blocked:tool_call'
  kithost new my-gate --lang js          scaffold an extension (manifest, code, a test)
  kithost conformance extensions/permission_gate
                                         check an extension against the protocol
  kithost ext status                     extensions of running hosts: state, pid, restarts, latency
  kithost ext logs permission-gate -f    follow an extension's stderr
  kithost schema --write docs/protocol.schema.json
  kithost keys new box2 && kithost worker --listen tcp://10.0.0.5:7600 --key box2.key_secret \
      --allow agent.key -e extensions/permission_gate
                                         run an extension on another machine (docs/remote.md)
"""


def _build_parser() -> argparse.ArgumentParser:
    # --config is accepted before the command and after it (`kithost --config F run ...` and
    # `kithost run --config F ...`): one definition, inherited by every parser. SUPPRESS: a parser that
    # did not see it sets nothing, so a subcommand's parser does not overwrite the value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, metavar="FILE", default=argparse.SUPPRESS,
                        help=f"operator config (TOML; default {default_config_path()})")
    parser = argparse.ArgumentParser(prog="kithost", description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def agent_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", metavar="MODEL",
                       help="litellm model, e.g. openai/gpt-4o (needs its API key) or scripted/NAME with --script; "
                            "default: the resumed session's model, or scripted/<script name> with --script")
        p.add_argument("--script", type=Path, metavar="FILE",
                       help="script file for the offline 'scripted' provider (see docs/scripted-provider.md)")
        add_extension_paths(p, "load this extension too (directory, manifest, or directory of extensions; "
                               "repeatable)")
        which = p.add_mutually_exclusive_group()
        which.add_argument("--session", type=Path, metavar="FILE",
                           help="session file (JSONL) to create or resume; default: a new session kept in "
                                "$XDG_DATA_HOME/kithost/sessions, in a folder of this working directory")
        which.add_argument("-c", "--continue", dest="continue_last", action="store_true",
                           help="continue the session used last in this working directory")
        which.add_argument("--resume", nargs="?", const="", metavar="ID",
                           help="resume a kept session of this working directory by ID (`kithost session list`); "
                                "without ID, pick from a list (on a terminal)")
        which.add_argument("--ephemeral", action="store_true",
                           help="a temporary session, deleted at exit")
        p.add_argument("--cwd", type=Path, metavar="DIR", help="working directory of the tools (default: .)")
        p.add_argument("--disable", action="append", default=[], metavar="NAME",
                       help="do not load this extension (repeatable; adds to the config's `disabled`)")
        p.add_argument("--no-discover", action="store_true",
                       help="load only -e extensions, not ~/.config/kithost/extensions or ./.kithost/extensions")
        add_record_option(p)

    run = sub.add_parser("run", parents=[common], help="run one agent turn",
                         description="Run one agent turn on PROMPT with the extensions loaded, streaming the "
                                     "answer and tool activity. Exit status: 0 done, 1 the turn ended in an error, "
                                     "130 cancelled (Ctrl-C).")
    agent_options(run)
    run.set_defaults(func=_run)
    run.add_argument("--json", action="store_true",
                     help="one JSON object per event on stdout ({\"type\": <event>, ...}), then {\"type\": \"result\"}")
    run.add_argument("prompt", help="the user prompt")
    chat = sub.add_parser("chat", parents=[common], help="interactive agent session",
                          description="Interactive session: type prompts; /help lists the slash commands "
                                      "(/model /fork /new /compact /ext /session /reload /exit and extension "
                                      "commands). Ctrl-C cancels the running turn, not the program; end of input "
                                      "quits. Edited extensions are reloaded (--no-watch: not).")
    agent_options(chat)
    chat.add_argument("--no-watch", action="store_true",
                      help="do not reload an extension when a file in its folder changes (on by default)")
    chat.set_defaults(func=_chat)

    ext = sub.add_parser("ext", parents=[common], help="inspect extensions", description="Inspect extensions.")
    ext_sub = ext.add_subparsers(dest="ext_command", metavar="SUBCOMMAND", required=True)
    ls = ext_sub.add_parser("list", parents=[common], help="extensions found in the search dirs and -e paths",
                            description="List extensions found in the search directories "
                                        "(~/.config/kithost/extensions, ./.kithost/extensions) and -e paths, "
                                        "in load order, without starting them.")
    ls.set_defaults(func=_ext_list)
    add_extension_paths(ls)
    ls.add_argument("--json", action="store_true", help="one JSON document for machines")
    check = ext_sub.add_parser("check", parents=[common], help="start one extension, print its handshake, stop it",
                               description="Start the extension at PATH in its own confined process, granted "
                                           "what its manifest asks (for the check only: no event carries data), "
                                           "complete the handshake, print what it declared, what the host "
                                           "granted and the sandbox layers in force, then stop it. Exit status 1 "
                                           "if it does not start.")
    check.set_defaults(func=_ext_check)
    check.add_argument("path", type=Path, help="extension directory or extension.toml")
    check.add_argument("--json", action="store_true", help="one JSON document for machines")

    trust = ext_sub.add_parser("trust", parents=[common], help="review what an extension asks for and trust it",
                               description="Show what extension NAME asks for (host calls, conversation content, "
                                           "network, paths, starting programs) and, if it changed since it was "
                                           "trusted, what changed; then record the trust for exactly this content "
                                           "of the extension (a changed extension asks again). Asks for "
                                           "confirmation on a terminal; --yes confirms without asking.")
    trust.set_defaults(func=_ext_trust)
    trust.add_argument("name", nargs="?", help="extension name (found in the search dirs and -e paths)")
    add_extension_paths(trust)
    trust.add_argument("--yes", action="store_true", help="trust without asking")
    trust.add_argument("--revoke", action="store_true", help="forget the trust instead")
    trust.add_argument("--list", action="store_true", help="list what is trusted")
    sandbox = ext_sub.add_parser("sandbox", parents=[common], help="the isolation level on this machine and each layer",
                                 description="Probe what confines extensions here (bubblewrap, Landlock, seccomp, "
                                             "cgroups, a dedicated uid), say which layers are in force and, "
                                             "for each missing one, why.")
    sandbox.set_defaults(func=_ext_sandbox)
    sandbox.add_argument("--json", action="store_true", help="one JSON document for machines")

    status = ext_sub.add_parser("status", parents=[common], help="state and counters of extensions in running hosts",
                                description="For every running kithost of this user: each extension's state, "
                                            "pid, uptime, restarts and last reason, RSS, CPU, handler calls "
                                            "answered and notify events delivered, p50/p99 handler latency and "
                                            "its split (time in the host, in transit, in the extension), "
                                            "timeouts, fail-open/closed counts, bad frames and refused host calls.")
    status.set_defaults(func=_ext_status)
    status.add_argument("name", nargs="?", help="only this extension")
    status.add_argument("--json", action="store_true", help="one JSON document for machines")
    status.add_argument("--host", type=int, metavar="PID", help="only the kithost with this pid")
    logs = ext_sub.add_parser("logs", parents=[common], help="an extension's captured stderr/stdout",
                              description="The last lines an extension wrote to stderr/stdout, as captured by "
                                          "its running host (bounded per extension).")
    logs.set_defaults(func=_ext_logs)
    logs.add_argument("name", help="extension name")
    logs.add_argument("-n", "--lines", type=int, default=50, metavar="N", help="how many lines (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    logs.add_argument("--json", action="store_true", help="one JSON document for machines")
    logs.add_argument("--host", type=int, metavar="PID", help="only the kithost with this pid")
    restart = ext_sub.add_parser("restart", parents=[common], help="restart an extension in its running host",
                                 description="Stop the extension's process (if running), forget its crash "
                                             "history and start it again; also brings back a 'dead' extension.")
    restart.set_defaults(func=_ext_restart)
    restart.add_argument("name", help="extension name")
    restart.add_argument("--host", type=int, metavar="PID", help="only the kithost with this pid")
    reload = ext_sub.add_parser("reload", parents=[common], help="reload an extension from its files, no downtime",
                                description="Start the extension's current files beside the running version, "
                                            "switch between two events and stop the old process. If the new "
                                            "version fails to load, the old one keeps serving and the reason is "
                                            "printed (exit status 1). A manifest that asks for more than was "
                                            "granted is refused until `kithost ext trust NAME`.")
    reload.set_defaults(func=_ext_reload)
    reload.add_argument("name", help="extension name")
    reload.add_argument("--json", action="store_true", help="the result as one JSON document")
    reload.add_argument("--host", type=int, metavar="PID", help="only the kithost with this pid")
    add_ext_parsers(ext_sub, common)

    session = sub.add_parser("session", parents=[common], help="kept sessions: list them, repair a torn one",
                             description="Sessions of run and chat are kept in $XDG_DATA_HOME/kithost/sessions "
                                         "(default ~/.local/share/kithost/sessions), one folder per working "
                                         "directory; --continue and --resume open them again.")
    session_sub = session.add_subparsers(dest="session_command", metavar="SUBCOMMAND", required=True)
    slist = session_sub.add_parser("list", parents=[common], help="sessions kept for this working directory",
                                   description="The sessions kept for this working directory, newest first: "
                                               "id, last use, prompts, the first prompt and the file.")
    slist.set_defaults(func=_session)
    slist.add_argument("--all", action="store_true", help="sessions of every working directory")
    slist.add_argument("--cwd", type=Path, metavar="DIR", help="working directory (default: .)")
    slist.add_argument("--json", action="store_true", help="one JSON document for machines")
    repair = session_sub.add_parser("repair", parents=[common], help="drop a torn last line of a session file",
                                    description="A session whose last line was cut by a crash does not open. "
                                                "This drops that line, after copying the file to FILE.bak, and "
                                                "says what it dropped. Any other damage is reported, not touched.")
    repair.set_defaults(func=_session)
    repair.add_argument("file", type=Path, help="the session file (JSONL)")

    schema = sub.add_parser("schema", parents=[common], help="print or write the protocol's JSON Schema",
                            description="The wire protocol as one JSON Schema document, generated from ext_sdk.")
    schema.set_defaults(func=_schema)
    group = schema.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, metavar="FILE", help="write it to FILE")
    group.add_argument("--check", type=Path, metavar="FILE", help="exit 1 if FILE differs from the generated schema")

    conformance = sub.add_parser(
        "conformance", parents=[common],
        help="check an extension against the protocol (scripted scenarios, table of checks)",
        description="Start the extension (a folder with extension.toml, or any command after --) sandboxed as the "
                    "host would, act as the host at the wire level, and drive it through scripted scenarios: "
                    "handshake, version mismatch, every subscription as an event and in a batch, notify batches, "
                    "tools and commands, host calls, heartbeats while a handler runs, bad frames it receives, "
                    "shutdown. Prints each check with pass/fail/skip and why. Exit status 0 only when every "
                    "required check passes (known failures aside).")
    conformance.set_defaults(func=_conformance)
    conformance.add_argument("target", nargs="*", metavar="PATH | -- COMMAND",
                             help="extension folder (or its extension.toml), or -- and the command that starts it")
    conformance.add_argument("--json", action="store_true", help="one JSON document for machines")
    conformance.add_argument("--known-failures", type=Path, metavar="FILE",
                             help="check ids (one a line, # comments) known to fail: they do not fail the run; "
                                  "one that passes again is reported")

    new = sub.add_parser("new", help="scaffold a new extension (manifest, code, a test)",
                         description="Write a new extension NAME in DIR/NAME: its manifest, a tool_call gate with a "
                                     "command, and a test with the SDK's FakeHost. It passes `kithost conformance` "
                                     "as generated.")
    new.set_defaults(func=_new)
    new.add_argument("name", help="extension name (lowercase letters, digits, '.', '_', '-')")
    new.add_argument("--lang", choices=("python", "js"), default="python", help="language (default python)")
    new.add_argument("--dir", type=Path, default=Path("."), metavar="DIR", help="where to create it (default .)")

    demo = sub.add_parser("demo", parents=[common],
                          help="a real agent session with the bundled extensions (offline, ~10 s)",
                          description="Run a scripted agent session (offline provider) with the bundled "
                                      "extensions plus one misbehaving extension: a dangerous command is "
                                      "blocked, a secret redacted, usage reported, the broken extension "
                                      "contained; then show what each extension did.")
    demo.set_defaults(func=_demo)
    demo.add_argument("--quiet", action="store_true", help="print only the summary")
    add_replay_parser(sub, common)
    hooks_command.add_parser(sub, common)
    remote_commands.add_parsers(sub, common)
    return parser


def _ext_list(args: argparse.Namespace) -> int:
    from .exthost.discovery import discover
    from .status_view import running_states

    found = discover(config_of(args).search_dirs, args.extension)
    running = running_states()
    if args.json:
        print(json.dumps({
            "extensions": [{"name": m.name, "version": m.version, "runtime": m.runtime, "events": list(m.events),
                            "permissions": list(m.permissions), "path": str(m.path),
                            "description": m.description, "running": running.get(str(m.path), [])}
                           for m in found.manifests],
            "problems": [{"path": str(p), "error": e} for p, e in found.problems],
        }, indent=2))
        return 1 if found.problems else 0
    if not found.manifests and not found.problems:
        print("no extensions found (search dirs: ~/.config/kithost/extensions, ./.kithost/extensions; add -e PATH)")
        return 0
    from .exthost.sandbox.confine import exec_refused, exec_unguarded
    from .exthost.sandbox.probe import probe
    from .exthost.trust import TrustStore, decide, default_trust_file

    config = config_of(args)
    here = probe(frozenset(str(layer) for layer in config.sandbox.disable))
    print(f"sandbox here: {here.summary()} — `kithost ext sandbox` for each layer")
    store = TrustStore(config.sandbox.trust_file or default_trust_file())
    for m in found.manifests:
        where = "; ".join(running.get(str(m.path), [])) or "not running"
        print(f"{m.name} {m.version}  [{m.runtime}]  {m.path.parent}  ({where})")
        if m.description:
            print(f"    {m.description}")
        print(f"    events: {', '.join(m.events) or '-'}   permissions: {', '.join(m.permissions) or '-'}")
        verdict = decide(m, config, store)
        granted = (f"granted ({verdict.grant.source})" if verdict.grant
                   else f"not trusted: `kithost ext trust {m.name}`")
        print(f"    asks for: {'; '.join(verdict.request.lines())}   → {granted}")
        if exec_refused(m, verdict.grant.access if verdict.grant else verdict.request.access, here):
            weak = "starts as weak ([sandbox] allow_weak)" if config.sandbox.allow_weak else "does not start here"
            print(f"    sandbox: {weak}: {exec_unguarded(m, here)}")
    for _path, error in found.problems:
        print(f"problem: {error}", file=sys.stderr)
    return 1 if found.problems else 0


def _ext_check(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .config import TrustMode
    from .exthost.host import ExtensionHost

    config = config_of(args)  # the check grants what the manifest asks; it never sees the operator's data
    config = replace(config, sandbox=replace(config.sandbox, trust=TrustMode.ALL))
    with ExtensionHost(config) as ext_host:
        ext = ext_host.load(args.path)
        info: dict[str, Any] = ext.info()
        ext_host.unload(ext.name)
        info["state"] = ext.state.value
        info["shutdown"] = ext.last_shutdown.value if ext.last_shutdown else ""
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['name']} {info['version']}: started, handshake ok (protocol {info['protocol']}, {info['sdk']})")
    print(f"  granted: {', '.join(info['granted'])}")
    for sub in info["subscriptions"]:
        print(f"  on {sub['event']:<24} priority {sub['priority']:<4} deadline {sub['deadline_ms']} ms  "
              f"policy {sub['policy']}")
    for tool in info["tools"]:
        print(f"  tool {tool}")
    for command in info["commands"]:
        print(f"  command /{command}")
    sandbox = info["sandbox"]
    print(f"  sandbox: {sandbox['level']} — {', '.join(sandbox['layers']) or 'no layer in force'}")
    for reason in sandbox.get("reasons", []):  # why each missing layer is missing, what is left open
        print(f"    why: {reason}")
    print(f"  stopped ({info['shutdown']})")
    return 0


def _ext_trust(args: argparse.Namespace) -> int:
    from .exthost.discovery import discover
    from .exthost.trust import TrustStore, decide, default_trust_file

    config = config_of(args)
    store = TrustStore(config.sandbox.trust_file or default_trust_file())
    if args.list:
        entries = store.entries()
        if not entries:
            print(f"nothing trusted yet ({store.path})")
        for path, entry in sorted(entries.items()):
            print(f"{entry.get('name')}  {path}  (trusted {entry.get('at')})")
        return 0
    if not args.name:
        raise HostError("name the extension to trust (or use --list)")
    found = discover(config.search_dirs, args.extension)
    matches = [m for m in found.manifests if m.name == args.name]
    if not matches:
        raise HostError(f"no extension named {args.name!r} in the search dirs or -e paths")
    manifest = matches[0]
    if args.revoke:
        print(f"{manifest.name}: trust {'revoked' if store.revoke(manifest.path) else 'was not recorded'}")
        return 0
    verdict = decide(manifest, replace_trust_mode_ask(config), store)
    print(f"{manifest.name} {manifest.version}  ({manifest.path})")
    for line in verdict.request.lines():
        print(f"  asks for: {line}")
    for change in verdict.changes:
        print(f"  changed since trusted: {change}")
    if verdict.grant is not None and verdict.grant.source in ("trusted", "config"):
        print(f"  already granted ({verdict.grant.source})")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise HostError("not confirmed: run it on a terminal, or pass --yes")
        if input(f"trust {manifest.name} with this? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not trusted")
            return 1
    store.record(manifest, verdict.request)
    print(f"trusted {manifest.name} (recorded in {store.path}; a change to its files asks again)")
    return 0


def replace_trust_mode_ask(config: HostConfig) -> HostConfig:
    """``config`` with ``[sandbox] trust = "ask"`` (``ext trust`` shows what a real load would decide)."""
    from dataclasses import replace

    from .config import TrustMode

    return replace(config, sandbox=replace(config.sandbox, trust=TrustMode.ASK))


def _ext_sandbox(args: argparse.Namespace) -> int:
    from .exthost.sandbox.probe import probe

    config = config_of(args)
    found = probe(frozenset(str(layer) for layer in config.sandbox.disable))
    if args.json:
        print(json.dumps({**found.as_dict(), "allow_weak": config.sandbox.allow_weak}, indent=2))
        return 0
    print(found.report())
    if str(found.level) == "weak" and not config.sandbox.allow_weak:
        print("extensions do not start at this level unless the config says [sandbox] allow_weak = true")
    return 0


def _ext_status(args: argparse.Namespace) -> int:
    from .status_view import show_status

    return show_status(args.name, args.json, pid=args.host)


def _ext_logs(args: argparse.Namespace) -> int:
    from .status_view import follow_logs, show_logs

    if args.follow:
        return follow_logs(args.name, args.lines, pid=args.host)
    return show_logs(args.name, args.lines, args.json, pid=args.host)


def _ext_reload(args: argparse.Namespace) -> int:
    from .exthost.reload_cli import reload_extension

    return reload_extension(args.name, pid=args.host, as_json=args.json)


def _ext_restart(args: argparse.Namespace) -> int:
    from .status_view import restart_extension

    return restart_extension(args.name, pid=args.host)


def _schema(args: argparse.Namespace) -> int:
    from ext_sdk.jsonschema import render

    text = render()
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text, encoding="utf-8")
        print(f"wrote {args.write}")
        return 0
    if args.check:
        try:
            current = args.check.read_text(encoding="utf-8")
        except OSError as exc:
            raise HostError(f"{args.check}: cannot read: {exc.strerror}") from exc
        if current != text:
            print(f"{args.check} is out of date; run: kithost schema --write {args.check}", file=sys.stderr)
            return 1
        print(f"{args.check} is up to date")
        return 0
    sys.stdout.write(text)
    return 0


def _agent_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    # No --model: AgentSession.open takes the session's model, or scripted/<script name> for a new session.
    from .agent.cli.sessions import SessionOptions, choose_session

    config = config_of(args)
    if args.disable:
        from dataclasses import replace

        config = replace(config, disabled=(*config.disabled, *args.disable))
    options = SessionOptions(args.session, args.continue_last, args.resume, args.ephemeral)
    session = choose_session(options, args.cwd or Path.cwd(), interactive=sys.stdin.isatty())
    return {"model": args.model, "script": args.script, "extensions": tuple(args.extension), "session": session,
            "cwd": args.cwd, "config": config, "discover": not args.no_discover, "record": args.record}


def _run(args: argparse.Namespace) -> int:
    from .agent.cli import RunArgs, run_command

    return run_command(RunArgs(prompt=args.prompt, json=args.json, **_agent_kwargs(args)))


def _chat(args: argparse.Namespace) -> int:
    from .agent.cli import ChatArgs, chat_command

    return chat_command(ChatArgs(watch=not args.no_watch, **_agent_kwargs(args)))


def _session(args: argparse.Namespace) -> int:
    from .agent.cli.sessions import session_list_command, session_repair_command

    if args.session_command == "repair":
        return session_repair_command(args.file)
    return session_list_command(args.cwd or Path.cwd(), args.all, args.json)


def _conformance(args: argparse.Namespace) -> int:
    from .conformance import conformance_command

    return conformance_command(args.target, config_of(args), args.json, args.known_failures)


def _new(args: argparse.Namespace) -> int:
    from .scaffold import scaffold

    target = scaffold(args.name, args.lang, args.dir)
    test = "node --test" if args.lang == "js" else f"python -m pytest {target}"
    print(f"created {target}\n  check it:   kithost conformance {target}\n  test it:    {test}\n"
          f"  run it:     kithost ext trust {args.name} -e {target} && kithost chat -e {target}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(quiet=args.quiet)


#: Exit status when stdout was closed early (``… | head``): what a shell reports for a death by SIGPIPE
#: (``run`` and ``chat`` return it too when their stdout goes away mid-turn).
EXIT_STDOUT_CLOSED = 128 + 13


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kithost`` console script."""
    try:
        status = _main(argv)
        sys.stdout.flush()  # output still buffered must fail here, not at interpreter exit
    except BrokenPipeError:  # the reader of stdout went away (`kithost … | head`): stop quietly
        _stdout_gone()
        return EXIT_STDOUT_CLOSED
    return status


def _stdout_gone() -> None:
    """Point stdout at /dev/null so the interpreter's own flush at exit does not complain again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file (tests): nothing will be flushed to a pipe at exit
        pass


def _main(argv: list[str] | None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"kithost {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args))  # each parser names its function (set_defaults): the registry is the parser
    except HostError as exc:
        print(f"kithost: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kithost: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
