"""scripts/mark_slides.py: lecture-mode slide metadata, set from a notebook's structure, idempotently."""

import importlib.util
import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("mark_slides", ROOT / "scripts" / "mark_slides.py")
mark_slides = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mark_slides)


def figure_cell(src: str):
    cell = nbformat.v4.new_code_cell(src)
    data = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}
    cell.outputs = [nbformat.v4.new_output("display_data", data=data)]
    return cell


def lesson():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    return nbformat.v4.new_notebook(cells=[
        md("# 09 · A lesson\n\nGoals."),
        code("# Setup: find the course's `helpers` package.\nimport sys"),
        code("import torch"),
        md("## 1 · A section"),
        figure_cell("plt.plot(x)"),  # right under its heading: stays on the heading's slide
        md("Some prose about the next figure, long enough to be its own thing."),
        figure_cell("plt.plot(y)"),  # a key figure: its own sub-slide
        md("### 1.1 · A sub-section"),
        code("x = 1"),
    ])


def test_slide_types_follow_the_structure():
    assert mark_slides.slide_types(lesson()) == ["slide", "skip", "-", "slide", "-", "-", "subslide",
                                                 "subslide", "-"]


def test_marking_is_idempotent_and_sets_rise_options():
    nb = lesson()
    assert mark_slides.mark(nb) is True
    assert [c.metadata["slideshow"]["slide_type"] for c in nb.cells] == mark_slides.slide_types(nb)
    assert nb.metadata["rise"]["scroll"] is True
    assert mark_slides.mark(nb) is False  # a second run changes nothing


def test_a_heading_below_a_paragraph_opens_the_slide():
    md = nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook(cells=[md("# Title"), md("Closing words of the intro.\n\n## 1 · Next"),
                                         md("Prose.\n\n### 1.1 · Detail")])
    assert mark_slides.slide_types(nb) == ["slide", "slide", "subslide"]


def test_the_deck_starts_with_a_slide():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    assert mark_slides.slide_types(nb) == ["slide"]


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")),
                         ids=lambda p: p.stem)
def test_committed_notebooks_are_marked_for_slides(path):
    nb = nbformat.read(path, as_version=4)
    assert not mark_slides.mark(nb), f"{path.name}: run `python scripts/mark_slides.py` to mark its slides"


def git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                   cwd=repo, check=True, capture_output=True)


@pytest.fixture
def unmarked_repo(tmp_path, monkeypatch):
    """A git repository with a committed, unmarked lesson; then a learner's answer added, not committed."""
    monkeypatch.delenv("FORCE", raising=False)
    git(tmp_path, "init", "-q")
    path = tmp_path / "09_lesson.ipynb"
    nbformat.write(lesson(), path)
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "lesson")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("answer = 42"))
    nbformat.write(nb, path)
    return path


def test_a_notebook_with_uncommitted_changes_is_not_rewritten(unmarked_repo, capsys):
    before = unmarked_repo.read_bytes()
    assert mark_slides.main([str(unmarked_repo)]) == 1
    err = capsys.readouterr().err
    assert "09_lesson.ipynb" in err and "--force" in err
    assert unmarked_repo.read_bytes() == before


def test_check_stays_read_only(unmarked_repo, capsys):
    before = unmarked_repo.read_bytes()
    assert mark_slides.main(["--check", str(unmarked_repo)]) == 1
    assert "needs marking" in capsys.readouterr().out
    assert unmarked_repo.read_bytes() == before


@pytest.mark.parametrize("how", ["--force", "FORCE=1"])
def test_forced_marks_it_atomically(unmarked_repo, monkeypatch, how):
    if how == "FORCE=1":
        monkeypatch.setenv("FORCE", "1")
    args = ["--force"] if how == "--force" else []
    assert mark_slides.main([*args, str(unmarked_repo)]) == 0
    nb = nbformat.read(unmarked_repo, as_version=4)
    assert nb.cells[-1].source == "answer = 42"  # the learner's answer is still there
    assert not mark_slides.mark(nb)
    assert sorted(p.name for p in unmarked_repo.parent.iterdir()) == [".git", "09_lesson.ipynb"]
