"""A failure inside the host while it answers a ctx call: the extension gets a generic error, the detail
stays in the host's log (a closed stdout once answered ``print`` with ``[Errno 32] Broken pipe``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from conftest import MakeExt, tool_call

from host import ExtensionHost
from host.exthost.services import LocalServices

PRINTER = """
from ext_sdk import Extension, HostCallError
ext = Extension("printer", permissions=["conversation"])

@ext.on("tool_call")
def gate(event, ctx):
    try:
        ctx.print("hello")
    except HostCallError as exc:
        ctx.set_state("error", str(exc))
    ctx.set_state("status", ctx.prompt_confirm("go on?", default=True))
    return None
"""


class _BrokenPipe:
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_host_side_failure_is_answered_generically_and_logged(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost], caplog: pytest.LogCaptureFixture) -> None:
    directory = make_ext("printer", PRINTER, ["tool_call"])
    host = new_host(services=LocalServices(out=_BrokenPipe()))  # type: ignore[arg-type]
    host.load(directory)
    with caplog.at_level(logging.WARNING, logger="kithost.hostcalls"):
        out = host.emit("tool_call", tool_call("ls"))
    assert not out.stopped and not out.failures
    error: Any = host.state.get("printer", "error")
    assert error == "print: the host could not answer (its error is in the host's log)"
    assert "Broken pipe" not in error and "Errno" not in error
    assert "Broken pipe" in caplog.text and "printer" in caplog.text
    # headless: nobody to ask, the prompt is cancelled at once with the default
    assert host.state.get("printer", "status") == {"value": True, "cancelled": True}
