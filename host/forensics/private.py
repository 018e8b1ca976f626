"""A private host for one replay or one call: the operator's config, a state file of its own, closed after.

The extensions run exactly as an agent would run them (the operator's grants and sandbox); only the state
file is a scratch one, so a replay or a call never reads or writes a real session's extension state. The
host's runtime directory is private to every host anyway.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from ..config import HostConfig
from ..exthost.host import ExtensionHost

__all__ = ["private_host"]


@contextmanager
def private_host(config: HostConfig | None, purpose: str) -> Iterator[ExtensionHost]:
    """An :class:`ExtensionHost` on ``config`` (default: the defaults) with a scratch state file; closed, and
    the scratch directory (``kithost-<purpose>-…``) removed, when the block ends."""
    with tempfile.TemporaryDirectory(prefix=f"kithost-{purpose}-") as scratch:
        host = ExtensionHost(replace(config or HostConfig(), state_path=Path(scratch) / "state.json"))
        try:
            yield host
        finally:
            host.close()
