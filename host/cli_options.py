"""Options that several command modules give their parsers, and reading the config they name: defined once.

``cli.py`` (the main parser and ``ext``), ``forensics/commands.py`` (``replay``, ``ext bisect``,
``ext call``) and ``remote/commands.py`` (``worker``) each add ``-e/--extension``; every command reads the
operator config from ``--config`` (set on a shared parent parser, absent when not given).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import HostConfig, load_config

__all__ = ["EXTENSION_HELP", "add_extension_paths", "config_of"]

#: What ``-e`` takes, for commands that add nothing to it.
EXTENSION_HELP = "extension directory, manifest, or directory of extensions (repeatable)"


def add_extension_paths(parser: argparse.ArgumentParser, help: str = EXTENSION_HELP,  # noqa: A002 - argparse's name
                        required: bool = False) -> None:
    """``-e/--extension PATH`` (repeatable; ``args.extension`` is a list of paths, empty when not given)."""
    if required:
        parser.add_argument("-e", "--extension", required=True, action="append", type=Path, metavar="PATH",
                            help=help)
    else:
        parser.add_argument("-e", "--extension", action="append", default=[], type=Path, metavar="PATH", help=help)


def config_of(args: argparse.Namespace) -> HostConfig:
    """The operator config the command line names with ``--config``, else the default one."""
    return load_config(getattr(args, "config", None))
