"""How the host's interpreter starts an extension process: without ``site``, on the host's package paths.

The host (``host.exthost.launch.python_command``) runs::

    python -I -S -c "import sys;sys.path+=[SITE_DIR, ..., SDK_PARENT];from ext_sdk.startup import start;\\
                     start(ENTRY,[SITE_DIR, ...])" ARGS...

``-S`` skips the ``site`` module at start-up. Its one job here would be to
put the virtualenv's ``site-packages`` on ``sys.path`` and run the ``.pth``
files there — and kithost's own editable install is such a file: it imports
``pathlib``, ``urllib.parse``, ``importlib.util`` and ``re`` into every
process just to find ``ext_sdk``. That is ~10 ms of an extension's ~45 ms
start-up on the project's 2-core machine (issue 10: cold start ≤ 2× a bare
interpreter). Instead the host names the directories, and:

* the command appends the site directories and then the SDK's parent (when
  it is not one of them) to ``sys.path``, after the standard library, where
  ``site`` puts them; :func:`start` notes the site directories and calls
  ``main()`` of ``ENTRY`` (``ext_sdk.sandbox.boot`` or ``ext_sdk.__main__``),
  with ``sys.argv`` = ``["-c", *ARGS]``;
* :func:`run_pth_files` — called by the runtime after confinement, before the
  extension's code — processes the ``.pth`` files of those directories as
  ``site`` does (path lines and ``import`` lines, in name order), except
  kithost's own editable-install finder (:data:`OWN_EDITABLE_PTH`), whose job
  the SDK's parent on ``sys.path`` already does.

So an extension sees the same packages as under ``site``; what differs is
that ``site`` itself is not imported (no ``exit``/``quit``/``help`` builtins:
use ``sys.exit``) and ``sys.prefix`` is the base interpreter's.
"""

from __future__ import annotations

import sys

__all__ = ["OWN_EDITABLE_PTH", "SITE_DIRS", "run_pth_files", "start"]

#: File-name prefix of kithost's own editable install (``pip install -e``); not run, see the module doc.
OWN_EDITABLE_PTH = "__editable__.kithost-"
#: The site directories :func:`start` was given (``[]`` in a process not started that way).
SITE_DIRS: list[str] = []


def start(entry: str, site_dirs: list[str]) -> None:
    """Note ``site_dirs`` (already on ``sys.path``) and exit with ``ENTRY.main()``'s status (never returns)."""
    SITE_DIRS[:] = site_dirs
    module = __import__(entry, fromlist=["main"])
    sys.exit(module.main())


def run_pth_files() -> None:
    """Process the ``.pth`` files of :data:`SITE_DIRS` as ``site`` would (not kithost's own); once."""
    directories, SITE_DIRS[:] = list(SITE_DIRS), []
    if not directories:
        return
    import os
    import site  # the module only: with -S its start-up work has not run, and this does not run it

    known = {os.path.normcase(p) for p in sys.path}
    for directory in directories:
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".pth") and not n.startswith(".")
                           and not n.startswith(OWN_EDITABLE_PTH))
        except OSError:
            continue
        for name in names:
            site.addpackage(directory, name, known)
