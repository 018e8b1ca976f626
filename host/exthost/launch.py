"""The one place that decides how an extension process is started.

:func:`prepare_launch` makes one launch of an extension: its private 0700
directory (``x<slot>`` under the host's runtime directory) with the socket
paths (:class:`Endpoints`), a fresh per-launch HMAC key written to a 0600
secret file, a ZAP domain of its own (:mod:`.peers` admits only the launched
process tree in it), the extension's work directory, and the
:class:`LaunchSpec` — argv,
environment, working directory — from :func:`build_launch`. Nothing else in
the host builds a command line or creates endpoints, so confinement
(bubblewrap, Landlock, seccomp, rlimits) can wrap this one spec.
:meth:`Launch.cleanup` removes the sockets and the secret again.

Environment contract (the whole environment; nothing of the host's leaks in):

===================================  ==============================================
``PATH``                             ``/usr/local/bin:/usr/bin:/bin`` plus the
                                     directory of the Python interpreter
``HOME``, ``TMPDIR``                 the extension's private work directory
``LANG``                             ``C.UTF-8``
``KITHOST_EVENTS``                   ``ipc://`` endpoint of the events channel
``KITHOST_CALLS``                    ``ipc://`` endpoint of the host-calls channel
``KITHOST_CONTROL``                  ``ipc://`` endpoint of the control channel
``KITHOST_SECRET_FILE``              0600 file with the per-launch HMAC key (deleted
                                     after the handshake); a named pipe for a warm
                                     spare (read blocks until the host starts it)
``KITHOST_PROTOCOL_VERSIONS``        comma-separated versions the host speaks
``KITHOST_EXTENSION``                the extension's name
``KITHOST_EXTENSION_VERSION``        its manifest's version
``KITHOST_EXTENSION_PERMISSIONS``    its manifest's permissions, comma-separated
``KITHOST_RUNTIME``                  the host's private directory (children inherit
                                     it; a later host kills orphans of a dead host)
(manifest ``[env]``)                 the extension's own settings, if any
===================================  ==============================================
"""

from __future__ import annotations

import errno
import functools
import os
import secrets
import shutil
import site
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ext_sdk
from ext_sdk.wire import (
    ENV_CALLS,
    ENV_CONTROL,
    ENV_EVENTS,
    ENV_NAME,
    ENV_PERMISSIONS,
    ENV_SECRET_FILE,
    ENV_VERSION,
    ENV_VERSIONS,
    PROTOCOL_VERSIONS,
)

from .bytecode import ensure_sdk_bytecode
from .manifest import Manifest
from .orphans import ENV_RUNTIME

__all__ = ["Endpoints", "Launch", "LaunchSpec", "build_launch", "package_paths", "prepare_launch", "python_command"]


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The private directory of one extension and the paths inside it."""

    #: 0700 directory holding the sockets and the secret file.
    directory: Path

    @property
    def events(self) -> str:
        return f"ipc://{self.directory}/e"

    @property
    def calls(self) -> str:
        return f"ipc://{self.directory}/c"

    @property
    def control(self) -> str:
        return f"ipc://{self.directory}/k"

    @property
    def secret_file(self) -> Path:
        return self.directory / "secret"

    @property
    def work_dir(self) -> Path:
        return self.directory / "w"


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """How to start one extension process."""

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path
    #: Names of processes that only wrap the extension (``bwrap``): the shutdown ladder's SIGTERM goes to
    #: the processes inside them, since a wrapper ends the whole sandbox on SIGTERM.
    wrappers: frozenset[str] = frozenset()


def _python() -> str:
    # The venv's interpreter, never a shim (a pyenv shim adds ~65 ms per start).
    return sys.executable


@functools.cache
def package_paths() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(site directories, what to append to sys.path)`` for an extension interpreter started with ``-S``."""
    site_dirs = tuple(d for d in site.getsitepackages() if os.path.isdir(d))
    sdk_parent = str(Path(ext_sdk.__file__).resolve().parent.parent)
    return site_dirs, site_dirs + ((sdk_parent,) if sdk_parent not in site_dirs else ())


def python_command(entry: str, *args: str) -> tuple[str, ...]:
    """The argv that runs ``main()`` of module ``entry`` (``ext_sdk.__main__``, ``ext_sdk.sandbox.boot``) in
    the host's interpreter, isolated (``-I``) and without ``site`` (``-S``): :mod:`ext_sdk.startup` says why
    and how the packages are found instead; ``args`` become ``sys.argv[1:]``."""
    ensure_sdk_bytecode()  # the boot and the SDK, for every runtime: the boot runs before node or a command too
    site_dirs, paths = package_paths()
    code = (f"import sys;sys.path+={list(paths)!r};from ext_sdk.startup import start;"
            f"start({entry!r},{list(site_dirs)!r})")
    return (_python(), "-I", "-S", "-c", code, *args)


def build_launch(manifest: Manifest, endpoints: Endpoints, host_dir: Path | None = None) -> LaunchSpec:
    """The argv/env/cwd for ``manifest``; raises ``FileNotFoundError`` if its runtime is missing."""
    if manifest.runtime == "python":
        argv: tuple[str, ...] = python_command("ext_sdk.__main__", "run", str(manifest.main))
    elif manifest.runtime == "node":
        node = shutil.which("node")
        if node is None:
            raise FileNotFoundError("runtime 'node' is not installed (no 'node' on PATH)")
        argv = (node, str(manifest.main))
    else:
        argv = manifest.command
    path_dirs = [str(Path(_python()).parent), "/usr/local/bin", "/usr/bin", "/bin"]
    if not os.path.isabs(argv[0]) and "/" in argv[0]:  # a relative path: from the extension's folder
        argv = (str(manifest.directory / argv[0]), *argv[1:])
    if not os.path.isabs(argv[0]):  # a bare program name: found on the extension's PATH, as its shell would
        program = shutil.which(argv[0], path=os.pathsep.join(path_dirs))
        if program is None:
            raise FileNotFoundError(f"program {argv[0]!r} of the manifest's command is not on the extension's PATH "
                                    f"({os.pathsep.join(dict.fromkeys(path_dirs))})")
        argv = (program, *argv[1:])
    env = {
        **manifest.env,
        "PATH": os.pathsep.join(dict.fromkeys(path_dirs)),
        "HOME": str(endpoints.work_dir),
        "TMPDIR": str(endpoints.work_dir),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        ENV_EVENTS: endpoints.events,
        ENV_CALLS: endpoints.calls,
        ENV_CONTROL: endpoints.control,
        ENV_SECRET_FILE: str(endpoints.secret_file),
        ENV_VERSIONS: ",".join(str(v) for v in PROTOCOL_VERSIONS),
        ENV_NAME: manifest.name,
        ENV_VERSION: manifest.version,
        ENV_PERMISSIONS: ",".join(manifest.permissions),
    }
    if host_dir is not None:
        env[ENV_RUNTIME] = str(host_dir)  # inherited by its children: lets a later host sweep up orphans
    return LaunchSpec(argv=argv, env=env, cwd=manifest.directory)


@dataclass(frozen=True, slots=True)
class Launch:
    """Everything one start of an extension needs: endpoints, secret, ZAP domain, and how to run it."""

    endpoints: Endpoints
    #: The per-launch HMAC key (also in ``endpoints.secret_file`` until the handshake ends).
    secret: bytes
    #: ZAP domain of this launch's sockets (unique per launch).
    domain: str
    spec: LaunchSpec
    #: A warm spare: the secret file is a named pipe, and the process waits at reading it until
    #: :meth:`unpark` writes the secret (see :func:`prepare_launch`).
    parked: bool = False

    def unpark(self, alive: Callable[[], bool], timeout_s: float,
               before: Callable[[], None] | None = None) -> None:
        """Hand a parked process its secret, which lets it go on to load the extension and say ``hello``.

        The pipe is opened for writing only once the process has opened it for reading (the open would fail
        with ``ENXIO`` before), so the secret is never written into a pipe nobody reads. ``before()`` runs
        then — the process is waiting, none of the extension's code has run — and the secret is written
        after it returns; if it raises, the pipe is closed empty (the process exits) and the error goes on.
        Raises ``TimeoutError`` when the process has not opened the pipe within ``timeout_s``,
        ``ProcessLookupError`` when it exited first, ``OSError`` otherwise.
        """
        deadline = time.monotonic() + timeout_s
        path = self.endpoints.secret_file
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
            if not alive():
                raise ProcessLookupError("the spare exited before it read its secret")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the spare did not read its secret within {timeout_s:g} s")
            time.sleep(0.0005)
        try:
            if before is not None:
                before()
            os.write(fd, self.secret)  # 32 bytes < PIPE_BUF: one atomic write into an empty pipe
            # Before the reader sees end of file (our close), the path becomes an ordinary secret file again
            # (same owner, group and mode), as for any launch until the handshake: the extension's own code
            # runs only after that end of file, and may read the path, where a second read of the pipe would
            # block for ever.
            self._secret_as_file(path)
        finally:
            os.close(fd)  # the reader sees end of file after the secret

    def _secret_as_file(self, path: Path) -> None:
        """Put an ordinary file with the secret at ``path`` (a pipe now), with the pipe's owner, group and mode."""
        st = os.stat(path)
        temporary = path.with_name(path.name + ".new")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, self.secret)
            if st.st_gid != os.getegid():  # the dedicated uid's group (uids.share_private_dir)
                os.fchown(fd, -1, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
        finally:
            os.close(fd)
        os.replace(temporary, path)

    def forget_secret_file(self) -> None:
        """Delete the secret file (the extension has read it, or never will)."""
        self.endpoints.secret_file.unlink(missing_ok=True)

    def cleanup(self) -> None:
        """Remove the socket files and the secret file (idempotent)."""
        for name in ("e", "c", "k", "secret", "secret.new"):
            (self.endpoints.directory / name).unlink(missing_ok=True)


def prepare_launch(manifest: Manifest, host_dir: Path, slot: int, parked: bool = False) -> Launch:
    """Make the private directory and secret file of one launch; raises ``OSError``/``FileNotFoundError``.

    ``parked``: a warm spare. The secret file is then a named pipe (0600, like the file): the process
    starts, pays for its interpreter, sandbox and SDK imports, and blocks reading it; :meth:`Launch.unpark`
    writes the secret when the spare is needed. The Python SDK reads the secret before it imports the
    extension's code, so none of that code runs while the spare waits.
    """
    directory = Path(os.path.join(host_dir, f"x{slot}"))
    directory.mkdir(mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    endpoints = Endpoints(directory)
    endpoints.work_dir.mkdir(mode=0o700, exist_ok=True)
    secret = secrets.token_bytes(32)
    endpoints.secret_file.unlink(missing_ok=True)  # a file or pipe of an earlier launch in this slot
    if parked:
        os.mkfifo(endpoints.secret_file, 0o600)
    else:
        fd = os.open(endpoints.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secret)
    try:
        spec = build_launch(manifest, endpoints, host_dir)
    except OSError:
        endpoints.secret_file.unlink(missing_ok=True)
        raise
    return Launch(endpoints, secret, f"kithost/{manifest.name}/{secrets.token_hex(6)}", spec, parked)
