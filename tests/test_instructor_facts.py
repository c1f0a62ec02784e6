"""The run times the course states come from the saved runs (``scripts/instructor_facts.py --check``):
each notebook's "N s measured" and the README instructor table's "/ N s" agree with the timestamps
``scripts/run_notebooks.py`` stored when it last executed the notebook."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("instructor_facts", ROOT / "scripts" / "instructor_facts.py")
facts_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(facts_script)


def test_every_stated_run_time_agrees_with_the_saved_run():
    assert facts_script.time_mismatches() == []


def test_a_stale_statement_is_caught(tmp_path):
    (tmp_path / "notebooks").mkdir()
    nb = {"cells": [
        {"cell_type": "markdown", "source": "**Run time:** a minute (60 s measured on an idle CPU).\n\n"},
        {"cell_type": "code", "source": "1", "outputs": [], "metadata": {"execution": {
            "iopub.execute_input": "2026-01-01T00:00:00Z", "shell.execute_reply": "2026-01-01T00:02:00Z"}}},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "notebooks" / "09_x.ipynb").write_text(json.dumps(nb))
    (tmp_path / "README.md").write_text("| 09 | ~1 min / 60 s | to be measured |\n")
    problems = facts_script.time_mismatches(tmp_path)
    assert problems == ["09_x.ipynb states 60 s, but the saved run took 120 s",
                        "README row 09 60 s, but the saved run took 120 s"]
