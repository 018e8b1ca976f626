"""The rlimits layer: lower this process's resource limits to the plan's values.

Stdlib only (``resource``). Contract of :func:`apply`:

* a hard limit is only ever lowered, never raised (``min(current, planned)``,
  with ``-1`` = unlimited as the largest value); the soft limit becomes
  ``min(planned soft, new hard)`` (it may rise up to the new hard limit);
* names are ``resource.RLIMIT_*`` without the prefix (``AS``, ``DATA``,
  ``CPU``, ``NOFILE``, ``FSIZE``, ``CORE``, ``NPROC``, ...);
* raises ``OSError``/``ValueError`` from ``setrlimit`` — the boot treats any
  failure as fatal (rlimits are always required).

These are guard rails, not hard caps: a hog that catches MemoryError survives
RLIMIT_AS, MAP_SHARED mappings escape RLIMIT_DATA, RLIMIT_CPU does not count
sleeping (the host keeps a wall-clock watchdog), and RLIMIT_NPROC counts every
process of the real uid system-wide and is ignored for uid 0.
"""

from __future__ import annotations

import resource

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["apply", "lowered"]

INFINITY = resource.RLIM_INFINITY


def _min(a: int, b: int) -> int:
    if a == INFINITY:
        return b
    if b == INFINITY:
        return a
    return min(a, b)


def lowered(current: tuple[int, int], planned: tuple[int, int]) -> tuple[int, int]:
    """The (soft, hard) to set: hard never above the current hard, soft never above the new hard."""
    hard = _min(current[1], planned[1])
    return _min(planned[0], hard), hard


def apply(limits: Mapping[str, tuple[int, int]]) -> str:
    """Apply ``limits`` to this process; returns e.g. ``"rlimits: AS, CPU, NOFILE"``."""
    for name, planned in limits.items():
        which = getattr(resource, "RLIMIT_" + name)
        resource.setrlimit(which, lowered(resource.getrlimit(which), planned))
    return f"rlimits: {', '.join(limits) or 'none'}"
