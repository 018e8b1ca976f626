"""``ExtensionHost``: the embedding API — load extensions, emit events, read results.

A few lines are enough::

    from host import ExtensionHost

    with ExtensionHost() as ext_host:
        ext_host.load("extensions/permission_gate")
        out = ext_host.emit("tool_call", {...})
        if out.stopped:
            print("blocked:", out.reason)

The application can add trusted in-process handlers that run in the same
dispatch loop, order and modes as extension handlers (kit's SDK hooks)::

    unregister = ext_host.on("tool_result", redact, priority=HIGH)

Threads: ``emit`` may be called from any thread; gate/chain handlers run on
the caller's thread; notify events are delivered by one background thread.

Hot reload (:meth:`ExtensionHost.reload`, :meth:`ExtensionHost.watch`; the
rules are in :mod:`.reload`) swaps an extension's process between two events
with no downtime. A replaced process — restarted or reloaded — gets the last
``session_start`` this host dispatched (unless a ``session_shutdown`` came
after it) before any other event, and only that extension gets it.
``close()`` stops every extension (shutdown ladder) and removes the private
socket directory; it also runs at interpreter exit.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from ext_sdk.combine import Failure, FailureKind, Outcome
from ext_sdk.events import Policy, custom_event_name

from ..config import Access, HostConfig, Remote, RestartMode
from ..errors import ExtensionStartError, HostError, ManifestError, UnknownExtensionError
from .discovery import discover
from .dispatch import NORMAL, Dispatcher, DispatchObserver, InProcessHook
from .extension import Hooks, RemoteLauncher, RunningExtension, spawn_all
from .hostcalls import HostCallRouter, Options
from .manifest import Manifest, load_manifest
from .notify import NotifyPump
from .ops import OpsServer
from .orphans import sweep_orphans
from .peers import PeerGate
from .reload import ReloadFailed, ReloadResult, describe_changes, regrant
from .sandbox.confine import Confiner
from .services import HostServices, LocalServices
from .state_store import StateStore
from .supervisor import Supervisor
from .trust import Grant, Request, TrustStore, Verdict, decide, decide_remote, default_trust_file
from .watch import ExtensionWatcher

__all__ = ["AskTrust", "ExtensionCommand", "ExtensionHost", "ExtensionTool", "HostNotice", "LoadReport",
           "runtime_base"]

log = logging.getLogger("kithost.host")

#: ZAP domain of the host's operator socket (every process of the user but the extensions').
_OPS_DOMAIN = "kithost/ops"

#: ``ask(manifest, verdict) -> bool``: asked when an extension that is not trusted wants more than the
#: defaults (an interactive prompt); ``True`` records the trust and starts it.
AskTrust = Callable[[Manifest, Verdict], bool]

#: ``notice(kind, data)``: what happens to extensions besides events, as it happens (any thread; keep it
#: quick, do not call back into the host; an exception is logged, never raised):
#:
#: * ``handler_failure`` — ``{"extension", "event", "kind", "detail", "policy"}``: a gate, chain or notify
#:   handler (or an in-process hook, ``extension`` ``host:<function>``) failed and its policy was applied;
#: * ``extension_state`` — ``{"extension", "old", "new", "reason"}``: every state change;
#: * ``restart`` — ``{"extension", "restarts", "pid"}``: a restarted extension is ready again;
#: * ``reload`` — :meth:`ReloadResult.to_json` of every reload, whatever started it (failed ones too).
HostNotice = Callable[[str, dict[str, Any]], None]


def runtime_base() -> Path:
    """A short private base directory for sockets (ipc paths must stay under ~100 bytes)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.access(xdg, os.W_OK) and len(xdg) < 40:
        return Path(xdg) / "kithost"
    return Path(tempfile.gettempdir()) / f"kithost-{os.getuid()}"


def private_runtime_dir(base: Path) -> Path:
    """A fresh private directory under ``base`` (0700, owned by this user; refused otherwise)."""
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = base.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise HostError(f"{base}: runtime directory must be owned by you with mode 0700 "
                        f"(it is uid {st.st_uid}, mode {oct(st.st_mode & 0o777)}); remove it or set runtime_dir")
    return Path(tempfile.mkdtemp(prefix="h", dir=base))


@dataclass(frozen=True, slots=True)
class ExtensionTool:
    """A tool an extension provides to the model."""

    name: str
    description: str
    #: JSON Schema of the arguments.
    parameters: dict[str, Any]
    #: Name of the extension that runs it.
    extension: str


@dataclass(frozen=True, slots=True)
class ExtensionCommand:
    """A slash command an extension provides."""

    name: str
    description: str
    extension: str


@dataclass
class LoadReport:
    """What :meth:`ExtensionHost.load_many` did."""

    loaded: list[RunningExtension] = field(default_factory=list)
    #: ``(name or path, error)`` of every extension that did not start.
    failed: list[tuple[str, HostError]] = field(default_factory=list)
    #: Names skipped because the config disables them.
    disabled: list[str] = field(default_factory=list)
    #: Names (of ``failed``) the agent must not start without (``HostConfig.is_required``).
    required: set[str] = field(default_factory=set)


class ExtensionHost:
    """Loads extensions into sandboxable processes and dispatches events to them."""

    def __init__(self, config: HostConfig | None = None, services: HostServices | None = None,
                 ask: AskTrust | None = None, notice: HostNotice | None = None) -> None:
        self.config = config or HostConfig()
        self._notice = notice
        self.services: HostServices = services or LocalServices()
        #: What the operator granted each extension, pinned to its content (``kithost ext trust``).
        self.trust = TrustStore(self.config.sandbox.trust_file or default_trust_file())
        self._ask = ask
        self.state = StateStore(self.config.state_path)
        self._zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._gate = PeerGate(self._zctx)
        self._gate.guard_operators(_OPS_DOMAIN)
        #: Confinement of every launch (probes the machine on first use).
        self.confiner = Confiner(self.config)
        base = self.config.runtime_dir or runtime_base()
        self._runtime = private_runtime_dir(base)
        # Orphans of hosts that died hard (kill -9): swept in the background, start-up does not wait.
        threading.Thread(target=self._sweep, args=(base,), name="kithost-sweep", daemon=True).start()
        self._extensions: dict[str, RunningExtension] = {}
        #: Links to the remote workers of ``[remote."NAME"]`` extensions (closed after they stop).
        self._remote_sources: list[Any] = []
        #: Extensions that failed to load and were left out (``note_load_failures``), for ``ext status``.
        self.load_failures: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._pump = NotifyPump(self.extensions)
        self._dispatch = Dispatcher(self.config, self._pump.wake,
                                    on_failure=self._handler_failed if notice is not None else None)
        self._router = HostCallRouter(self.state, self.services, self._emit_custom, Options(self.config.options),
                                      reload=self.reload_later)
        #: The last ``session_start`` payload dispatched (``None`` after a ``session_shutdown``).
        self._session_start: dict[str, Any] | None = None
        self._hooks = Hooks(queued=self._pump.wake, ready_again=self._ready_again,
                            needs_supervision=self._wake_supervisor, state_changed=self._state_changed,
                            last_session_start=lambda: self._session_start,
                            notify_failed=self._notify_failed)
        #: One reload at a time (watcher, operator, application); also held by ``close`` while it waits for one.
        self._reload_lock = threading.Lock()
        #: The last reload of each extension (``ext status``).
        self.last_reloads: dict[str, ReloadResult] = {}
        self._watcher: ExtensionWatcher | None = None
        self._closed = False
        self._pump.start()
        self._ops = OpsServer(self._zctx, self._runtime, {
            "status": lambda args: {"pid": os.getpid(), "extensions": [e.info() for e in self.extensions()],
                                    "failed": list(self.load_failures),
                                    "reloads": {n: r.to_json() for n, r in list(self.last_reloads.items())},
                                    "watching": self.watching,
                                    "ops_rejected": dict(self._ops.rejected),
                                    "ops_refused_extensions": self._gate.operator_refusals},
            "logs": self._ops_logs,
            "restart": lambda args: self.restart(str(args.get("name"))),
            "reload": lambda args: self.reload(str(args.get("name"))).to_json(),
        }, zap_domain=_OPS_DOMAIN)
        self._ops.start()
        self._supervisor = Supervisor(self._supervise)
        self._supervisor.start()
        # At interpreter exit, close a host the application forgot to close.
        self._finalizer = weakref.finalize(self, ExtensionHost._atexit_close, weakref.ref(self))

    def _sweep(self, base: Path) -> None:
        """Clean up after hosts that died hard: their processes, then their cgroups."""
        sweep_orphans(base)
        try:
            self.confiner.sweep()
        except OSError as exc:
            log.warning("sweeping stale cgroups failed: %s", exc)

    # ------------------------------------------------------------------ loading

    def load(self, path: str | Path | Manifest) -> RunningExtension:
        """Start one extension (a directory with ``extension.toml``, the manifest, or a :class:`Manifest`).

        Raises :class:`ManifestError` or :class:`ExtensionStartError`.
        """
        report = self.load_many([path])
        if report.failed:
            raise report.failed[0][1]
        return report.loaded[0]

    def load_many(self, paths: Iterable[str | Path | Manifest]) -> LoadReport:
        """Start several extensions concurrently; load order is the order given."""
        report = LoadReport()
        started: list[RunningExtension] = []
        # Every manifest is read and every trust decision made before the first process starts: that work
        # then does not compete for the CPU with the processes already starting.
        ready: list[tuple[Manifest, Grant]] = []
        for item in paths:
            try:
                manifest = item if isinstance(item, Manifest) else load_manifest(Path(item))
            except ManifestError as exc:
                report.failed.append((str(item), exc))
                continue
            if manifest.name in self.config.disabled:
                report.disabled.append(manifest.name)
                continue
            if self.config.is_required(manifest.name, manifest.events):
                report.required.add(manifest.name)
            verdict = decide(manifest, self.config, self.trust)
            if verdict.grant is None and self._ask is not None and self._ask(manifest, verdict):
                self.trust.record(manifest, verdict.request)
                verdict = decide(manifest, self.config, self.trust)
            if verdict.grant is None:
                report.failed.append((manifest.name, ExtensionStartError(manifest.name, f"not trusted: "
                                                                                         f"{verdict.reason}")))
                continue
            ready.append((manifest, verdict.grant))
        for manifest, grant in ready:
            self._spawn(manifest, grant, report, started, prepare_only=True)
        errors = spawn_all(started)  # then every process, side by side
        report.failed += [(ext.name, error) for ext, error in zip(started, errors, strict=True) if error is not None]
        return self._finish([ext for ext, error in zip(started, errors, strict=True) if error is None], report)

    def _spawn(self, manifest: Manifest, grant: Grant, report: LoadReport, started: list[RunningExtension],
               remote: RemoteLauncher | None = None, prepare_only: bool = False) -> None:
        """Register ``manifest``'s extension (unless its name is taken) and spawn it (``prepare_only``: only
        :meth:`RunningExtension.prepare` it; the caller spawns it); failures go to ``report``."""
        with self._lock:
            if manifest.name in self._extensions:
                report.failed.append((manifest.name, HostError(f"{manifest.name}: an extension with this name is "
                                                               "already loaded")))
                return
            ext = RunningExtension(manifest, self._dispatch.next_load_order(), self.config, self._router,
                                   self._zctx, self._gate, self.confiner, self._runtime, grant, self._hooks,
                                   remote=remote, next_slot=self._dispatch.next_load_order)
            self._extensions[manifest.name] = ext
        try:
            if prepare_only:
                ext.prepare()
            else:
                ext.spawn()
            started.append(ext)
        except ExtensionStartError as exc:
            report.failed.append((manifest.name, exc))

    def _finish(self, started: list[RunningExtension], report: LoadReport) -> LoadReport:
        """Await each spawned extension's handshake, in load order; route the ones that made it.

        Every process is handed its secret first (each as soon as it waits for it), then the handshakes are
        awaited: the processes load their code and connect side by side, not one after another."""
        for ext in started:
            ext.hand_over()
        for ext in started:
            try:
                ext.finish_start()
            except ExtensionStartError as exc:
                report.failed.append((ext.name, exc))
                continue
            self._dispatch.route_extension(ext)
            report.loaded.append(ext)
        return report

    def load_discovered(self, explicit: Sequence[str | Path] = (), *, search: bool = True) -> LoadReport:
        """Load every extension from the search directories (unless ``search`` is false), then ``explicit``
        paths — each a directory with an ``extension.toml``, the manifest, or a directory of extensions."""
        found = discover(self.config.search_dirs if search else (), [Path(p) for p in explicit])
        report = self.load_many(found.manifests)
        report.failed[:0] = [(str(path), ManifestError(message)) for path, message in found.problems]
        if self.config.remote:
            remote = self.load_remotes()
            report.loaded += remote.loaded
            report.failed += remote.failed
            report.disabled += remote.disabled
            report.required |= remote.required
        return report

    def load_remotes(self) -> LoadReport:
        """Load every ``[remote."NAME"]`` extension of the config: each runs on its worker (``kithost worker``),
        the rest — events, deadlines, policies, restarts, state, ``ext status`` — is as for a local one.

        What it may subscribe to and ask for comes from the worker's ``describe``; the host-call grant from
        :func:`.trust.decide_remote`. A worker that cannot be reached fails that extension's load (with the
        reason), like an extension that does not start.
        """
        from ..remote.handle import RemoteSource  # the remote layer loads only when the config names a worker

        report = LoadReport()
        started: list[RunningExtension] = []
        for name, remote in self.config.remote.items():
            if name in self.config.disabled:
                report.disabled.append(name)
                continue
            try:
                source = RemoteSource(self._zctx, name, remote, self.config.supervision_for(name), self._runtime,
                                      self._hooks.needs_supervision)
            except HostError as exc:
                report.failed.append((name, ExtensionStartError(name, f"remote: {exc}")))
                continue
            self._remote_sources.append(source)
            try:
                manifest = self._remote_manifest(name, remote, source.describe(self.config.deadlines.start_ms / 1000))
            except HostError as exc:
                report.failed.append((name, ExtensionStartError(name, f"remote: {exc}")))
                continue
            if self.config.is_required(name, manifest.events):
                report.required.add(name)
            verdict = decide_remote(manifest, self.config)
            if verdict.grant is None:
                report.failed.append((name, ExtensionStartError(name, f"not trusted: {verdict.reason}")))
                continue
            self._spawn(manifest, verdict.grant, report, started, remote=source)
        return self._finish(started, report)

    def _remote_manifest(self, name: str, remote: Remote, offer: dict[str, Any]) -> Manifest:
        """The host's manifest of a remote extension, from its worker's ``describe`` (checked like a file's)."""
        events, permissions = offer.get("events"), offer.get("permissions")
        if not (isinstance(events, list) and all(isinstance(e, str) for e in events)
                and isinstance(permissions, list) and all(isinstance(p, str) for p in permissions)):
            raise HostError(f"worker {remote.worker} described {name!r} with malformed events or permissions")
        try:
            restart = RestartMode(str(offer.get("restart") or RestartMode.ON_FAILURE))
        except ValueError:
            restart = RestartMode.ON_FAILURE
        where = self._runtime / f"remote-{name}"
        return Manifest(name=name, version=str(offer.get("version") or "0.0.0"),
                        description=str(offer.get("description") or ""), runtime="remote", main=None, command=(),
                        events=tuple(events), permissions=tuple(permissions), restart=restart, env={},
                        access=Access(), directory=where, path=where)

    def note_load_failures(self, report: LoadReport) -> None:
        """Keep ``report``'s failures for the operator's view (``ext status``: state ``failed``, with the error)."""
        for name, error in report.failed:
            self.load_failures.append({"name": name, "state": "failed", "error": str(error),
                                       "required": name in report.required})

    # ------------------------------------------------------------------ events

    def emit(self, event: str, payload: dict[str, Any], exclude: str | None = None) -> Outcome:
        """Dispatch ``event``; see :mod:`host.exthost.dispatch` for order, modes and policy.

        ``exclude``: an extension whose handlers are skipped (the one that started the act this event
        announces: its own handler would wait on its own busy channel).
        ``session_start``'s payload is remembered (and forgotten at ``session_shutdown``) for processes that
        replace a running one (restart, reload): they get it again before any other event.
        """
        if event == "session_start":
            self._session_start = payload
        elif event == "session_shutdown":
            self._session_start = None
        return self._dispatch.emit(event, payload, exclude)

    def observe(self, observer: DispatchObserver) -> Callable[[], None]:
        """Tell ``observer`` every dispatch (each handler's answer and timing) and every host call from now on;
        returns the function that stops it (``--record``, ``kithost replay``, ``kithost ext call``)."""
        with self._lock:
            self._dispatch.observers = (*self._dispatch.observers, observer)
            self._router.observer = self._tell_host_call

        def stop() -> None:
            with self._lock:
                self._dispatch.observers = tuple(o for o in self._dispatch.observers if o is not observer)
                if not self._dispatch.observers:
                    self._router.observer = None

        return stop

    def _tell_host_call(self, extension: str, method: str, args: dict[str, Any], ok: bool, elapsed_s: float) -> None:
        for observer in self._dispatch.observers:
            try:
                observer.host_call(extension, method, args, ok, elapsed_s)
            except Exception:
                log.exception("host-call observer failed")

    def subscribed(self, event: str) -> bool:
        """Whether any handler listens to ``event``."""
        return self._dispatch.subscribed(event)

    def emit_custom(self, name: str, data: Any = None) -> Outcome:
        """Emit custom event ``name`` from the host (source ``"host"``)."""
        event = custom_event_name(name)
        return self._dispatch.emit(event, {"name": event.removeprefix("custom:"), "data": data, "source": "host"})

    def _emit_custom(self, source: str, name: str, data: Any) -> int:
        event = custom_event_name(name)
        payload = {"name": event.removeprefix("custom:"), "data": data, "source": source}
        return self._dispatch.emit(event, payload, exclude=source).handlers

    def on(self, event: str, fn: InProcessHook | None = None, *, priority: int = NORMAL,
           policy: str | None = None) -> Any:
        """Add a trusted in-process handler; returns its unregister function.

        As a decorator (``@ext_host.on("tool_call")``) it returns the function
        unchanged and the unregister function is stored on it as ``.unregister``.
        """
        if fn is not None:
            return self._dispatch.add_hook(event, fn, priority, policy)

        def decorate(func: InProcessHook) -> InProcessHook:
            func.unregister = self._dispatch.add_hook(event, func, priority, policy)  # type: ignore[attr-defined]
            return func

        return decorate

    def tools(self) -> list[ExtensionTool]:
        """Tools declared by ready extensions, in load order (first declaration of a name wins)."""
        seen: set[str] = set()
        out: list[ExtensionTool] = []
        for ext in self.extensions():
            for decl in ext.declared.tools:
                if decl["name"] not in seen and ext.state.running:
                    seen.add(decl["name"])
                    out.append(ExtensionTool(decl["name"], decl["description"], dict(decl["parameters"]), ext.name))
        return out

    def commands(self) -> list[ExtensionCommand]:
        """Slash commands declared by ready extensions, in load order."""
        return [ExtensionCommand(c["name"], c["description"], ext.name)
                for ext in self.extensions() for c in ext.declared.commands
                if ext.state.running]

    def invoke_tool(self, extension: str, name: str, args: dict[str, Any], timeout_s: float | None = None,
                    cancel: threading.Event | None = None) -> tuple[str, bool]:
        """Run tool ``name`` inside ``extension``; ``(content, is_error)``, never raises for the extension.

        Setting ``cancel`` stops waiting within 50 ms (the tool's late result is discarded).
        """
        timeout = self.config.deadlines.tool_ms / 1000 if timeout_s is None else timeout_s
        return self.extension(extension).invoke("tool", name, args, timeout, cancel)

    def run_command(self, extension: str, name: str, args: str, timeout_s: float | None = None,
                    cancel: threading.Event | None = None) -> tuple[str, bool]:
        """Run slash command ``name`` of ``extension``; ``(output, is_error)``."""
        timeout = self.config.deadlines.tool_ms / 1000 if timeout_s is None else timeout_s
        return self.extension(extension).invoke("command", name, args, timeout, cancel)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued notify event was delivered (or failed); ``False`` on timeout."""
        return self._pump.flush(timeout_s)

    # ------------------------------------------------------------------ extensions

    def extensions(self) -> list[RunningExtension]:
        """Loaded extensions in load order."""
        return list(self._extensions.values())

    def extension(self, name: str) -> RunningExtension:
        """The extension called ``name``; raises :class:`UnknownExtensionError`."""
        try:
            return self._extensions[name]
        except KeyError:
            known = ", ".join(self._extensions) or "none loaded"
            raise UnknownExtensionError(f"no extension named {name!r} (loaded: {known})") from None

    def restart(self, name: str) -> None:
        """Operator restart of ``name`` (also brings a ``dead`` extension back); asynchronous."""
        self.extension(name).restart_now()

    def _wake_supervisor(self) -> None:
        self._supervisor.wake()

    # ------------------------------------------------------------------ notices (HostNotice)

    def _notify_failed(self, ext: RunningExtension, event: str, error: str) -> None:
        self._tell("handler_failure", {"extension": ext.name, "event": event, "kind": FailureKind.ERROR.value,
                                       "detail": error, "policy": Policy.OPEN.value})

    def _tell(self, kind: str, data: dict[str, Any]) -> None:
        if self._notice is None:
            return
        try:
            self._notice(kind, data)
        except Exception:  # the application's callback must not break dispatch or supervision
            log.exception("notice callback failed on %s", kind)

    def _handler_failed(self, event: str, failure: Failure) -> None:
        self._tell("handler_failure", {"extension": failure.handler, "event": event, "kind": str(failure.kind),
                                       "detail": failure.detail, "policy": str(failure.policy)})

    def _state_changed(self, ext: RunningExtension, old: str, new: str, reason: str) -> None:
        self._tell("extension_state", {"extension": ext.name, "old": old, "new": new, "reason": reason})

    def _ready_again(self, ext: RunningExtension) -> None:
        self._dispatch.route_extension(ext)
        self._tell("restart", {"extension": ext.name, "restarts": ext.restarts,
                               "pid": ext.process.pid if ext.process is not None else None})

    def _supervise(self) -> None:
        for ext in self.extensions():
            ext.supervise()

    def _ops_logs(self, args: dict[str, Any]) -> dict[str, Any]:
        ext = self.extension(str(args.get("name")))
        lines = ext.log.since(int(args.get("after") or 0), int(args["last"]) if args.get("last") else None)
        return {"name": ext.name, "state": ext.state.value, "lines": [list(line) for line in lines]}

    def unload(self, name: str) -> None:
        """Stop ``name`` and stop routing to it (after a reload of it in progress, which would route it again)."""
        with self._reload_lock:
            ext = self.extension(name)
            self._dispatch.remove_extension(ext)
            ext.stop("unloaded")
            with self._lock:
                self._extensions.pop(name, None)
            self.last_reloads.pop(name, None)

    # ------------------------------------------------------------------ reload

    def reload(self, name: str) -> ReloadResult:
        """Replace ``name``'s process with its current files, with no downtime (rules in :mod:`.reload`).

        Synchronous: returns once the new version serves and the old process is stopped, or once the
        reload failed (the old version, if it was running, keeps serving; the result says why). A dead
        extension is brought back by a successful reload. Never raises for the extension's faults; every
        result is also sent as the ``reload`` notice and kept in :attr:`last_reloads`.
        """
        start = time.monotonic()
        with self._reload_lock:
            if self._closed:
                result = ReloadResult(name, False, "the host is closing")
            elif name not in self._extensions:
                known = ", ".join(self._extensions) or "none loaded"
                result = ReloadResult(name, False, f"no extension named {name!r} (loaded: {known})")
            else:
                result = self._reload(self._extensions[name], start)
            if name in self._extensions:
                self.last_reloads[name] = result
        log.log(logging.INFO if result.ok else logging.WARNING, "extension %s", result.describe())
        self._tell("reload", result.to_json())
        return result

    def reload_later(self, name: str) -> threading.Thread:
        """:meth:`reload` on a thread of its own (from a handler's ``ctx`` call, or a UI loop); the result
        comes as the ``reload`` notice. Returns the started thread; raises :class:`UnknownExtensionError` for
        a name that is not loaded."""
        self.extension(name)
        thread = threading.Thread(target=self.reload, args=(name,), name=f"kithost-reload-{name}", daemon=True)
        thread.start()
        return thread

    def _reload(self, ext: RunningExtension, start: float) -> ReloadResult:
        def failed(reason: str, tail: str = "") -> ReloadResult:
            pid = ext.process.pid if ext.process is not None and ext.state.running else None
            return ReloadResult(ext.name, False, reason, ext.declared.version, pid, (), tail,
                                (time.monotonic() - start) * 1000)

        if ext.remote is not None:
            return failed(f"it runs on a remote worker ({ext.remote.info().get('worker')}): update it there, then "
                          f"`kithost ext restart {ext.name}`")
        try:
            manifest = load_manifest(ext.manifest.path)
        except ManifestError as exc:
            return failed(str(exc))
        if manifest.name != ext.name:
            return failed(f"its manifest now names it {manifest.name!r}; a reload keeps the name "
                          "(unload it and load the renamed one)")
        try:
            verdict = decide(manifest, self.config, self.trust)
        except HostError as exc:
            return failed(str(exc))
        grant, why = regrant(ext.grant, Request.of(ext.manifest), verdict)
        if grant is None:
            return failed(why)
        before = ext.declared
        try:
            replacement = ext.prepare_replacement(manifest, grant, self._dispatch.next_load_order())
            retired = ext.switch_to(replacement, lambda: self._dispatch.route_extension(ext),
                                    self.config.deadlines.start_ms / 1000)
        except ReloadFailed as exc:
            return failed(exc.reason, exc.log_tail)
        ext.retire(retired)
        pid = ext.process.pid if ext.process is not None else None
        return ReloadResult(ext.name, True, "", replacement.declared.version, pid,
                            describe_changes(before, replacement.declared), "", (time.monotonic() - start) * 1000)

    def watch(self, debounce_s: float = 0.3, poll_s: float = 0.1) -> None:
        """Reload an extension when a file in its folder changes (quiet for ``debounce_s``); see :mod:`.watch`.

        Idempotent; :meth:`unwatch` or :meth:`close` stops it. Results come as ``reload`` notices.
        """
        if self._watcher is not None or self._closed:
            return
        self._watcher = ExtensionWatcher(lambda: {e.name: e.manifest.directory for e in self.extensions()
                                                  if e.remote is None},  # a remote one's files are on its worker
                                         self.reload, debounce_s, poll_s)
        self._watcher.start()

    def unwatch(self) -> None:
        """Stop watching extension folders (waits for a reload it started)."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop(self.config.deadlines.start_ms / 1000 + self.config.deadlines.shutdown_ms / 1000 + 5)

    @property
    def watching(self) -> bool:
        """Whether extension folders are watched."""
        return self._watcher is not None

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Stop every extension (shutdown ladder), the delivery thread, and remove the socket dir."""
        if self._closed:
            return
        self.unwatch()
        self._closed = True
        wait = self.config.deadlines.start_ms / 1000 + self.config.deadlines.shutdown_ms / 1000 + 5
        self._ops.close(wait)
        reloading = self._reload_lock.acquire(timeout=wait)  # a reload in progress finishes first
        self._supervisor.stop()
        self._pump.flush(2.0)
        self._pump.stop()
        exts = list(self._extensions.values())
        threads = [threading.Thread(target=e.stop, name=f"kithost-stop-{e.name}") for e in reversed(exts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=self.config.deadlines.shutdown_ms / 1000 + 10)
        for source in self._remote_sources:
            source.close()
        self._gate.close()
        self._zctx.destroy(linger=0)
        shutil.rmtree(self._runtime, ignore_errors=True)
        self._finalizer.detach()
        if reloading:
            self._reload_lock.release()

    @staticmethod
    def _atexit_close(ref: Callable[[], ExtensionHost | None]) -> None:
        host = ref()
        if host is not None:
            host.close()

    def __enter__(self) -> ExtensionHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

