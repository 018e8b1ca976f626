"""A Python extension joins its cgroup while its interpreter starts, never after its own code runs.

The host moves the launch's process tree into the cgroup once the SDK waits at
its secret pipe, and only then writes the secret (host/exthost/sandbox/confine.py
``Confined.adopt``). The extension's module-level code fills 48 MiB at import:
memory is charged to the cgroup a process is in when it touches it (a v1
migration does not move charges), so the cgroup holding it proves the code ran
inside. It also reports its uid.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import psutil
import pytest
from conftest import MakeExt, tool_call

from host import ExtensionHost
from host.exthost.process import descendants

REPORTER = """
import json, os
from ext_sdk import Extension, Block
ext = Extension("joined", permissions=["conversation"])
BLOB = b"\x01" * (48 << 20)  # touched at import
AT_IMPORT = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}

@ext.on("tool_call")
def report(event, ctx):
    return Block(reason=json.dumps(AT_IMPORT))
"""


def test_the_extensions_code_runs_only_inside_its_cgroup_and_uid(make_ext: MakeExt,
                                                               new_host: Callable[..., ExtensionHost]) -> None:
    host = new_host()
    ext = host.load(make_ext("joined", REPORTER, ["tool_call"]))
    confined = ext.confined
    if confined is None or confined.cgroup is None:
        pytest.skip("no cgroup layer on this machine")
    assert confined.join_deferred  # a Python launch: no join step in front of the interpreter
    assert "kithost-cgroup-join" not in confined.spec.argv
    assert ext.process is not None
    root = psutil.Process(ext.process.pid)
    for proc in [root, *descendants(root)]:
        assert confined.cgroup.holds(proc.pid), proc  # every process of the tree, bwrap's included
    charged = confined.cgroup_memory()
    assert charged is not None and charged >= 48 << 20, charged  # the import's 48 MiB are the cgroup's
    seen = json.loads(host.emit("tool_call", tool_call("ls")).reason)
    if confined.lease is not None:  # the boot entered the dedicated uid before the extension was imported
        assert (seen["uid"], seen["gid"], seen["groups"]) == (confined.lease.uid, confined.lease.gid, [])

