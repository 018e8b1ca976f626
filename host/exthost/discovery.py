"""Finding extensions: search directories, then explicit ``-e`` paths.

Load order (it is also the tie-breaker after priority when handlers run):

1. each search directory in order (``~/.config/kithost/extensions``, then
   ``./.kithost/extensions``): every immediate subdirectory holding an
   ``extension.toml``, sorted by directory name;
2. every ``-e PATH`` in the order given: a directory with an
   ``extension.toml``, the manifest file itself, or a directory of such
   directories.

A name seen twice keeps the first and reports the second as a problem
(never a silent override). A bad manifest is reported, the rest still load.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ManifestError
from .manifest import MANIFEST_NAME, Manifest, load_manifest

__all__ = ["Discovery", "discover"]


@dataclass(frozen=True, slots=True)
class Discovery:
    """Manifests found, in load order, and what could not be loaded."""

    manifests: tuple[Manifest, ...]
    #: ``(path, message)`` for each manifest that was skipped.
    problems: tuple[tuple[Path, str], ...]


def _candidates(path: Path, explicit: bool) -> Iterable[Path]:
    if path.is_file():
        yield path
    elif (path / MANIFEST_NAME).is_file():
        yield path / MANIFEST_NAME
    elif path.is_dir():
        found = sorted(p / MANIFEST_NAME for p in path.iterdir() if (p / MANIFEST_NAME).is_file())
        if explicit and not found:
            raise ManifestError(f"{path}: no {MANIFEST_NAME} here or in its subdirectories")
        yield from found
    elif explicit:
        raise ManifestError(f"{path}: no such file or directory")


def discover(search_dirs: Iterable[Path], explicit: Iterable[Path] = ()) -> Discovery:
    """Manifests from ``search_dirs`` (missing dirs are fine) then ``explicit`` paths."""
    manifests: list[Manifest] = []
    problems: list[tuple[Path, str]] = []
    seen: dict[str, Path] = {}
    sources = [(Path(d).expanduser(), False) for d in search_dirs] + [(Path(p), True) for p in explicit]
    for root, is_explicit in sources:
        try:
            paths = list(_candidates(root, is_explicit))
        except ManifestError as exc:
            problems.append((root, str(exc)))
            continue
        for path in paths:
            try:
                manifest = load_manifest(path)
            except ManifestError as exc:
                problems.append((path, str(exc)))
                continue
            if manifest.name in seen:
                problems.append((path, f"{path}: name {manifest.name!r} already loaded from {seen[manifest.name]}"))
                continue
            seen[manifest.name] = manifest.path
            manifests.append(manifest)
    return Discovery(tuple(manifests), tuple(problems))
