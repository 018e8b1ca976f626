"""``python -m ext_sdk``: run an extension file under a kithost host.

Usage::

    python -m ext_sdk run path/to/ext.py     # what the host launches
    python -m ext_sdk check path/to/ext.py   # load the file, print what it declares

``run PATH`` (exactly that, as the host launches it) goes straight to
:func:`ext_sdk.runtime.serve`: no ``argparse`` on an extension's start-up
path; anything else is parsed (and ``--help`` shown) by ``argparse``.
"""

from __future__ import annotations

import sys

from .wire import EXIT_BAD_EXTENSION, EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    """Run or check an extension; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "run" and not args[1].startswith("-"):
        from .runtime import serve

        return serve(args[1])
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m ext_sdk",
        description="Run or check a kithost extension written with ext_sdk.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="serve the extension (the host starts this; needs the host's environment)")
    run.add_argument("path", help="extension file (.py)")
    check = sub.add_parser("check", help="load the extension and print its declaration as JSON")
    check.add_argument("path", help="extension file (.py)")
    parsed = parser.parse_args(args)
    if parsed.command == "run":
        from .runtime import serve

        return serve(parsed.path)
    import json
    import traceback

    from .runtime import load_extension

    try:
        extension = load_extension(parsed.path)
    except FileNotFoundError as exc:
        print(f"error: {exc.filename}: no such file", file=sys.stderr)
        return EXIT_USAGE
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        return EXIT_BAD_EXTENSION
    print(json.dumps(extension.hello_fields(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
