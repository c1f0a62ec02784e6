"""What a reader of a saved notebook sees without a kernel (GitHub, the site): no traceback, no
progress bar frozen at its first frame, no widget constructor repr, no bare True/False echoed under an
exercise check, no absolute machine path. ``scripts/run_notebooks.py`` cleans what it saves; this test
reads the committed notebooks."""

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_notebooks)


def problems(nb) -> list[str]:
    found = []
    for i, cell in enumerate(nb.cells, 1):
        for out in cell.get("outputs", []):
            kind, data = out.get("output_type"), out.get("data", {})
            text = "".join(data.get("text/plain", "")) if data else "".join(out.get("text", ""))
            if kind == "error":
                found.append(f"cell {i}: a traceback ({out.get('ename')})")
            elif kind == "execute_result" and text.strip() in ("True", "False"):
                found.append(f"cell {i}: a bare {text.strip()}")
            elif run_notebooks.TQDM_RE.match(text):
                found.append(f"cell {i}: a frozen progress bar {text[:40]!r}")
            elif run_notebooks.REPR_RE.match(text):
                found.append(f"cell {i}: a widget repr {text[:40]!r}")
            elif run_notebooks.PATH_RE.search(text if kind == "stream" else ""):
                found.append(f"cell {i}: an absolute path")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_saved_outputs_read_well_without_a_kernel(path):
    assert problems(nbformat.read(path, as_version=4)) == []


def test_the_check_finds_each_defect():
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "False"}, execution_count=1),
                    nbformat.v4.new_output("display_data", data={"text/plain": "training:   0%|   | 0/9"}),
                    nbformat.v4.new_output("display_data", data={"text/plain": "VBox(children=(Dropdown("}),
                    nbformat.v4.new_output("error", ename="ValueError", evalue="x", traceback=[])]
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert [p.split(": ", 1)[1].split()[1] for p in problems(nb)] == ["bare", "frozen", "widget", "traceback"]
