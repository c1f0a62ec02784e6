"""Every lesson's first code cell (``import course_setup``, the module beside the lessons) finds
``helpers`` on a kernel started elsewhere (a GPU server, Colab).

The cell is run as a learner's kernel would run it, in a fresh Python started with ``-S`` (no
site-packages, so the course is *not* installed): from inside a checkout it must put the checkout on
``sys.path``; outside any checkout it must raise an ``ImportError`` that says what to do. In the course's
own environment (installed) it must leave ``sys.path`` alone. Another project's package that is also
called ``helpers`` (no ``COURSE`` marker) is never taken for the course's.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SETUP = ROOT / "notebooks" / "course_setup.py"  # what every first cell imports

PROBE = """
import json, sys
before = list(sys.path)
try:
    exec(compile(open(sys.argv[1]).read(), "setup-cell", "exec"))
    import importlib.util
    spec = importlib.util.find_spec("helpers")
    print(json.dumps({"added": [p for p in sys.path if p not in before],
                      "helpers": spec.origin if spec else None,
                      "modules": sorted(m for m in sys.modules if m.split(".")[0] == "helpers")}))
except ImportError as err:
    print(json.dumps({"error": str(err)}))
"""


def setup_cell(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    src = code["source"]
    return "".join(src) if isinstance(src, list) else src


def probe(tmp_path: Path, path: Path, cwd: Path, *flags: str, env: dict | None = None) -> dict:
    """Run ``path``'s first cell in a fresh Python in ``cwd``, a lesson folder: like ``notebooks/`` and
    ``workspace/``, it holds ``course_setup.py`` (copied there when it is a stand-in folder)."""
    cell = tmp_path / "cell.py"
    cell.write_text(setup_cell(path))
    if not (cwd / SETUP.name).exists():
        (cwd / SETUP.name).write_bytes(SETUP.read_bytes())
    out = subprocess.run([sys.executable, *flags, "-c", PROBE, str(cell)], cwd=cwd, capture_output=True,
                         text=True, timeout=120, env=env)
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


MARKER = 'COURSE = "deepseek-v3-course"'


def decoy(folder: Path) -> Path:
    """Another project's ``helpers`` package (no course marker) in ``folder``, with a submodule it imports."""
    pkg = folder / "helpers"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Not the course."""\nfrom . import utils  # noqa: F401\n')
    (pkg / "utils.py").write_text("VALUE = 1\n")
    return pkg


def test_the_course_package_carries_the_marker():
    import helpers

    assert helpers.COURSE == "deepseek-v3-course"
    lines = (ROOT / "helpers" / "__init__.py").read_text(encoding="utf-8").splitlines()
    assert any(line.startswith(MARKER) for line in lines)  # the text the setup cell looks for


def test_every_notebook_has_the_same_one_line_setup_cell():
    cells = {path.name: setup_cell(path) for path in NOTEBOOKS}
    assert len(NOTEBOOKS) >= 7 and len(set(cells.values())) == 1, sorted(cells)
    cell = cells[NOTEBOOKS[0].name]
    assert "find the course's `helpers` package" in cell  # scripts/mark_slides.py skips it by this
    assert cell.startswith("import course_setup") and len(cell.strip().splitlines()) == 1


@pytest.mark.parametrize("path", NOTEBOOKS[:1], ids=[p.stem for p in NOTEBOOKS[:1]])
def test_first_cell_skips_a_decoy_on_sys_path(tmp_path, path):
    elsewhere = tmp_path / "other_project"
    decoy(elsewhere)
    env = {**os.environ, "PYTHONPATH": str(elsewhere)}
    found = probe(tmp_path, path, ROOT / "notebooks", "-S", env=env)
    assert "error" not in found, found
    assert [Path(p).resolve() for p in found["added"]] == [ROOT]
    assert Path(found["helpers"]).resolve() == ROOT / "helpers" / "__init__.py"
    assert found["modules"] == [], found  # the decoy and its submodule are forgotten


@pytest.mark.parametrize("path", NOTEBOOKS[:1], ids=[p.stem for p in NOTEBOOKS[:1]])
def test_first_cell_skips_a_decoy_in_the_working_directory(tmp_path, path):
    course = tmp_path / "course"  # a stand-in checkout: only the marker matters to the cell
    (course / "helpers").mkdir(parents=True)
    (course / "helpers" / "__init__.py").write_text(f'"""The course."""\n\n{MARKER}\n')
    work = course / "notebooks"
    decoy(work)  # `import helpers` from here finds this one first
    found = probe(tmp_path, path, work, "-S")
    assert "error" not in found, found
    assert [Path(p).resolve() for p in found["added"]] == [course.resolve()]
    assert Path(found["helpers"]).resolve() == (course / "helpers" / "__init__.py").resolve()
    assert found["modules"] == [], found


@pytest.mark.parametrize("path", NOTEBOOKS[:1], ids=[p.stem for p in NOTEBOOKS[:1]])
def test_first_cell_refuses_when_only_a_decoy_exists(tmp_path, path):
    work = tmp_path / "elsewhere"
    pkg = decoy(work)
    found = probe(tmp_path, path, work, "-S")
    error = found.get("error", "")
    assert "not found" in error and "pip install -e ." in error, found
    assert "another package named helpers" in error and "ignored" in error and str(pkg) in error, found


PRINT_OUTPUT_WAIT = """
def pytest_collection_finish(session):
    waits = sorted({getattr(item, "output_timeout", None) for item in session.items}, key=str)
    print("OUTPUT-WAIT", waits)
    print("SANITIZE", session.config.option.nbval_sanitize_with)
"""


def test_nbval_waits_long_enough_for_a_long_cells_last_outputs(tmp_path):
    """nbval's hard-coded 5 s wait for a cell's remaining output messages failed notebook 00's training
    cell on a loaded CI machine although the cell ran; ``notebooks/conftest.py`` raises it for every
    collected cell (collection only: no kernel is started)."""
    (tmp_path / "print_output_wait.py").write_text(PRINT_OUTPUT_WAIT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--collect-only", "-q",
                          "-p", "no:cacheprovider", "-p", "print_output_wait", str(NOTEBOOKS[0])],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("OUTPUT-WAIT"))
    assert line == "OUTPUT-WAIT [60]"
    # and the checked cells are compared after the course's sanitisation (float noise between builds)
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("SANITIZE"))
    assert Path(line.split(" ", 1)[1]) == ROOT / "notebooks" / "nbval_sanitize.cfg"
