"""scripts/run_notebooks.py and scripts/_safe_write.py: no course command destroys a learner's work.

Tiny notebooks in a temporary git repository: a notebook with uncommitted changes is refused unless forced,
a failing notebook is reported and not saved while the next one still runs, writes are atomic.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_notebooks = load("run_notebooks")
safe = load("_safe_write")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false",
                           *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def notebook(path: Path, *sources: str) -> Path:
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]), path)
    return path


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository with two committed notebooks, ok.ipynb (`print(1)`) and bad.ipynb (`1/0`)."""
    monkeypatch.delenv("FORCE", raising=False)
    git(tmp_path, "init", "-q")
    notebook(tmp_path / "ok.ipynb", "print(1)")
    notebook(tmp_path / "bad.ipynb", "x = 1", "1/0", "print('after')")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "lessons")
    return tmp_path


def outputs(path: Path) -> list:
    return [o for c in nbformat.read(path, as_version=4).cells for o in c.get("outputs", [])]


def test_unsaved_work_sees_modified_untracked_and_ignored_notebooks(repo, tmp_path_factory):
    assert safe.unsaved_work([repo / "ok.ipynb", repo / "bad.ipynb"]) == []
    notebook(repo / "ok.ipynb", "print(1)", "answer = 42")  # a learner's answer
    notebook(repo / "new.ipynb", "print(2)")  # untracked
    (repo / ".gitignore").write_text("mine/\n")
    (repo / "mine").mkdir()
    notebook(repo / "mine" / "copy.ipynb", "print(3)")  # git-ignored: in no commit either
    dirty = safe.unsaved_work([repo / "ok.ipynb", repo / "bad.ipynb", repo / "new.ipynb",
                               repo / "mine" / "copy.ipynb"])
    assert [line.split(" (")[0] for line in dirty] == [str(repo / n) for n in
                                                       ("ok.ipynb", "new.ipynb", "mine/copy.ipynb")]
    outside = tmp_path_factory.mktemp("no_repo")  # pytest's tmp folders are not in a git repository
    assert safe.unsaved_work([notebook(outside / "x.ipynb", "print(1)")]) == []


def test_forced_by_flag_or_environment(monkeypatch):
    monkeypatch.delenv("FORCE", raising=False)
    assert not safe.forced() and safe.forced(True)
    for value, expected in [("1", True), ("yes", True), ("0", False), ("", False)]:
        monkeypatch.setenv("FORCE", value)
        assert safe.forced() is expected


def test_a_notebook_with_uncommitted_changes_is_refused(repo, capsys):
    path = notebook(repo / "ok.ipynb", "print(1)", "answer = 42")
    before = path.read_bytes()
    assert run_notebooks.main([str(path)]) == 1
    err = capsys.readouterr().err
    assert "ok.ipynb" in err and "FORCE=1" in err and "--force" in err
    assert path.read_bytes() == before  # untouched: not even executed


def test_refusal_through_make_style_environment(repo):
    """As `make notebooks` runs it: a subprocess, FORCE unset; nothing is executed or written."""
    notebook(repo / "new.ipynb", "print(2)")  # untracked counts as uncommitted
    env = {k: v for k, v in os.environ.items() if k != "FORCE"}
    script = str(ROOT / "scripts" / "run_notebooks.py")
    res = subprocess.run([sys.executable, script, "ok.ipynb", "new.ipynb"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert "new.ipynb" in res.stderr and "ok.ipynb (" not in res.stderr
    assert outputs(repo / "ok.ipynb") == []


@pytest.mark.slow
def test_forced_runs_it_and_a_failing_notebook_is_reported_not_saved(repo, capsys, monkeypatch):
    notebook(repo / "ok.ipynb", "print(1)", "answer = 42")  # uncommitted
    bad_before = (repo / "bad.ipynb").read_bytes()
    monkeypatch.setenv("FORCE", "1")
    assert run_notebooks.main([str(repo / "bad.ipynb"), str(repo / "ok.ipynb")]) == 1
    out = capsys.readouterr()
    assert (repo / "bad.ipynb").read_bytes() == bad_before  # an errored notebook is never saved
    assert "bad.ipynb" in out.err and "cell 2 (`1/0`): ZeroDivisionError: division by zero" in out.err
    assert "ok.ipynb" not in out.err  # the next notebook still ran, and was saved
    assert [o.get("text") for o in outputs(repo / "ok.ipynb")] == ["1\n"]
    assert sorted(p.name for p in repo.iterdir()) == [".git", "bad.ipynb", "ok.ipynb"]  # no temp files


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = notebook(tmp_path / "a.ipynb", "print(1)")
    path.chmod(0o640)
    before = path.read_bytes()
    with pytest.raises(UnicodeEncodeError):  # fails halfway through writing the temporary file
        safe.atomic_write(path, '{"cells": "\ud800"}')
    assert path.read_bytes() == before
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("print(2)"))
    safe.write_notebook(nb, path)
    assert len(nbformat.read(path, as_version=4).cells) == 2
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)  # permissions kept
    assert [p.name for p in tmp_path.iterdir()] == ["a.ipynb"]  # no temp file left


def test_create_new_never_replaces_a_file(tmp_path):
    assert safe.create_new(tmp_path / "a.txt", b"course") is True
    (tmp_path / "a.txt").write_bytes(b"mine")
    assert safe.create_new(tmp_path / "a.txt", b"course") is False
    assert (tmp_path / "a.txt").read_bytes() == b"mine"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_clean_outputs_drops_frozen_bars_and_replaces_widget_reprs():
    """What a reader without a kernel sees: no '0/1000' bar, no 'VBox(children=…' repr, a fallback kept."""
    import nbformat

    view = {"model_id": "x", "version_major": 2, "version_minor": 0}

    def widget(text):
        return nbformat.v4.new_output("display_data",
                                      data={run_notebooks.WIDGET_VIEW: view, "text/plain": text})

    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [widget("training:   0%|          | 0/1000 [00:00<?, ?it/s]"),
                    nbformat.v4.new_output("stream", name="stdout", text="1000 steps in 12 s\n"),
                    widget("VBox(children=(HBox(children=(Dropdown(…"),
                    widget("FigureWidget({\n    'data': [], 'layout': {}\n})"),
                    widget("Live loss curves (they render in a running Jupyter kernel)")]
    nb = nbformat.v4.new_notebook(cells=[cell])
    run_notebooks.clean_outputs(nb)
    texts = [o.get("text") or o["data"]["text/plain"] for o in nb.cells[0].outputs]
    assert texts == ["1000 steps in 12 s\n", run_notebooks.WIDGET_NOTE, run_notebooks.WIDGET_NOTE,
                     "Live loss curves (they render in a running Jupyter kernel)"]


@pytest.mark.slow
def test_no_save_executes_every_notebook_and_changes_no_file(repo, capsys):
    """make test-gpu-plan's mode: uncommitted work is no obstacle (nothing is written), a failure still
    fails the run."""
    notebook(repo / "ok.ipynb", "print(1)")  # uncommitted: --no-save does not refuse, nor overwrite it
    before = {p.name: p.read_bytes() for p in repo.glob("*.ipynb")}
    assert run_notebooks.main(["--no-save", str(repo / "ok.ipynb"), str(repo / "bad.ipynb")]) == 1
    out = capsys.readouterr()
    assert "ok.ipynb: executed in" in out.out and "(not saved)" in out.out
    assert "ZeroDivisionError" in out.err
    assert {p.name: p.read_bytes() for p in repo.glob("*.ipynb")} == before
