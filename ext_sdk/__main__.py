"""``python -m ext_sdk``: run an extension file under a kithost host.

Usage::

    python -m ext_sdk run path/to/ext.py     # what the host launches
    python -m ext_sdk check path/to/ext.py   # load the file, print what it declares
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from .wire import EXIT_BAD_EXTENSION, EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ext_sdk",
        description="Run or check a kithost extension written with ext_sdk.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="serve the extension (the host starts this; needs the host's environment)")
    run.add_argument("path", help="extension file (.py)")
    check = sub.add_parser("check", help="load the extension and print its declaration as JSON")
    check.add_argument("path", help="extension file (.py)")
    args = parser.parse_args(argv)
    if args.command == "run":
        from .runtime import serve

        return serve(args.path)
    from .runtime import load_extension

    try:
        extension = load_extension(args.path)
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
