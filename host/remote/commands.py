"""``kithost keys new|show`` and ``kithost worker``: argument parsing and the calls they make, no logic.

Every problem is a :class:`~host.errors.HostError` (one line, exit status 1), printed by :func:`host.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from ..cli_options import add_extension_paths, config_of

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add ``keys`` and ``worker`` to the top-level subcommands."""
    keys = sub.add_parser("keys", parents=[common], help="CURVE key pairs for remote workers (docs/remote.md)",
                          description="CURVE key pairs for hosts and remote workers.")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    new = keys_sub.add_parser("new", parents=[common], help="create NAME.key (public) and NAME.key_secret (0600)")
    new.add_argument("name", metavar="NAME")
    new.add_argument("--dir", type=Path, metavar="DIR",
                     help="where to write them (default $XDG_CONFIG_HOME/kithost/keys)")
    new.add_argument("--force", action="store_true", help="replace an existing pair of that name")
    new.set_defaults(func=_keys_new)
    show = keys_sub.add_parser("show", parents=[common], help="print the public key of a key file")
    show.add_argument("file", type=Path, metavar="FILE")
    show.set_defaults(func=_keys_show)

    worker = sub.add_parser(
        "worker", parents=[common], help="run extensions here for hosts elsewhere (CURVE-secured TCP)",
        description="Serve extensions to remote hosts: each launch request starts the extension here, confined "
                    "exactly as a host would, and relays its channels over TCP secured with CurveZMQ. Only hosts "
                    "whose public key is allowed can connect; others are refused and counted. See docs/remote.md.")
    worker.add_argument("--listen", required=True, metavar="tcp://HOST:PORT",
                        help="where the link listens (and the relays, on random ports of the same interface); "
                             "a non-loopback address exposes the worker to that network")
    worker.add_argument("--key", required=True, type=Path, metavar="SECRET_FILE",
                        help="this worker's secret key file (`kithost keys new NAME` writes NAME.key_secret)")
    worker.add_argument("--allow", required=True, action="append", metavar="KEYS",
                        help="host public keys allowed: a .key file, a folder of them, or 40 Z85 characters "
                             "(repeatable)")
    add_extension_paths(worker, "an extension to offer (directory, manifest, or directory of extensions; "
                                "repeatable)", required=True)
    worker.set_defaults(func=_worker)


def _keys_new(args: argparse.Namespace) -> int:
    from .keys import default_key_dir, load_public, new_keypair

    public, secret = new_keypair(args.dir or default_key_dir(), args.name, force=args.force)
    print(f"public key  {public}  (give this file, or the key below, to the peers that must trust it)")
    print(f"secret key  {secret}  (mode 0600: keep it here)")
    print(load_public(public).decode())
    return 0


def _keys_show(args: argparse.Namespace) -> int:
    from .keys import load_public

    print(load_public(args.file).decode())
    return 0


def _worker(args: argparse.Namespace) -> int:
    from ..errors import HostError
    from ..exthost.discovery import discover
    from ..exthost.host import private_runtime_dir, runtime_base
    from ..exthost.orphans import sweep_orphans
    from .keys import allow_list, load_keypair
    from .worker import Worker

    config = config_of(args)
    keys = load_keypair(args.key)
    allowed = allow_list(args.allow)
    found = discover((), args.extension)
    if found.problems:
        raise HostError("; ".join(message for _, message in found.problems))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="kithost worker: %(message)s")
    base = config.runtime_dir or runtime_base()
    sweep_orphans(base)  # what a worker or host killed with SIGKILL left behind
    runtime = private_runtime_dir(base)
    # marks the directory as a live kithost process's: another host's sweep leaves it (and its extensions) alone
    (runtime / "host.json").write_text(json.dumps({"pid": os.getpid(), "started": time.time(), "cwd": os.getcwd(),
                                                   "worker": True}))
    worker = Worker(config, keys, allowed, args.listen, list(found.manifests), runtime)

    def stop(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"kithost worker: listening on {worker.address} (public key {keys.public.decode()}); offering "
          f"{', '.join(sorted(worker.manifests))}; sandbox {worker.level}", flush=True)
    try:
        worker.serve()
    finally:
        worker.close()
        shutil.rmtree(runtime, ignore_errors=True)
    return 0
