"""Two hosts alive in one process can load extensions of the same name (their cgroups, slots and
sockets never meet)."""

from __future__ import annotations

from collections.abc import Callable

from conftest import MakeExt, tool_call

from host import ExtensionHost

GATE = """
from ext_sdk import Extension, Block
ext = Extension("same", permissions=["conversation"])

@ext.on("tool_call")
def gate(event, ctx):
    return Block(reason="from " + __import__("os").environ["KITHOST_RUNTIME"])
"""


def test_two_hosts_in_one_process_load_the_same_extension(make_ext: MakeExt,
                                                          new_host: Callable[..., ExtensionHost]) -> None:
    folder = make_ext("same", GATE, ["tool_call"])
    first, second = new_host(), new_host()
    a = first.load(folder)
    b = second.load(folder)
    assert a.state.running and b.state.running
    assert a.confined is not None and b.confined is not None
    if a.confined.cgroup is not None and b.confined.cgroup is not None:
        assert a.confined.cgroup.paths != b.confined.cgroup.paths
    reasons = {first.emit("tool_call", tool_call("ls")).reason, second.emit("tool_call", tool_call("ls")).reason}
    assert len(reasons) == 2 and all(r.startswith("from ") for r in reasons)  # each host's own process answered
    first.close()
    assert second.emit("tool_call", tool_call("ls")).stopped  # closing one host leaves the other's alone
