"""`kithost new`: the generated extension's own test passes, and it passes the conformance kit as generated."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT

from host import ExtensionHost
from host.cli import main
from host.scaffold import scaffold

JS_READY = shutil.which("node") is not None and (ROOT / "ext_sdk" / "js" / "node_modules").is_dir()


def kithost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host", *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("lang", ["python", pytest.param("js", marks=pytest.mark.skipif(
    not JS_READY, reason="node or ext_sdk/js/node_modules missing (make installs them)"))])
def test_a_new_extension_is_tested_and_conformant_as_generated(tmp_path: Path, lang: str) -> None:
    made = kithost("new", "my-gate", "--lang", lang, "--dir", str(tmp_path))
    assert made.returncode == 0 and "kithost conformance" in made.stdout, made.stderr
    folder = tmp_path / "my-gate"
    if lang == "python":
        own = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
                             capture_output=True, text=True, timeout=120, cwd=folder)
    else:
        own = subprocess.run(["node", "--test"], capture_output=True, text=True, timeout=120, cwd=folder)
    assert own.returncode == 0, own.stdout + own.stderr
    checked = kithost("conformance", str(folder))
    assert checked.returncode == 0 and "PASS" in checked.stdout, checked.stdout + checked.stderr


@pytest.mark.parametrize("lang", ["python", pytest.param("js", marks=pytest.mark.skipif(
    not JS_READY, reason="node or ext_sdk/js/node_modules missing (make installs them)"))])
def test_a_new_extension_takes_its_identity_from_its_manifest(tmp_path: Path, lang: str,
                                                              new_host: Callable[..., ExtensionHost]) -> None:
    folder = scaffold("id-gate", lang, tmp_path)
    manifest = folder / "extension.toml"
    text = manifest.read_text()
    assert 'version = "0.1.0"' in text
    manifest.write_text(text.replace('version = "0.1.0"', 'version = "4.2.0"'))  # the code is left as generated
    ext = new_host().load(folder)
    assert ext.state.value == "ready" and ext.declared.version == "4.2.0" and "conversation" in ext.declared.granted


def test_bad_names_and_existing_folders_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "Bad Name", "--dir", str(tmp_path)]) == 1
    assert "not a valid extension name" in capsys.readouterr().err
    assert main(["new", "ok-name", "--dir", str(tmp_path)]) == 0
    before = (tmp_path / "ok-name" / "main.py").read_text()
    assert main(["new", "ok-name", "--dir", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "ok-name" / "main.py").read_text() == before  # nothing overwritten
