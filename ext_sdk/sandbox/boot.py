"""The sandboxed child's first code: confine this process, then run the extension.

The host starts this module (``python -I -S``, through :mod:`ext_sdk.startup`) with an encoded
:class:`~ext_sdk.sandbox.plan.BootPlan` in ``KITHOST_SANDBOX``
(:data:`~ext_sdk.sandbox.plan.ENV_PLAN`) and a clean environment. In order:

1. remove ``KITHOST_SANDBOX`` from the environment (extension code never sees
   the plan) and parse it;
2. **rlimits** (first, so everything after runs under them; only lowered);
3. **user**: the dedicated uid/gid, when the plan names one (:mod:`.identity`);
4. **capabilities** dropped (plus NO_NEW_PRIVS), when the plan says so;
5. **Landlock** (before seccomp, so the filter never has to allow the
   Landlock set-up calls; before any thread starts, since it binds the calling
   thread only);
6. **seccomp** last (TSYNC, all threads);
7. ``KITHOST_SANDBOX_ACTIVE`` = what is in force, ``"; "``-joined;
8. ``os.execv(exec_argv)`` (Node / command extensions), or stay in this
   interpreter and run the Python SDK: ``ext_sdk.__main__.main(["run", run_path])``.

A *required* layer (rlimits and capabilities always are) that cannot be put in
force, a bad plan, or a failed exec: one line
``kithost sandbox: <layer>: <reason>`` on stderr and exit status
:data:`~ext_sdk.sandbox.plan.EXIT_SANDBOX` (5); nothing of the extension ran.
An optional layer that is unavailable is reported in
``KITHOST_SANDBOX_ACTIVE`` as ``"<layer> off: <reason>"``.

Stdlib only, and cheap: no ``typing``/``dataclasses`` at runtime; ctypes,
``marshal`` and ``resource`` are the only imports beyond the interpreter's own
start-up set (~4 ms for all layers, measured in-process; ``import ctypes`` is
half of it). Every module the layers need is imported before the first layer,
so an ``exec_argv`` plan need not grant the package's own files. The in-process
path imports the SDK *after* confinement: grant read access to the interpreter
prefix, the venv (msgpack, ...) and ``ext_sdk``.
"""

from __future__ import annotations

import os
import sys

# Every module a layer needs is imported here, before any layer is in force: once Landlock applies,
# the package's own files may be unreadable (an exec_argv plan need not grant them).
from . import capabilities, identity, landlock, rlimits, seccomp
from ._sys import MACHINE, PR_SET_PDEATHSIG, prctl
from .plan import ENV_ACTIVE, ENV_PLAN, EXIT_SANDBOX, BootPlan, PlanError, SandboxError

__all__ = ["confine", "main"]


def confine(plan: BootPlan) -> list[str]:
    """Apply the plan's layers to this process, in order; returns what is in force, one entry per layer.

    Raises :class:`~ext_sdk.sandbox.plan.SandboxError` when a required layer
    cannot be put in force (the layers before it stay in force).
    """
    program: bytes | None = None
    if plan.seccomp is not None:  # built first: pure Python, nothing to read once Landlock is on
        try:
            program = seccomp.build(MACHINE, allow_inet=plan.seccomp.allow_inet, allow_exec=plan.seccomp.allow_exec)
        except ValueError as exc:
            if plan.seccomp.required:
                raise SandboxError("seccomp", str(exc)) from None
    in_force: list[str] = []
    try:
        in_force.append(rlimits.apply(plan.rlimits))
    except (OSError, ValueError) as exc:
        raise SandboxError("rlimits", str(exc)) from None
    if plan.user is not None:
        try:
            in_force.append(identity.become(*plan.user))
        except OSError as exc:
            raise SandboxError("user", str(exc)) from None
    if plan.drop_capabilities:
        try:
            in_force.append(capabilities.drop_all())
        except (OSError, ValueError) as exc:
            raise SandboxError("capabilities", str(exc)) from None
    if plan.landlock is not None:
        version, reason = landlock.abi()
        try:
            if version == 0:
                raise RuntimeError(reason)
            in_force.append(landlock.apply(plan.landlock, version))
        except (OSError, RuntimeError) as exc:
            if plan.landlock.required:
                raise SandboxError("landlock", str(exc)) from None
            in_force.append(f"landlock off: {exc}")
    if plan.seccomp is not None:
        try:
            if program is None:
                raise ValueError(f"no seccomp filter for architecture {MACHINE!r}")
            seccomp.load(program)
            in_force.append(seccomp.describe(allow_inet=plan.seccomp.allow_inet, allow_exec=plan.seccomp.allow_exec))
        except (OSError, ValueError) as exc:
            if plan.seccomp.required:
                raise SandboxError("seccomp", str(exc)) from None
            in_force.append(f"seccomp off: {exc}")
    return in_force


#: SIGKILL, 9 on every Linux architecture (``import signal`` builds its enums: ~1 ms of every start).
_SIGKILL = 9


def _fail(layer: str, reason: str) -> int:
    print(f"kithost sandbox: {layer}: {reason}", file=sys.stderr, flush=True)
    return EXIT_SANDBOX


def main() -> int:
    """Entry point of the sandbox boot (see the module doc); returns the exit status (or does not return)."""
    text = os.environ.pop(ENV_PLAN, None)
    try:
        if text is None:
            raise PlanError(f"{ENV_PLAN} is not set (the host starts this module with a plan)")
        plan = BootPlan.decode(text)
        in_force = confine(plan)
    except PlanError as exc:
        return _fail("plan", str(exc))
    except SandboxError as exc:
        return _fail(exc.layer, exc.reason)
    except Exception as exc:  # noqa: BLE001 - a bug here must still fail closed, in one line
        return _fail("boot", f"{type(exc).__name__}: {exc}")
    for leftover in ("PWD", "OLDPWD", "SHLVL", "_"):  # set by a shell or bwrap on the way: not the host's contract
        os.environ.pop(leftover, None)
    os.environ[ENV_ACTIVE] = "; ".join(in_force)
    prctl(PR_SET_PDEATHSIG, _SIGKILL)  # die with the host, whatever runs next (survives execve)
    if plan.exec_argv is not None:
        try:
            os.execv(plan.exec_argv[0], plan.exec_argv)
        except OSError as exc:
            return _fail("exec", f"{plan.exec_argv[0]}: {exc.strerror or exc}")
    assert plan.run_path is not None  # BootPlan guarantees exactly one of exec_argv / run_path
    from ..__main__ import main as sdk_main

    return sdk_main(["run", plan.run_path])


if __name__ == "__main__":
    sys.exit(main())
