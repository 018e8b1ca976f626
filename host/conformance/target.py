"""What the kit drives: an extension folder (its manifest) or any command, as one :class:`Target`.

Contract of :func:`parse_target` (the words after ``kithost conformance``):

* one word naming a directory, or a ``.toml`` file → that extension's
  manifest (:func:`host.exthost.manifest.load_manifest`; a bad manifest
  raises :class:`~host.errors.ManifestError`);
* anything else → a command (``kithost conformance -- ./my-ext --flag``),
  run as a manifest with ``runtime = "command"`` would be: working directory
  the current one, a program path (``./x``, ``.venv/bin/python``) made
  absolute against it (symlinks kept), a bare program name looked up on
  ``PATH``. Its name until the handshake is the
  program's (or script's) stem; :func:`learned_manifest` then takes the name,
  events and permissions from ``hello`` — the manifest-equivalent the kit
  writes for itself;
* no words → :class:`~host.errors.HostError` (usage).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ext_sdk.events import spec_for
from ext_sdk.hostcalls import PERMISSIONS

from ..config import Access, RestartMode
from ..errors import HostError
from ..exthost.manifest import MANIFEST_NAME, Manifest, load_manifest

__all__ = ["Target", "learned_manifest", "parse_target"]

_NAME_OK = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True, slots=True)
class Target:
    """One extension to drive."""

    manifest: Manifest
    #: Started as ``-- COMMAND...``: no manifest; name, events and permissions come from ``hello``.
    from_command: bool
    #: How to name it in the report (the folder, or the command line).
    label: str


def _placeholder_name(argv: Sequence[str]) -> str:
    """A manifest-valid name from the command: the stem of its script (or program)."""
    words = [w for w in argv if not w.startswith("-")]
    scripts = [w for w in words[1:] if Path(w).suffix]
    stem = Path(scripts[0] if scripts else words[0] if words else "extension").stem.lower()
    name = re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-._") or "extension"
    return name[:63]


def parse_target(words: Sequence[str], cwd: Path | None = None) -> Target:
    """The target named by ``words`` (rules in the module doc)."""
    if not words:
        raise HostError("name an extension folder (kithost conformance PATH) or a command "
                        "(kithost conformance -- COMMAND...)")
    here = (cwd or Path.cwd()).resolve()
    if len(words) == 1:
        path = here / words[0]
        if path.is_dir() or (path.suffix == ".toml" and path.exists()) or path.name == MANIFEST_NAME:
            manifest = load_manifest(path)
            return Target(manifest, False, str(words[0]))
    program = words[0]
    if "/" in program:  # absolute as given, symlinks kept (a venv's python is a symlink that must stay one)
        program = os.path.normpath(os.path.join(here, program))
    else:
        program = shutil.which(program) or program
    argv = (program, *words[1:])
    manifest = Manifest(name=_placeholder_name(words), version="0.0.0", description="", runtime="command",
                        main=None, command=argv, events=(), permissions=(), restart=RestartMode.NEVER, env={},
                        access=Access(), directory=here, path=here / MANIFEST_NAME)
    return Target(manifest, True, " ".join(words))


def learned_manifest(target: Target, hello: dict[str, Any]) -> Manifest:
    """The manifest to judge and relaunch with: a folder's own, or for a command the one ``hello`` implies
    (its name, version, events and permissions: a bare command has no other source of its identity)."""
    if not target.from_command:
        return target.manifest
    name = hello.get("name")
    events = tuple(dict.fromkeys(str(s.get("event")) for s in hello.get("subscriptions") or ()
                                 if isinstance(s, dict) and spec_for(str(s.get("event"))) is not None))
    permissions = tuple(p for p in dict.fromkeys(hello.get("permissions") or ()) if p in PERMISSIONS)
    version = hello.get("version")
    return replace(target.manifest, name=name if isinstance(name, str) and _NAME_OK.match(name)
                   else target.manifest.name, events=events, permissions=permissions,
                   version=version if isinstance(version, str) else target.manifest.version)
