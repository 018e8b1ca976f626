"""The confinement an extension process applies to itself before extension code runs.

Runs inside the sandboxed child, so it lives on the SDK side and never imports
``host``. The host decides the layers and passes them as a
:class:`~ext_sdk.sandbox.plan.BootPlan` (JSON in ``KITHOST_SANDBOX``) to
``ext_sdk.sandbox.boot`` (``python -I -S``, see :mod:`ext_sdk.startup`), which applies, in order:

* :mod:`~ext_sdk.sandbox.rlimits` — lower resource limits;
* :mod:`~ext_sdk.sandbox.identity` — a root child becomes the extension's dedicated uid;
* :mod:`~ext_sdk.sandbox.capabilities` — a root child gives up every capability;
* :mod:`~ext_sdk.sandbox.landlock` — filesystem allow-list, TCP ports,
  abstract-unix-socket and signal scoping (raw syscalls);
* :mod:`~ext_sdk.sandbox.seccomp` — a classic-BPF filter built in pure Python
  (unix + netlink sockets only, no ptrace, io_uring, namespaces, mounts, ...);

then execs the extension's program or runs the Python SDK in-process
(:mod:`~ext_sdk.sandbox.boot`).

**Stdlib only** (ctypes, os, resource, marshal, struct): no pyseccomp/libseccomp —
``import pyseccomp`` costs ~26 ms in the child because ``find_library`` runs
ldconfig, and a filter this size needs no compiler — and no PyPI ``landlock``,
which has no TCP rules or scopes and fails with EINVAL when given directory
rights for a file. Importing this package loads only :mod:`.plan`.

Bubblewrap namespaces and cgroups are set up by the host *around* this
process; they are not in this package. The dedicated uid is leased by the host
and entered here (the plan's ``user``).
"""

from .plan import (
    ENV_ACTIVE,
    ENV_PLAN,
    EXIT_SANDBOX,
    BootPlan,
    LandlockRules,
    PlanError,
    SandboxError,
    SeccompPolicy,
)

__all__ = [
    "ENV_ACTIVE",
    "ENV_PLAN",
    "EXIT_SANDBOX",
    "BootPlan",
    "LandlockRules",
    "PlanError",
    "SandboxError",
    "SeccompPolicy",
]
