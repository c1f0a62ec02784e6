"""scripts/workspace.py (`make workspace`): the learner's own copies of the lessons, never overwritten."""

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("workspace", ROOT / "scripts" / "workspace.py")
workspace = importlib.util.module_from_spec(spec)
spec.loader.exec_module(workspace)


def test_copies_only_missing_lessons_and_keeps_edited_ones(tmp_path):
    src, dest = tmp_path / "notebooks", tmp_path / "workspace"
    src.mkdir()
    for name in ("00_a.ipynb", "01_b.ipynb"):
        (src / name).write_text(f'{{"course": "{name}"}}\n')
    copied, skipped = workspace.copy_lessons(dest, src)
    assert [p.name for p in copied] == ["00_a.ipynb", "01_b.ipynb"] and skipped == []
    (dest / "00_a.ipynb").write_text('{"mine": "my answers"}\n')  # the learner's work
    (src / "02_c.ipynb").write_text('{"course": "new lesson"}\n')  # a lesson that arrived later
    assert workspace.missing(dest, src) == ["02_c.ipynb"]
    copied, skipped = workspace.copy_lessons(dest, src)
    assert [p.name for p in copied] == ["02_c.ipynb"]
    assert [p.name for p in skipped] == ["00_a.ipynb", "01_b.ipynb"]
    assert (dest / "00_a.ipynb").read_text() == '{"mine": "my answers"}\n'
    assert (dest / "02_c.ipynb").read_text() == '{"course": "new lesson"}\n'
    assert sorted(p.name for p in dest.iterdir()) == ["00_a.ipynb", "01_b.ipynb", "02_c.ipynb"]
    report = workspace.report(dest, copied, skipped)
    assert "02_c.ipynb" in report and "00_a.ipynb, 01_b.ipynb" in report and "not overwritten" in report


def test_make_workspace_copies_the_course_lessons(tmp_path):
    dest = tmp_path / "ws"
    res = subprocess.run(["make", "-s", "workspace", f"WORKSPACE={dest}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lessons = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(p.name for p in dest.iterdir()) == sorted([*lessons, "course_setup.py"])
    assert "00_baseline.ipynb" in lessons


def test_the_workspace_is_git_ignored():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    res = subprocess.run(["git", "check-ignore", "-q", "workspace/00_baseline.ipynb"], cwd=ROOT)
    assert res.returncode == 0


def test_the_setup_module_goes_beside_the_copies_and_stays_current(tmp_path):
    """Every lesson's first cell imports ``course_setup`` from its own folder: the workspace gets it."""
    src, dest = tmp_path / "src", tmp_path / "ws"
    src.mkdir()
    (src / "00_a.ipynb").write_text("{}")
    (src / "course_setup.py").write_text("VERSION = 2\n")
    dest.mkdir()
    (dest / "course_setup.py").write_text("VERSION = 1\n")  # from an older checkout
    copied, _ = workspace.copy_lessons(dest, src)
    assert [p.name for p in copied] == ["00_a.ipynb"]
    assert (dest / "course_setup.py").read_text() == "VERSION = 2\n"
    assert (workspace.LESSONS / workspace.SETUP).is_file()

