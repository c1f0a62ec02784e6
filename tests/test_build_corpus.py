"""scripts/build_corpus.py refuses to replace the shipped corpus from another Python release.

Nothing here rebuilds the real corpus: the checks run on fake manifests, and the one full run writes
stand-in texts into a temporary folder.
"""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.data import load_corpus, verify_data

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("build_corpus", ROOT / "scripts" / "build_corpus.py")
build_corpus = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_corpus)


def manifest(tmp_path: Path, python) -> Path:
    path = tmp_path / "MANIFEST.json"
    path.write_text(json.dumps({"python": python, "code_modules": []}))
    return path


def test_same_python_is_allowed(tmp_path):
    assert build_corpus.python_mismatch(manifest(tmp_path, "3.11.7"), running="3.11.7") is None
    assert build_corpus.python_mismatch(tmp_path / "absent.json", running="3.12.1") is None  # nothing shipped


def test_another_python_is_refused_with_what_to_do(tmp_path):
    problem = build_corpus.python_mismatch(manifest(tmp_path, "3.11.7"), running="3.12.1")
    assert "this is Python 3.12.1" in problem and "built with Python 3.11.7" in problem
    assert "git checkout -- data/" in problem and "--force" in problem
    assert build_corpus.python_mismatch(manifest(tmp_path, "3.11.7"), running="3.11.8")  # patch releases too


@pytest.mark.parametrize("text", ["{not json", '{"code_modules": []}', "[]"])
def test_an_unreadable_manifest_is_refused(tmp_path, text):
    path = tmp_path / "MANIFEST.json"
    path.write_text(text)
    problem = build_corpus.python_mismatch(path, running="3.11.7")
    assert "cannot read the Python version" in problem and str(path) in problem


def test_the_shipped_manifest_records_a_version():
    recorded = json.loads((ROOT / "data" / "MANIFEST.json").read_text())["python"]
    running = build_corpus.platform.python_version()
    assert (build_corpus.python_mismatch(running=running) is None) == (recorded == running)


def test_the_script_exits_non_zero_on_another_python(tmp_path):
    """The real script, run from a copied layout whose manifest names another Python: data/ is untouched."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "build_corpus.py", tmp_path / "scripts")
    (tmp_path / "data").mkdir()
    shipped = manifest(tmp_path / "data", "2.7.18")
    before = shipped.read_bytes()
    out = subprocess.run([sys.executable, str(tmp_path / "scripts" / "build_corpus.py")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "refusing to rebuild" in out.stderr and "2.7.18" in out.stderr, out
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["MANIFEST.json"]
    assert shipped.read_bytes() == before


def test_force_rebuilds_and_the_loader_accepts_the_result(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    manifest(data, "2.7.18")
    monkeypatch.setattr(build_corpus, "DATA", data)
    monkeypatch.setattr(build_corpus, "build_docs", lambda: "Some prose. " * 40)
    monkeypatch.setattr(build_corpus, "build_code", lambda: "x = 1\n" * 80)
    monkeypatch.setattr(build_corpus, "find_license", lambda: "PSF LICENSE AGREEMENT\n")
    with pytest.raises(SystemExit, match="refusing to rebuild"):
        build_corpus.main([])
    assert not (data / "docs.txt").exists()
    build_corpus.main(["--force"])
    verify_data(data)
    assert load_corpus(data).texts["code"].startswith("x = 1")
    recorded = json.loads((data / "MANIFEST.json").read_text())["python"]
    assert recorded == build_corpus.platform.python_version()
