"""``ctx.reload``: an extension asks the host to reload an extension (itself by default), with real processes."""

from __future__ import annotations

from collections.abc import Callable

from conftest import MakeExt, wait_for

from host import ExtensionHost

SELF_RELOADING = """
from ext_sdk import Extension
VERSION = {version}
ext = Extension()

@ext.command("again", "reload me from my files")
def again(args, ctx):
    ctx.reload(args)
    return "asked"

@ext.command("version", "which version runs")
def version(args, ctx):
    return str(VERSION)
"""



def test_an_extension_reloads_itself_from_its_files(make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    directory = make_ext("selfish", SELF_RELOADING.format(version=1), [], permissions=["agent"])
    host = new_host()
    ext = host.load(directory)
    first_pid = ext.process.pid if ext.process else None
    assert host.run_command("selfish", "version", "") == ("1", False)
    (directory / "main.py").write_text(SELF_RELOADING.format(version=2))
    assert host.run_command("selfish", "again", "") == ("asked", False)  # returns at once: the reload runs after
    assert wait_for(lambda: ext.reloads == 1), ext.transitions[-3:]
    assert host.run_command("selfish", "version", "") == ("2", False)
    assert ext.restarts == 0 and ext.process is not None and ext.process.pid != first_pid


def test_reload_is_refused_without_the_agent_permission_or_for_an_unknown_name(
        make_ext: MakeExt, new_host: Callable[..., ExtensionHost]) -> None:
    plain = make_ext("plain", SELF_RELOADING.format(version=1), [], permissions=[])
    granted = make_ext("granted", SELF_RELOADING.format(version=1), [], permissions=["agent"])
    host = new_host()
    host.load_many([plain, granted])
    text, is_error = host.run_command("plain", "again", "")
    assert is_error and "permission denied" in text and "'agent'" in text
    text, is_error = host.run_command("granted", "again", "nobody")
    assert is_error and "reload: " in text and "nobody" in text
    assert host.extension("plain").reloads == 0 and host.extension("granted").reloads == 0

