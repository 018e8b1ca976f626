"""The extension process imports only what it uses: the SDK's runtime does not load the typed results,
``traceback``, OpenSSL or the host until an extension's file asks for them; nothing on its import path, nor any name
an extension imports from ``ext_sdk``, loads ``dataclasses`` (with ``inspect``) or ``typing``."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-I", "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, timeout=60, check=True)
    return set(out.stdout.split())


def test_the_runtime_and_extension_import_no_results_traceback_openssl_or_host() -> None:
    # OpenSSL (``_hashlib``) alone is about 3.5 MiB of an extension process's own memory: frames up to
    # ext_sdk.wire.MAC_OPENSSL_ABOVE are signed with CPython's built-in SHA-256
    loaded = _modules_after("import ext_sdk.runtime\nfrom ext_sdk import Extension\nfrom ext_sdk.wire import Sealer\n"
                            "Sealer(b'k' * 32).seal('reply', {'id': 1, 'results': []})")
    assert "ext_sdk.runtime" in loaded and "ext_sdk.extension" in loaded
    assert not {"ext_sdk.results", "traceback", "host", "_hashlib", "hashlib"} & loaded
    # the extension speaks ZeroMQ's wire protocol itself (ext_sdk.zmtp): ``import zmq`` costs more than a bare
    # interpreter start, and libzmq's I/O thread a wake-up per frame
    assert not {"zmq", "socket"} & loaded and {"ext_sdk.zmtp", "_socket"} <= loaded


def test_the_runtime_and_every_public_name_import_no_dataclasses_or_inspect() -> None:
    # ``import dataclasses`` imports ``inspect`` (and with it dis, ast, tokenize, linecache): 7 to 12 ms and
    # 1.2 MiB of every extension process (issue 10); the SDK's records are written without it. Every public
    # name is imported, as an extension's ``from ext_sdk import Block, Extension`` does.
    loaded = _modules_after("import ext_sdk.runtime\nfrom ext_sdk import Extension\nfrom ext_sdk import *")
    assert {"ext_sdk.runtime", "ext_sdk.extension", "ext_sdk.results"} <= loaded
    assert not {"dataclasses", "inspect"} & loaded


def test_the_runtime_and_every_public_name_import_no_typing() -> None:
    # ``import typing`` is ~3 ms of an extension's start-up; the SDK imports it for mypy only (``TYPE_CHECKING``)
    loaded = _modules_after("import ext_sdk.runtime\nfrom ext_sdk import *\nimport ext_sdk.hostcalls")
    assert {"ext_sdk.runtime", "ext_sdk.handling", "ext_sdk.results", "ext_sdk.hostcalls"} <= loaded
    assert "typing" not in loaded


def test_a_typed_result_is_imported_when_named() -> None:
    loaded = _modules_after("from ext_sdk import Block\nassert Block('x').to_map()['block'] is True")
    assert "ext_sdk.results" in loaded


def test_the_launch_command_skips_argparse() -> None:
    # ``run PATH`` is what the host launches; without the host's environment it exits 2 (usage) after
    # importing the runtime, never argparse
    code = ("import sys\nfrom ext_sdk.__main__ import main\nrc = main(['run', 'ext.py'])\n"
            "print(rc, 'argparse' in sys.modules, 'ext_sdk.runtime' in sys.modules)")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["2", "False", "True"]
