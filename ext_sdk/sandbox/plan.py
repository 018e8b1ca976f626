"""The boot plan: what a sandboxed extension process applies to itself before extension code runs.

The host builds a :class:`BootPlan`, serialises it with :meth:`BootPlan.encode`
into the environment variable :data:`ENV_PLAN` (``KITHOST_SANDBOX``) of the
child, and starts :mod:`ext_sdk.sandbox.boot`. The child parses it with
:meth:`BootPlan.decode` and applies it (see :mod:`ext_sdk.sandbox.boot`).

Contract:

* Plain data only (strings, ints, bools, lists). In the environment it is the
  ``marshal`` form of :meth:`BootPlan.to_dict`, hex-encoded: the host and the
  boot run the same interpreter, and ``import json`` (with the ``re`` it
  imports) was ~5 ms of every sandboxed start (issue 10). :meth:`decode`
  also takes the JSON form (:meth:`to_json`, for people and tests: a value that
  starts with ``{``). Unknown keys, wrong types, relative paths and
  unknown rlimit names are refused with :class:`PlanError` at construction
  (host side) and at parsing (child side), so a typo cannot silently switch a
  layer off.
* The classes are immutable and compare by value, like frozen dataclasses
  (:class:`ext_sdk.frozen.Frozen`: ``import dataclasses`` costs ~10 ms, it
  imports ``inspect``, and this module is on the boot path of every sandboxed
  extension). Likewise no ``typing`` import at runtime.
* Exit status :data:`EXIT_SANDBOX` (5): the child could not put a *required*
  layer in force (or the plan is invalid); it has printed one line
  ``kithost sandbox: <layer>: <reason>`` on stderr. Not worth retrying.

Stdlib only (``marshal``, ``os``, ``resource``, ``types``; ``json`` on demand): the sandbox package runs
inside the sandboxed child and must stay cheap to import; see the package
docstring for why not pyseccomp or the PyPI ``landlock`` package.
"""

from __future__ import annotations

import marshal
import os
import types

from ..frozen import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

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

#: Environment variable carrying the JSON :class:`BootPlan` (removed before extension code runs).
ENV_PLAN = "KITHOST_SANDBOX"
#: Set by the boot for the extension: what is in force, ``"; "``-joined (informational only).
ENV_ACTIVE = "KITHOST_SANDBOX_ACTIVE"
#: Exit status of a child whose required sandbox layer could not be put in force (or bad plan).
EXIT_SANDBOX = 5

#: ``resource.RLIM_INFINITY`` on Linux, spelled out so the JSON stays plain ints.
RLIM_INFINITY = -1


class PlanError(ValueError):
    """The plan is malformed (host bug or version skew); the child exits :data:`EXIT_SANDBOX`."""


class SandboxError(Exception):
    """A layer could not be put in force. ``layer`` names it ("landlock", "seccomp", ...)."""

    def __init__(self, layer: str, reason: str) -> None:
        super().__init__(f"{layer}: {reason}")
        self.layer = layer
        self.reason = reason


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _paths(what: str, values: Iterable[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        raise PlanError(f"{what}: expected a list of paths, got a string")
    out = []
    for value in values:
        if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
            raise PlanError(f"{what}: {value!r} is not an absolute path")
        out.append(value)
    return tuple(out)


def _ports(what: str, values: Iterable[int] | None) -> tuple[int, ...] | None:
    if values is None:
        return None
    out = []
    for value in values:
        if type(value) is not int or not 0 <= value <= 65535:
            raise PlanError(f"{what}: {value!r} is not a TCP port")
        out.append(value)
    return tuple(out)


def _bool(what: str, value: object) -> bool:
    if type(value) is not bool:
        raise PlanError(f"{what}: expected true or false, got {value!r}")
    return value


class LandlockRules(Frozen):
    """Landlock rules (kernel ≥ 5.13; TCP rules need ABI 4, scopes ABI 6).

    * ``read``: paths (files or directories, recursively) the process may read.
    * ``write``: paths it may also create, change, delete and truncate files
      under (write implies read; never device nodes). Put ``/dev/null`` here,
      not in ``read``: ``subprocess.DEVNULL`` and friends open it read-write.
    * ``execute``: paths it may ``execve`` (also readable). With an
      ``exec_argv`` this must include the program *and* the ELF loader
      (``/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2``): the kernel opens
      the loader for execution too.
    * ``tcp_connect`` / ``tcp_bind``: TCP ports it may connect to / bind.
      Empty = no TCP at all; ``None`` = TCP left unrestricted by Landlock.
      Port-only: a connect rule for 443 allows 443 on every address.
    * ``scope_abstract_unix``: no connecting to abstract unix sockets created
      outside the sandbox; ``scope_signal``: no signalling processes outside it.
    * ``required``: the child fails (exit 5) when Landlock is unavailable;
      otherwise it runs without it and says so in :data:`ENV_ACTIVE`.

    Paths that do not exist are skipped. Everything not granted is denied,
    including reading ``/``: grant the interpreter, its libraries and the
    extension's own files explicitly.
    """

    FIELDS = ("read", "write", "execute", "tcp_connect", "tcp_bind", "scope_abstract_unix", "scope_signal", "required")
    __slots__ = tuple(sorted(FIELDS))
    read: tuple[str, ...]
    write: tuple[str, ...]
    execute: tuple[str, ...]
    tcp_connect: tuple[int, ...] | None
    tcp_bind: tuple[int, ...] | None
    scope_abstract_unix: bool
    scope_signal: bool
    required: bool

    def __init__(self, *, read: Iterable[str] = (), write: Iterable[str] = (), execute: Iterable[str] = (),
                 tcp_connect: Iterable[int] | None = (), tcp_bind: Iterable[int] | None = (),
                 scope_abstract_unix: bool = True, scope_signal: bool = True, required: bool = False) -> None:
        _set(self, "read", _paths("landlock.read", read))
        _set(self, "write", _paths("landlock.write", write))
        _set(self, "execute", _paths("landlock.execute", execute))
        _set(self, "tcp_connect", _ports("landlock.tcp_connect", tcp_connect))
        _set(self, "tcp_bind", _ports("landlock.tcp_bind", tcp_bind))
        _set(self, "scope_abstract_unix", _bool("landlock.scope_abstract_unix", scope_abstract_unix))
        _set(self, "scope_signal", _bool("landlock.scope_signal", scope_signal))
        _set(self, "required", _bool("landlock.required", required))

    def to_dict(self) -> dict[str, object]:
        """Plain-data form (the JSON object inside the plan)."""
        return {
            "read": list(self.read), "write": list(self.write), "execute": list(self.execute),
            "tcp_connect": None if self.tcp_connect is None else list(self.tcp_connect),
            "tcp_bind": None if self.tcp_bind is None else list(self.tcp_bind),
            "scope_abstract_unix": self.scope_abstract_unix, "scope_signal": self.scope_signal,
            "required": self.required,
        }


class SeccompPolicy(Frozen):
    """The seccomp filter (see :mod:`ext_sdk.sandbox.seccomp` for exactly what it denies).

    * ``allow_inet``: AF_INET/AF_INET6 sockets allowed (TCP and UDP!) besides
      AF_UNIX and AF_NETLINK. Pair with Landlock ``tcp_connect`` to limit ports.
    * ``allow_exec``: ``execve``/``execveat`` allowed after boot. Must be true
      with an ``exec_argv`` (a filter survives exec, so denying exec would deny
      the boot's own exec); confine such a program's children with Landlock
      ``execute`` instead.
    * ``required``: the child fails (exit 5) when the filter cannot be loaded.
    """

    FIELDS = ("allow_inet", "allow_exec", "required")
    __slots__ = tuple(sorted(FIELDS))
    allow_inet: bool
    allow_exec: bool
    required: bool

    def __init__(self, *, allow_inet: bool = False, allow_exec: bool = False, required: bool = True) -> None:
        _set(self, "allow_inet", _bool("seccomp.allow_inet", allow_inet))
        _set(self, "allow_exec", _bool("seccomp.allow_exec", allow_exec))
        _set(self, "required", _bool("seccomp.required", required))

    def to_dict(self) -> dict[str, object]:
        """Plain-data form (the JSON object inside the plan)."""
        return {"allow_inet": self.allow_inet, "allow_exec": self.allow_exec, "required": self.required}


def _rlimits(values: Mapping[str, tuple[int, int]] | Mapping[str, list[int]]) -> types.MappingProxyType[
        str, tuple[int, int]]:
    import resource

    out: dict[str, tuple[int, int]] = {}
    if not isinstance(values, dict | types.MappingProxyType):
        raise PlanError(f"rlimits: expected a mapping, got {values!r}")
    for name, pair in values.items():
        if not isinstance(name, str) or not name.isupper() or not hasattr(resource, "RLIMIT_" + name):
            raise PlanError(f"rlimits: unknown limit {name!r} (use the RLIMIT_ name without the prefix)")
        if not isinstance(pair, tuple | list) or len(pair) != 2 or any(
                type(v) is not int or v < RLIM_INFINITY for v in pair):
            raise PlanError(f"rlimits: {name}: expected [soft, hard] ints (-1 = unlimited), got {pair!r}")
        soft, hard = pair
        if hard != RLIM_INFINITY and (soft == RLIM_INFINITY or soft > hard):
            raise PlanError(f"rlimits: {name}: soft {soft} above hard {hard}")
        out[name] = (soft, hard)
    return types.MappingProxyType(out)


class BootPlan(Frozen):
    """Everything the child applies to itself, in order: rlimits → user → capabilities → Landlock → seccomp.

    Then it either ``os.execv``\\ s ``exec_argv`` (Node / command extensions;
    ``exec_argv[0]`` must be an absolute path, no PATH search) or, when
    ``exec_argv`` is ``None``, stays in this interpreter and runs the Python
    SDK on ``run_path`` (``python -m ext_sdk run <run_path>``). Exactly one of
    the two is set.

    * ``rlimits``: ``{"AS": (soft, hard), ...}`` — ``resource.RLIMIT_*`` names
      without the prefix, ``-1`` = unlimited. Only ever lowers a hard limit.
      ``NPROC`` counts every process of the real uid and is ignored for uid 0;
      Node needs ``AS`` ≥ 1 GiB (V8 reserves its code range up front);
      ``NOFILE`` below ~64 breaks libzmq (the Node SDK, a command's binding).
    * ``user``: ``(uid, gid)`` to become — no supplementary groups, real,
      effective and saved ids all set — or ``None`` (keep the ids). Needs
      ``CAP_SETUID``/``CAP_SETGID`` (and ``CAP_SETPCAP``: the bounding set is
      emptied first, while it can be); every capability is gone afterwards.
    * ``drop_capabilities``: empty the bounding, ambient, inheritable,
      permitted and effective capability sets (matters when the child runs as
      root: no CAP_NET_ADMIN over the netlink sockets it may open, no
      CAP_DAC_OVERRIDE, no CAP_KILL; root regains nothing on exec either).
    * ``landlock`` / ``seccomp``: ``None`` = layer off.
    """

    FIELDS = ("rlimits", "user", "drop_capabilities", "landlock", "seccomp", "exec_argv", "run_path")
    __slots__ = tuple(sorted(FIELDS))
    rlimits: Mapping[str, tuple[int, int]]
    user: tuple[int, int] | None
    drop_capabilities: bool
    landlock: LandlockRules | None
    seccomp: SeccompPolicy | None
    exec_argv: tuple[str, ...] | None
    run_path: str | None

    def __init__(self, *, rlimits: Mapping[str, tuple[int, int]] | None = None,
                 user: tuple[int, int] | list[int] | None = None, drop_capabilities: bool = True,
                 landlock: LandlockRules | None = None, seccomp: SeccompPolicy | None = None,
                 exec_argv: Iterable[str] | None = None, run_path: str | None = None) -> None:
        _set(self, "rlimits", _rlimits(rlimits or {}))
        if user is not None:
            if (not isinstance(user, (tuple, list)) or len(user) != 2
                    or not all(type(i) is int and 0 < i < 2**32 - 1 for i in user)):
                raise PlanError(f"user: expected [uid, gid] (positive ids, not root), got {user!r}")
            user = (user[0], user[1])
        _set(self, "user", user)
        _set(self, "drop_capabilities", _bool("drop_capabilities", drop_capabilities))
        if landlock is not None and not isinstance(landlock, LandlockRules):
            raise PlanError(f"landlock: expected LandlockRules or None, got {landlock!r}")
        if seccomp is not None and not isinstance(seccomp, SeccompPolicy):
            raise PlanError(f"seccomp: expected SeccompPolicy or None, got {seccomp!r}")
        _set(self, "landlock", landlock)
        _set(self, "seccomp", seccomp)
        argv: tuple[str, ...] | None = None
        if exec_argv is not None:
            if isinstance(exec_argv, str):
                raise PlanError("exec_argv: expected a list of strings, got a string")
            argv = tuple(exec_argv)
            if not argv or not all(isinstance(a, str) and "\0" not in a for a in argv):
                raise PlanError(f"exec_argv: expected a non-empty list of strings, got {exec_argv!r}")
            if not argv[0].startswith("/"):
                raise PlanError(f"exec_argv: {argv[0]!r} is not an absolute path (no PATH search)")
        if run_path is not None and (not isinstance(run_path, str) or not run_path or "\0" in run_path):
            raise PlanError(f"run_path: expected a path, got {run_path!r}")
        if (argv is None) == (run_path is None):
            raise PlanError("exactly one of exec_argv and run_path must be set")
        if argv is not None and seccomp is not None and not seccomp.allow_exec:
            raise PlanError("exec_argv needs seccomp.allow_exec: the filter survives exec, so a filter that "
                            "denies execve would deny the boot's own exec (restrict exec with landlock.execute)")
        _set(self, "exec_argv", argv)
        _set(self, "run_path", run_path)

    def to_dict(self) -> dict[str, object]:
        """Plain-data form of the plan."""
        return {
            "rlimits": {name: list(pair) for name, pair in self.rlimits.items()},
            "user": None if self.user is None else list(self.user),
            "drop_capabilities": self.drop_capabilities,
            "landlock": None if self.landlock is None else self.landlock.to_dict(),
            "seccomp": None if self.seccomp is None else self.seccomp.to_dict(),
            "exec_argv": None if self.exec_argv is None else list(self.exec_argv),
            "run_path": self.run_path,
        }

    def to_json(self) -> str:
        """The plan as JSON (for people and tests; :meth:`decode` takes it too)."""
        import json

        return json.dumps(self.to_dict(), separators=(",", ":"))

    def encode(self) -> str:
        """The value of :data:`ENV_PLAN` for the child: the ``marshal`` form of :meth:`to_dict`, in hex."""
        return marshal.dumps(self.to_dict()).hex()

    def env(self) -> dict[str, str]:
        """``{ENV_PLAN: encode()}``, to merge into the child's (clean) environment."""
        return {ENV_PLAN: self.encode()}

    @classmethod
    def from_json(cls, text: str) -> BootPlan:
        """Parse and validate the JSON form; raises :class:`PlanError`."""
        import json

        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PlanError(f"not JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def decode(cls, text: str) -> BootPlan:
        """Parse and validate :data:`ENV_PLAN`'s value (:meth:`encode`'s form, or JSON); raises :class:`PlanError`."""
        if text.lstrip().startswith("{"):
            return cls.from_json(text)
        try:
            data = marshal.loads(bytes.fromhex(text))
        except (ValueError, EOFError, TypeError) as exc:
            raise PlanError(f"neither JSON nor an encoded plan: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> BootPlan:
        """Build from the plain-data form; raises :class:`PlanError` on unknown keys or bad values."""
        top = _obj("", data, cls.FIELDS)
        try:
            landlock = top.get("landlock")
            seccomp = top.get("seccomp")
            return cls(
                rlimits=top.get("rlimits"),  # type: ignore[arg-type]
                user=top.get("user"),  # type: ignore[arg-type]
                drop_capabilities=top.get("drop_capabilities", True),  # type: ignore[arg-type]
                landlock=None if landlock is None else LandlockRules(**_obj(  # type: ignore[arg-type]
                    "landlock", landlock, LandlockRules.FIELDS)),
                seccomp=None if seccomp is None else SeccompPolicy(**_obj(  # type: ignore[arg-type]
                    "seccomp", seccomp, SeccompPolicy.FIELDS)),
                exec_argv=top.get("exec_argv"),  # type: ignore[arg-type]
                run_path=top.get("run_path"),  # type: ignore[arg-type]
            )
        except TypeError as exc:  # e.g. a number where a list of paths belongs
            raise PlanError(str(exc)) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BootPlan:
        """Parse the plan from :data:`ENV_PLAN` (``os.environ`` by default); :class:`PlanError` when absent."""
        text = (os.environ if environ is None else environ).get(ENV_PLAN)
        if text is None:
            raise PlanError(f"{ENV_PLAN} is not set (the host starts this module with a plan)")
        return cls.decode(text)


def _obj(what: str, data: object, keys: tuple[str, ...]) -> dict[str, object]:
    prefix = f"{what}: " if what else ""
    if not isinstance(data, dict):
        raise PlanError(f"{prefix}expected an object, got {data!r}")
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise PlanError(f"{prefix}unknown key(s) {', '.join(map(repr, unknown))}")
    return data
