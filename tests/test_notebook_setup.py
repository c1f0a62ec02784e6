"""Every lesson's first code cell finds ``helpers`` on a kernel started elsewhere (a GPU server, Colab).

The cell is run as a learner's kernel would run it, in a fresh Python started with ``-S`` (no
site-packages, so the course is *not* installed): from inside a checkout it must put the checkout on
``sys.path``; outside any checkout it must raise an ``ImportError`` that says what to do. In the course's
own environment (installed) it must leave ``sys.path`` alone.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

PROBE = """
import json, sys
before = list(sys.path)
try:
    exec(compile(open(sys.argv[1]).read(), "setup-cell", "exec"))
    import importlib.util
    spec = importlib.util.find_spec("helpers")
    print(json.dumps({"added": [p for p in sys.path if p not in before],
                      "helpers": spec.origin if spec else None}))
except ImportError as err:
    print(json.dumps({"error": str(err)}))
"""


def setup_cell(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    src = code["source"]
    return "".join(src) if isinstance(src, list) else src


def probe(tmp_path: Path, path: Path, cwd: Path, *flags: str) -> dict:
    cell = tmp_path / "cell.py"
    cell.write_text(setup_cell(path))
    out = subprocess.run([sys.executable, *flags, "-c", PROBE, str(cell)], cwd=cwd, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_first_cell_locates_helpers_in_a_checkout(tmp_path, path):
    found = probe(tmp_path, path, ROOT / "notebooks", "-S")
    assert "error" not in found, found
    assert [Path(p).resolve() for p in found["added"]] == [ROOT]
    assert Path(found["helpers"]).resolve() == ROOT / "helpers" / "__init__.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_first_cell_says_what_to_do_outside_a_checkout(tmp_path, path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    found = probe(tmp_path, path, outside, "-S")
    assert "pip install -e ." in found.get("error", ""), found


@pytest.mark.slow  # imports torch once per notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_first_cell_does_nothing_when_installed(tmp_path, path):
    found = probe(tmp_path, path, tmp_path)
    assert found["added"] == [] and Path(found["helpers"]).resolve().parent == ROOT / "helpers", found
