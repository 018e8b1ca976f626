"""How an extension's interpreter starts (``ext_sdk/startup.py``, ``host.exthost.launch.python_command``):
``-I -S``, the host's site directories on ``sys.path``, their ``.pth`` files run by the SDK before the
extension's code — except kithost's own editable-install finder — and the same packages as under ``site``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import MakeExt, tool_call

import ext_sdk
from host import ExtensionHost
from host.exthost.launch import package_paths

PROBE = '''
import json, os, sys
from ext_sdk import Block, Extension

ext = Extension("probe", version="0.1.0", permissions=["conversation"])


@ext.on("tool_call")
def report(event, ctx):
    import msgpack  # a package of the host's site directory
    return Block(json.dumps({"no_site": sys.flags.no_site, "isolated": sys.flags.isolated, "path": sys.path,
                             "site_main_ran": hasattr(__builtins__, "exit") if not isinstance(__builtins__, dict)
                             else "exit" in __builtins__, "msgpack": msgpack.__file__,
                             "argv0": sys.argv[0]}))
'''


def test_an_extension_runs_without_site_on_the_hosts_package_paths(
        new_host: Callable[..., ExtensionHost], make_ext: MakeExt) -> None:
    host = new_host()
    host.load(make_ext("probe", PROBE, ["tool_call"]))
    out = host.emit("tool_call", tool_call("ls"))
    seen = json.loads(out.reason or "{}")
    site_dirs, _ = package_paths()
    assert site_dirs and all(d in seen["path"] for d in site_dirs)
    assert seen["no_site"] == 1 and seen["isolated"] == 1 and seen["site_main_ran"] is False
    assert str(Path(ext_sdk.__file__).resolve().parent.parent) in seen["path"]
    assert seen["msgpack"].startswith(tuple(site_dirs))


ENTRY = '''
import sys
from ext_sdk.startup import run_pth_files

def main():
    before = list(sys.path)
    run_pth_files()
    run_pth_files()  # once only
    import builtins
    import json
    print(json.dumps([sys.path[len(before):], sorted(k for k in sys.modules if k.startswith("pth_")),
                      getattr(builtins, "pth_count", 0)]))
    return 7
'''


def test_pth_files_run_like_sites_except_kithosts_own_editable_finder(tmp_path: Path) -> None:
    site_dir = tmp_path / "site-packages"
    extra = tmp_path / "extra"
    for directory in (site_dir, extra, tmp_path / "entry"):
        directory.mkdir()
    (tmp_path / "entry" / "probe_entry.py").write_text(ENTRY)
    (site_dir / "pth_imported.py").write_text("import builtins\n"
                                              "builtins.pth_count = getattr(builtins, 'pth_count', 0) + 1\n")
    (site_dir / "pth_not_run.py").write_text("raise SystemExit('kithost editable finder must not run')\n")
    (site_dir / "a_paths.pth").write_text(f"# a comment\n{extra}\n{tmp_path / 'missing'}\n")
    (site_dir / "b_imports.pth").write_text("import pth_imported\n")
    (site_dir / "__editable__.kithost-0.1.0.pth").write_text("import pth_not_run\n")
    (site_dir / ".hidden.pth").write_text("import pth_not_run\n")
    sdk_parent = str(Path(ext_sdk.__file__).resolve().parent.parent)
    paths = [str(site_dir), sdk_parent, str(tmp_path / "entry")]
    code = f"import sys;sys.path+={paths!r};from ext_sdk.startup import start;start('probe_entry',{[str(site_dir)]!r})"
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 7, out.stderr
    added, imported, count = json.loads(out.stdout)
    assert added == [str(extra)]  # a path line that exists is added, a missing one is not
    assert imported == ["pth_imported"] and count == 1


IDENTITY_FROM_HOST = '''
import json, sys
from ext_sdk import Block, Extension

ext = Extension()  # name, version, permissions: the manifest's, which the host put in the environment


@ext.on("tool_call")
def report(event, ctx):
    return Block(json.dumps({"identity": [ext.name, ext.version, ext.permissions], "manifest": ext.manifest,
                             "read_toml": "tomllib" in sys.modules}))
'''


def test_an_extension_without_restated_identity_takes_the_hosts_and_reads_no_manifest(
        new_host: Callable[..., ExtensionHost], make_ext: MakeExt) -> None:
    host = new_host()
    host.load(make_ext("who-am-i", IDENTITY_FROM_HOST, ["tool_call"], permissions=["conversation", "session"]))
    seen = json.loads(host.emit("tool_call", tool_call("ls")).reason or "{}")
    assert seen == {"identity": ["who-am-i", "0.1.0", ["conversation", "session"]], "manifest": None,
                    "read_toml": False}
