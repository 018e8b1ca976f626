"""``AgentSession``: the agent with its extensions and its session file — what ``kithost run``/``chat`` drive.

::

    with AgentSession.open("scripted/demo", Path("scenario.json"), [Path("extensions/permission_gate")],
                           None, Path.cwd(), on_event=print_event) as session:
        result = session.run("fix the tests")
        print(result.response, result.stop_reason)

Lifecycle contract:

* :meth:`AgentSession.open` checks everything a user can get wrong first and
  raises one :class:`~host.errors.HostError` subclass with one clear sentence
  (missing or invalid script, a script with a non-scripted model, unknown
  model or missing API key, malformed session file or state sidecar, an
  extension that does not start) — then starts the extension host with the
  state sidecar beside the session file (``<session>.ext-state.json``), loads
  the extensions, registers their tools beside the built-ins, and fires
  ``session_start`` (a resumed session too). ``session_path=None`` makes an
  ephemeral session in a temporary directory, removed by :meth:`close`.
* :meth:`run` runs one turn, then the follow-up turns of messages queued by
  extensions (``ctx.send_message`` from ``agent_end`` and the like; source
  ``queue``), at most ``AgentConfig.max_followup_turns``.
* :meth:`new_session` / :meth:`switch_session` fire ``before_session_switch``
  (a cancel: nothing happens), then ``session_shutdown`` for the old session,
  move the loop and the extensions' state sidecar to the new file, and fire
  ``session_start``.
* :meth:`close` fires ``session_shutdown`` (reason ``close``), waits briefly for
  notify deliveries, stops every extension and closes the file.

The event sink ``on_event(type, data)`` receives every event the agent emits
(kit's event name as ``type``), in order, before extensions see it; the
window events (``context_prepare``/``prepare_step``) only when an extension
subscribed or ``AgentConfig.emit_windows`` is set.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import HostConfig
from ..errors import HostError, ManifestError
from ..exthost.host import AskTrust, ExtensionCommand, ExtensionHost, HostNotice, LoadReport
from ..exthost.services import PromptUI, StatusSink
from ..exthost.state_store import StateStore
from ..exthost.trust import content_digest
from ..forensics.record import ExtensionRecord, Recorder
from .agent_config import AgentConfig
from .compaction import CompactionResult
from .context_messages import message_text
from .emitter import Emitter, EventSink
from .errors import AgentBusyError, AgentError, ModelError
from .llm.models import check_model
from .loop import AgentLoop, ForkResult
from .scripted import SCRIPT_ENV, is_scripted, load_script
from .services import AgentServices, PrintSink
from .session_tree import SessionTree
from .tools import ProxyTool, ToolContext, ToolRegistry, ToolResult
from .turn_result import TurnResult

__all__ = ["AgentSession", "SwitchResult"]

log = logging.getLogger("kithost.agent")


@dataclass(frozen=True, slots=True)
class SwitchResult:
    """What :meth:`AgentSession.new_session` / :meth:`AgentSession.switch_session` did."""

    switched: bool
    #: Why not (the extension's reason), else ''.
    reason: str = ""
    #: The session file now in use.
    path: Path | None = None
    #: The turn run for ``initial_prompt``, if any.
    turn: TurnResult | None = None


def _llm_params(model: str, script: Path | None, config: AgentConfig) -> dict[str, Any]:
    params = dict(config.llm_params)
    if script is not None:
        if not is_scripted(model):
            raise AgentError(f"--script plays scripted models only; use --model scripted/<name> (not {model!r})")
        load_script(script)  # a missing or invalid script is a clear error now, not at the first model call
        params["script"] = str(script)
    elif is_scripted(model) and not params.get("script"):
        env = os.environ.get(SCRIPT_ENV)
        if not env:
            raise AgentError(f"model {model!r} plays a script: pass --script FILE (or set {SCRIPT_ENV})")
        load_script(env)
    return params


class AgentSession:
    """An agent loop, its extension host and its session file, opened and closed together."""

    def __init__(self, host: ExtensionHost, loop: AgentLoop, services: AgentServices, emitter: Emitter,
                 ephemeral_dir: Path | None) -> None:
        #: The extension host (its ``state`` is the session's sidecar).
        self.host = host
        #: The agent loop.
        self.loop = loop
        #: What extensions' ``ctx`` calls reach.
        self.services = services
        self.emitter = emitter
        self._ephemeral = ephemeral_dir
        self._closed = False
        self._recorder: Recorder | None = None

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, model: str | None, script: Path | None, extensions: Sequence[Path], session_path: Path | None,
             cwd: Path, config: HostConfig | None = None, *, agent_config: AgentConfig | None = None,
             on_event: EventSink | None = None, on_print: PrintSink | None = None,
             discover: bool = False, ask_trust: AskTrust | None = None,
             on_notice: HostNotice | None = None, record: Path | None = None,
             prompts: PromptUI | None = None, on_status: StatusSink | None = None) -> AgentSession:
        """Open (create or resume) a session; see the module doc. ``model=None`` resumes the session's model;
        a session that has none yet (a new one) gets ``scripted/<script name>`` when ``script`` is given.

        ``discover`` also loads extensions from the config's search directories
        (before ``extensions``). ``ask_trust`` is asked about an extension that wants
        more than it was granted (an interactive prompt). ``on_notice`` hears handler
        failures, state changes and restarts of extensions as they happen
        (:data:`~host.exthost.host.HostNotice`). ``record`` writes every dispatched event, with each
        handler's result and timing, to that file (:mod:`host.forensics.record`). ``prompts`` answers an
        extension's ``ctx.select/confirm/input`` (default: headless, cancelled); ``on_status`` shows its status
        line. Raises :class:`~host.errors.HostError` subclasses.
        """
        agent_config = agent_config or AgentConfig()
        cwd = Path(cwd).resolve()
        if not cwd.is_dir():
            raise AgentError(f"working directory {cwd} does not exist")
        # Check what the user can get wrong before creating anything (no stray files on a typo).
        resumed = SessionTree.open(session_path) if session_path is not None and session_path.exists() else None
        tree: SessionTree | None = resumed
        ephemeral: Path | None = None
        host: ExtensionHost | None = None
        recorder: Recorder | None = None
        try:
            chosen = model or (resumed.current_model() if resumed is not None else None)
            if not chosen and script is not None:
                chosen = f"scripted/{script.stem}"
            if not chosen:
                raise ModelError("no model given; use e.g. --model openai/gpt-4o, or --script FILE (model "
                                 "scripted/<its name>)")
            params = _llm_params(chosen, script, agent_config)
            check_model(chosen, params)
            agent_config = replace(agent_config, llm_params=params)
            if tree is None:
                if session_path is None:
                    ephemeral = Path(tempfile.mkdtemp(prefix="kithost-session-"))
                    session_path = ephemeral / "session.jsonl"
                tree = SessionTree.create(session_path, cwd=cwd)
                tree.append_model_change(chosen, "", "config")
            start_model = tree.current_model() or chosen
            services = AgentServices(on_print, str(cwd), prompts=prompts, on_status=on_status)
            host = ExtensionHost(replace(config or HostConfig(), state_path=tree.state_path), services, ask_trust,
                                 on_notice)
            report = host.load_discovered(extensions, search=discover)
            _left_out(host, report, on_print)
            recorder = _start_recording(host, record) if record is not None else None
            tools = ToolRegistry(cwd)
            _register_extension_tools(host, tools)
            emitter = Emitter(host, on_event, emit_windows=agent_config.emit_windows)
            loop = AgentLoop(model=start_model, tree=tree, tools=tools, emitter=emitter, config=agent_config)
            services.attach(loop)
        except BaseException:
            if host is not None:
                host.close()
            if recorder is not None:
                recorder.close()
            if tree is not None:
                tree.close()
            if ephemeral is not None:
                shutil.rmtree(ephemeral, ignore_errors=True)
            raise
        session = cls(host, loop, services, emitter, ephemeral)
        session._recorder = recorder
        services.serve_sessions(session.new_session)
        emitter.emit("session_start", {"session_id": tree.session_id})
        if resumed is not None and model and model != start_model:
            loop.set_model(model, "user")
        return session

    # ------------------------------------------------------------------ views

    @property
    def tree(self) -> SessionTree:
        """The session file in use."""
        return self.loop.tree

    @property
    def path(self) -> Path:
        """Path of the session file in use."""
        return self.tree.path

    @property
    def model(self) -> str:
        """The current model."""
        return self.loop.model

    @property
    def ephemeral(self) -> bool:
        """Whether the session file is temporary (removed by :meth:`close`)."""
        return self._ephemeral is not None

    def user_messages(self) -> list[tuple[str, str]]:
        """``(entry id, text)`` of the user messages on the current branch, oldest first (fork targets)."""
        out: list[tuple[str, str]] = []
        for entry in self.tree.branch():
            message = entry.data.get("message") if entry.type == "message" else None
            if isinstance(message, dict) and message.get("role") == "user":
                out.append((entry.id, message_text(message)))
        return out

    def extensions_info(self) -> list[dict[str, Any]]:
        """Status of each loaded extension (:meth:`RunningExtension.info`)."""
        return [ext.info() for ext in self.host.extensions()]

    # ------------------------------------------------------------------ turns

    def run(self, prompt: str, source: str = "cli") -> TurnResult:
        """One turn for ``prompt``, then queued follow-ups (in :attr:`TurnResult.followups`)."""
        result = self.loop.run_turn(prompt, source)
        followups = self.run_queued()
        return replace(result, followups=tuple(followups)) if followups else result

    def run_queued(self) -> list[TurnResult]:
        """Turns for messages queued while idle (``ctx.send_message``), oldest first, bounded."""
        out: list[TurnResult] = []
        for _ in range(self.loop.config.max_followup_turns):
            if not len(self.loop.steering):
                self._wait_for_steering_extensions()
            steer = self.loop.steering.pop()
            if steer is None:
                break
            out.append(self.loop.run_turn(steer.text, "queue"))
        return out

    def _wait_for_steering_extensions(self) -> None:
        """Let notify handlers of extensions that may steer (granted ``agent``) run, briefly."""
        if any("agent" in ext.granted for ext in self.host.extensions()):
            self.host.flush(self.loop.config.followup_wait_s)

    def cancel(self) -> None:
        """Cancel the running turn (no-op when idle)."""
        self.loop.cancel()

    def steer(self, text: str) -> None:
        """Queue a user message (injected into the running turn, or the next turn)."""
        self.loop.steer(text, "user")

    def set_model(self, model: str) -> bool:
        """Switch the model (``model_change`` source ``user``); raises :class:`ModelError` if unusable."""
        check_model(model, self.loop.config.llm_params)
        return self.loop.set_model(model, "user")

    def compact(self) -> CompactionResult:
        """Manual compaction."""
        return self.loop.compact()

    def fork(self, entry_id: str | None) -> ForkResult:
        """Branch at ``entry_id`` (see :meth:`AgentLoop.fork`)."""
        return self.loop.fork(entry_id)

    # ------------------------------------------------------------------ sessions

    def new_session(self, initial_prompt: str = "", reason: str = "new") -> SwitchResult:
        """Start a new session file beside the current one (``reason``: ``new`` or ``clear``)."""
        directory = self.path.parent
        return self._switch(reason, initial_prompt, lambda: self.tree.new_session(
            directory / f"session-{os.urandom(4).hex()}.jsonl" if self._ephemeral else None))

    def switch_session(self, path: Path) -> SwitchResult:
        """Resume another session file."""
        path = Path(path)
        if not path.exists():
            raise AgentError(f"session file {path} does not exist")
        return self._switch("switch", "", lambda: SessionTree.open(path))

    def _switch(self, reason: str, initial_prompt: str, make_tree: Callable[[], SessionTree]) -> SwitchResult:
        if self.loop.busy:
            raise AgentBusyError("cannot switch sessions while a turn is running; wait for it or cancel it")
        out = self.emitter.emit("before_session_switch", {"reason": reason, "initial_prompt": initial_prompt})
        if out.stopped:
            return SwitchResult(False, out.reason or "session switch cancelled by an extension")
        tree = make_tree()
        try:
            StateStore(tree.state_path)  # a malformed sidecar stops the switch before anything changed
        except HostError:
            tree.close()
            raise
        self.emitter.emit("session_shutdown", {"reason": reason})
        self.host.flush(self.loop.config.shutdown_flush_s)
        old = self.loop.replace_tree(tree)
        self.host.state.retarget(tree.state_path)  # atomic for writers on the notify thread
        old.close()
        if tree.current_model() is None:
            tree.append_model_change(self.loop.model, "", "config")
        self.emitter.emit("session_start", {"session_id": tree.session_id})
        turn = self.run(initial_prompt, "interactive") if initial_prompt else None
        return SwitchResult(True, "", tree.path, turn)

    # ------------------------------------------------------------------ extension commands

    def extension_commands(self) -> dict[str, str]:
        """Slash command name → extension providing it."""
        return {c.name: c.extension for c in self.host.commands()}

    def extension_command_list(self) -> list[ExtensionCommand]:
        """Every extension slash command with its description and extension, in load order."""
        return list(self.host.commands())

    def run_extension_command(self, name: str, args: str = "") -> tuple[str, bool]:
        """Run an extension's slash command; ``(output, is_error)``."""
        owner = self.extension_commands().get(name.lstrip("/"))
        if owner is None:
            raise AgentError(f"no extension command /{name.lstrip('/')}")
        return self.host.run_command(owner, name.lstrip("/"), args)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """``session_shutdown``, then stop the extensions and close the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.loop.cancel()
        try:
            self.services.join_subagents(self.loop.config.shutdown_flush_s)  # background subagents end first
            self.emitter.emit("session_shutdown", {"reason": "close"})
            self.host.flush(self.loop.config.shutdown_flush_s)
        finally:
            self.host.close()
            if self._recorder is not None:
                self._recorder.close()
            self.tree.close()
            if self._ephemeral is not None:
                shutil.rmtree(self._ephemeral, ignore_errors=True)

    def __enter__(self) -> AgentSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _start_recording(host: ExtensionHost, path: Path) -> Recorder:
    """Record every event ``host`` dispatches from now on to ``path`` (``--record``)."""
    loaded = [ExtensionRecord(ext.name, ext.manifest.version, str(ext.manifest.directory),
                              content_digest(ext.manifest.directory)[0]) for ext in host.extensions()]
    recorder = Recorder(path, loaded)
    host.observe(recorder)
    return recorder


def _register_extension_tools(host: ExtensionHost, tools: ToolRegistry) -> None:
    """Each extension tool as a :class:`ProxyTool` running inside its extension (built-ins win a clash)."""
    for decl in host.tools():
        def call(args: dict[str, Any], ctx: ToolContext, ext: str = decl.extension, name: str = decl.name
                 ) -> ToolResult:
            content, is_error = host.invoke_tool(ext, name, args, cancel=ctx.cancel)
            return ToolResult(content, is_error, {"extension": ext})

        try:
            tools.register(ProxyTool(decl.name, decl.description, decl.parameters, call, "other", decl.extension))
        except ValueError as exc:
            log.warning("extension %s: tool %r not offered to the model: %s", decl.extension, decl.name, exc)


def _left_out(host: ExtensionHost, report: LoadReport, on_print: PrintSink | None) -> None:
    """One broken extension never stops the agent, unless it is required (``HostConfig.is_required``):
    raise for the first required failure; report the others and go on without them."""
    for name, error in report.failed:
        if isinstance(error, ManifestError) and not Path(name).exists():
            raise error  # a path that is not there is a typo on the command line, not a broken extension
        if name in report.required:
            raise HostError(f"{error} — it is required (it guards a gate, failing closed); fix it, or start "
                            f"without it: --disable {name}, or [required] \"{name}\" = false in the config") from error
    host.note_load_failures(report)
    for name, error in report.failed:
        text = f"left out: {error}"
        if on_print is not None:
            on_print(name, "error", text)
        else:
            log.warning("extension %s %s", name, text)
