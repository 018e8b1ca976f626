"""Trust: what the operator granted each extension, pinned to the extension's content.

An extension **asks** (:class:`Request`, from its manifest) for host-call
permissions beyond the always-granted ones, for events whose payload carries
conversation content, and for ``[access]`` (network, paths, starting
programs). What it is **granted** (:class:`Grant`) comes from the first of:

1. the operator's config: ``[permissions]."NAME"`` and/or ``[access]."NAME"``
   (exactly what they say, whatever the extension asks);
2. the trust file (``kithost ext trust NAME``, or a yes at the interactive
   prompt): what it asked when the operator said yes — but only while the
   extension's content is the same (a SHA-256 over every file under its
   directory, ``__pycache__`` and ``.git`` aside);
3. ``[sandbox] trust = "all"``: what it asks;
4. nothing beyond the defaults — enough for an extension that asks for nothing.

An extension that asks for more than that does not start
(:func:`decide` returns no grant, and a reason that says what it asks, what
changed since it was trusted, and how to trust it).

The trust file is JSON, keyed by the manifest's resolved path (an extension of
the same name elsewhere is another extension), written atomically (temp file
+ rename, mode 0600)::

    {"version": 1, "extensions": {"/path/extension.toml": {"name": ..., "digest": ...,
      "files": {"main.py": "<sha256>", ...}, "request": {...}, "at": "<ISO time>"}}}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ext_sdk.events import spec_for
from ext_sdk.hostcalls import ALWAYS_GRANTED

from ..config import Access, HostConfig, TrustMode, data_dir
from ..errors import HostError
from .manifest import Manifest

__all__ = ["Grant", "Request", "TrustStore", "Verdict", "content_digest", "decide", "decide_remote",
           "default_trust_file"]

_SKIP_DIRS = frozenset({"__pycache__", ".git"})


def default_trust_file() -> Path:
    """``$XDG_DATA_HOME/kithost/trust.json`` (default ``~/.local/share/...``)."""
    return data_dir() / "trust.json"


@dataclass(frozen=True, slots=True)
class Request:
    """What an extension asks for beyond the defaults."""

    #: Host-call permission groups beyond the always-granted ones.
    permissions: frozenset[str]
    #: Events it subscribes to whose payload carries conversation content.
    content_events: tuple[str, ...]
    #: What its process asks to reach.
    access: Access

    @classmethod
    def of(cls, manifest: Manifest) -> Request:
        content = tuple(e for e in manifest.events if (spec := spec_for(e)) is not None and spec.exposes_content)
        return cls(frozenset(manifest.permissions) - ALWAYS_GRANTED, content, manifest.access)

    @property
    def empty(self) -> bool:
        """Asks for nothing beyond the defaults (it can start without being trusted)."""
        return not self.permissions and self.access.empty

    def lines(self) -> list[str]:
        """What it asks, one item per line, for people."""
        out = [f"host calls: {', '.join(sorted(self.permissions))}"] if self.permissions else []
        if self.content_events:
            out.append(f"conversation content through: {', '.join(self.content_events)}")
        access = self.access
        if access.network:
            out.append(f"network: {', '.join(access.network)}")
        out += [f"read: {p}" for p in access.read] + [f"write: {p}" for p in access.write]
        if access.processes:
            out.append("start other programs")
        return out or ["nothing beyond the defaults"]

    def to_json(self) -> dict[str, Any]:
        return {"permissions": sorted(self.permissions), "content_events": list(self.content_events),
                "access": {"network": list(self.access.network), "read": [str(p) for p in self.access.read],
                           "write": [str(p) for p in self.access.write], "processes": self.access.processes}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Request:
        access = data.get("access") or {}
        return cls(frozenset(data.get("permissions", ())), tuple(data.get("content_events", ())),
                   Access(network=tuple(access.get("network", ())), read=tuple(access.get("read", ())),
                          write=tuple(access.get("write", ())), processes=bool(access.get("processes", False))))


@dataclass(frozen=True, slots=True)
class Grant:
    """What one extension may do."""

    #: Host-call permission groups (the always-granted ones included).
    permissions: frozenset[str]
    #: What its process may reach.
    access: Access
    #: Where the grant comes from: ``config``, ``trusted``, ``trust-all`` or ``default``.
    source: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of :func:`decide`."""

    request: Request
    #: ``None``: the extension must not start.
    grant: Grant | None
    #: Why not (empty when granted).
    reason: str = ""
    #: What changed since it was trusted (files, permissions, events, access), when it did.
    changes: tuple[str, ...] = ()


def content_digest(directory: Path) -> tuple[str, dict[str, str]]:
    """SHA-256 of every file under ``directory`` (``__pycache__``/``.git`` aside): ``(digest, {path: sha256})``."""
    files: dict[str, str] = {}
    for path in sorted(_walk(directory)):
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        files[path.relative_to(directory).as_posix()] = digest.hexdigest()
    whole = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return whole, files


def _walk(directory: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in names:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                yield path


class TrustStore:
    """The trust file (see the module doc); thread-safe, rewritten atomically on each change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise HostError(f"{self.path}: cannot read the trust file: {exc}") from exc
        extensions = data.get("extensions") if isinstance(data, dict) else None
        return extensions if isinstance(extensions, dict) else {}

    def entry(self, manifest: Manifest) -> dict[str, Any] | None:
        """What was recorded for this manifest, if anything."""
        with self._lock:
            found = self._load().get(str(manifest.path))
        return found if isinstance(found, dict) else None

    def entries(self) -> dict[str, dict[str, Any]]:
        """Every record, by manifest path."""
        with self._lock:
            return self._load()

    def record(self, manifest: Manifest, request: Request) -> None:
        """The operator trusts this content of the extension with what it asks."""
        digest, files = content_digest(manifest.directory)
        entry = {"name": manifest.name, "digest": digest, "files": files, "request": request.to_json(),
                 "at": datetime.now(UTC).isoformat(timespec="seconds")}
        self._change(lambda extensions: extensions.__setitem__(str(manifest.path), entry))

    def revoke(self, manifest_path: Path) -> bool:
        """Forget the record of ``manifest_path``; whether there was one."""
        found: list[bool] = []
        self._change(lambda extensions: found.append(extensions.pop(str(manifest_path), None) is not None))
        return bool(found and found[0])

    def _change(self, edit: Callable[[dict[str, Any]], object]) -> None:
        with self._lock:
            extensions = self._load()
            edit(extensions)
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".trust-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump({"version": 1, "extensions": extensions}, fh, indent=2, sort_keys=True)
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise


def decide(manifest: Manifest, config: HostConfig, store: TrustStore) -> Verdict:
    """What ``manifest``'s extension is granted (rules in the module doc)."""
    request = Request.of(manifest)
    name = manifest.name
    if name in config.permissions or name in config.access:
        permissions = frozenset(config.permissions.get(name, ())) | ALWAYS_GRANTED
        return Verdict(request, Grant(permissions, config.access.get(name, Access()), "config"))
    asked = Grant(request.permissions | ALWAYS_GRANTED, request.access, "trusted")
    entry = store.entry(manifest)
    changes: tuple[str, ...] = ()
    if entry is not None:
        digest, files = content_digest(manifest.directory)
        if entry.get("digest") == digest and Request.from_json(entry.get("request") or {}) == request:
            return Verdict(request, asked)
        changes = tuple(_changes(entry, files, request))
    if config.sandbox.trust is TrustMode.ALL:
        return Verdict(request, dataclasses.replace(asked, source="trust-all"))
    if request.empty:
        return Verdict(request, Grant(ALWAYS_GRANTED, Access(), "default"))
    asks = "; ".join(request.lines())
    if changes:
        reason = (f"it changed since you trusted it ({'; '.join(changes)}); it asks for: {asks}. "
                  f"Review it, then run `kithost ext trust {name}`")
    else:
        reason = (f"it asks for: {asks}; nothing grants that yet. Run `kithost ext trust {name}` "
                  f"(or grant it in the config's [permissions]/[access] tables)")
    return Verdict(request, None, reason, changes)


def decide_remote(manifest: Manifest, config: HostConfig) -> Verdict:
    """What a remote extension (``[remote."NAME"]``) is granted on this host: host-call permissions only (its
    process is confined by its worker, with the worker's ``[access]`` grants).

    Its content is on the worker, so no trust record (pinned to a content hash here) can apply: the grant is
    ``[permissions]."NAME"`` when set; otherwise what it asks with ``[sandbox] trust = "all"``; otherwise the
    always-granted calls, and one that asks for more does not start (the reason names the table to set).
    """
    request = Request.of(manifest)
    name = manifest.name
    if name in config.permissions:
        return Verdict(request, Grant(frozenset(config.permissions[name]) | ALWAYS_GRANTED, Access(), "config"))
    if config.sandbox.trust is TrustMode.ALL:
        return Verdict(request, Grant(request.permissions | ALWAYS_GRANTED, Access(), "trust-all"))
    if not request.permissions:
        return Verdict(request, Grant(ALWAYS_GRANTED, Access(), "default"))
    return Verdict(request, None, f"it asks for host calls: {', '.join(sorted(request.permissions))}; a remote "
                                  f"extension's files are on its worker, so grant them in the config: "
                                  f"[permissions] \"{name}\" = [...]")


def _changes(entry: dict[str, Any], files: dict[str, str], request: Request) -> list[str]:
    """What differs between a trust record and the extension now, in words."""
    before: dict[str, str] = entry.get("files") or {}
    out = [f"changed file {f}" for f in sorted(files) if f in before and before[f] != files[f]]
    out += [f"new file {f}" for f in sorted(set(files) - set(before))]
    out += [f"removed file {f}" for f in sorted(set(before) - set(files))]
    old = Request.from_json(entry.get("request") or {})
    out += [f"now asks for host calls: {p}" for p in sorted(request.permissions - old.permissions)]
    out += [f"now receives {e}" for e in request.content_events if e not in old.content_events]
    if request.access != old.access:
        new = [line for line in request.lines() if line not in old.lines()]
        out += [f"now asks: {line}" for line in new] or ["its [access] changed"]
    return out
