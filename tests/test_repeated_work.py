"""make test deselects a slow reproduction test when a lesson in the same session repeats its work
(testkit.REPEATED_BY_LESSONS): each entry must name a real test and lessons that still do that work."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from testkit import REPEATED_BY_LESSONS, repeated_by_collected_lessons

ROOT = Path(__file__).resolve().parent.parent


def lesson_code(stem: str) -> str:
    (path,) = (ROOT / "notebooks").glob(f"{stem}.ipynb")
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


@pytest.mark.parametrize("test_id", sorted(REPEATED_BY_LESSONS))
def test_each_entry_names_a_slow_test_and_lessons_that_still_repeat_it(test_id):
    file, name = test_id.split("::")
    source = (ROOT / file).read_text()
    assert f"def {name}(" in source, f"{test_id}: no such test"
    assert f"@pytest.mark.slow\ndef {name}(" in source, f"{test_id}: only slow tests are worth deselecting"
    for stem, snippets in REPEATED_BY_LESSONS[test_id].items():
        code = lesson_code(stem)
        missing = [s for s in snippets if s not in code]
        assert not missing, f"lesson {stem} no longer repeats {test_id}: {missing} not in its code"
        assert ".check()" in code


def test_a_test_is_deselected_only_when_every_lesson_it_names_is_collected():
    exp = "tests/test_experiments.py::test_one_arm_and_its_uptraining_reproduce_the_committed_sweep"
    other = "tests/test_experiments.py::test_something_else"
    assert repeated_by_collected_lessons([exp, other], ["02_gqa", "03_mla", "06_tiny_deepseek"]) == [exp]
    assert repeated_by_collected_lessons([exp, other], ["02_gqa"]) == []  # 03 not collected: it runs
    assert repeated_by_collected_lessons([exp], []) == []


@pytest.mark.slow
def test_collecting_the_lessons_deselects_what_they_repeat_and_says_so():
    """Collection only (nothing runs): with the lessons, the three tests are deselected and the header
    says which; without them, they are collected."""
    def collect(*paths):
        cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
               "--nbval-lax"]
        out = subprocess.run([*cmd, *paths], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        return out.stdout
    files = sorted({t.split("::")[0] for t in REPEATED_BY_LESSONS})
    lessons = [str(p.relative_to(ROOT)) for stem in ("02_gqa", "03_mla", "05_multi_token_prediction",
                                                       "07_sparse_attention")
               for p in (ROOT / "notebooks").glob(f"{stem}.ipynb")]
    alone, together = collect(*files), collect(*files, *lessons)
    for test_id in REPEATED_BY_LESSONS:
        assert test_id in alone and test_id not in together
    assert "deselected 3 slow reproduction test(s)" in together
