"""Facts for the README's instructor guide, read from the committed notebooks (nothing is executed).

For each lesson: the wall time of its last saved run (from the per-cell execution timestamps that
``scripts/run_notebooks.py`` stores), the run time its introduction states, how many figures it draws,
the slides marked for lecture mode, and its exercises (the first sentence of each ``**N.**`` item in the
exercises section). The saved run time is what the machine that saved it measured, busy or not.

    python scripts/instructor_facts.py [notebooks/NN_name.ipynb ...]
    python scripts/instructor_facts.py --check   # stated times against the saved runs; exit 1 if off

The measurement itself is ``scripts/run_notebooks.py``, which executes each lesson serially, prints
its wall time and stores the cell timestamps this script reads. ``--check`` (and
``tests/test_instructor_facts.py``) holds each notebook's stated "N s measured" and the README
instructor table's "/ N s" to the saved run (within ``TOLERANCE``), and prints the course's total
against its 15-minute budget.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def text(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def saved_run_seconds(nb: dict) -> float | None:
    """From the first cell's execute_input to the last cell's execute_reply, if the run was timed."""
    stamps = [c.get("metadata", {}).get("execution", {}) for c in nb["cells"] if c["cell_type"] == "code"]
    starts = [s["iopub.execute_input"] for s in stamps if "iopub.execute_input" in s]
    ends = [s["shell.execute_reply"] for s in stamps if "shell.execute_reply" in s]
    if not starts or not ends:
        return None
    t = [datetime.fromisoformat(x.replace("Z", "+00:00")) for x in (min(starts), max(ends))]
    return (t[1] - t[0]).total_seconds()


def stated_run_time(nb: dict) -> str | None:
    for cell in nb["cells"]:
        m = re.search(r"\*\*Run time:?\*\*:?\s*(.+?)(?:\n\n|$)", text(cell), re.S)
        if m:
            return " ".join(m.group(1).split())
    return None


def exercises(nb: dict) -> list[str]:
    """The first sentence of each ``**N.**`` (or ``**N (open).**``) item under an ``## ... Exercises``
    heading, wherever in a markdown cell the heading stands."""
    markdown = [text(c) for c in nb["cells"] if c["cell_type"] == "markdown"]
    lines = [line for t in markdown for line in t.splitlines() + [""]]
    items, inside, current = [], False, None
    for line in lines:
        if line.startswith("## "):
            inside = "exercise" in line.lower()
            current = None
            continue
        m = re.match(r"^\*\*(\d+)[^*]*\*\*(.*)$", line) if inside else None
        if m:
            current = [line.replace("**", " ")]
            items.append(current)
        elif current is not None and line.strip():
            current.append(line)
        else:
            current = None
    out = []
    for item in items:
        joined = " ".join(" ".join(item).split())
        out.append(re.split(r"(?<=[.?])\s(?=[A-Z(`])", joined, maxsplit=2)[:2])
    return [" ".join(x) for x in out]


def facts(path: Path) -> dict:
    nb = json.loads(path.read_text(encoding="utf-8"))
    figures = sum(1 for c in nb["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    slides = sum(c.get("metadata", {}).get("slideshow", {}).get("slide_type") == "slide" for c in nb["cells"])
    return {"notebook": path.name, "saved_run_s": saved_run_seconds(nb), "stated": stated_run_time(nb),
            "figures": figures, "slides": slides, "exercises": exercises(nb)}


TOLERANCE = (5.0, 0.10)  # seconds, fraction: a stated time may differ from the saved run by the larger
LESSON_BUDGET_S, COURSE_BUDGET_S = 180, 15 * 60


def lessons(root: Path = ROOT) -> list[Path]:
    """The numbered lesson notebooks, in order."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def time_mismatches(root: Path = ROOT) -> list[str]:
    """Every place where a stated run time disagrees with the notebook's saved run: the notebook's own
    "N s measured" and the README instructor table's "| NN | ... / N s |"."""
    readme = (root / "README.md").read_text(encoding="utf-8")
    problems = []
    for path in lessons(root):
        f = facts(path)
        saved, number = f["saved_run_s"], path.name[:2]
        if saved is None:
            problems.append(f"{path.name}: no saved run timestamps (run scripts/run_notebooks.py)")
            continue
        allowed = max(TOLERANCE[0], TOLERANCE[1] * saved)
        stated = re.search(r"(\d+) s measured", f["stated"] or "")
        row = re.search(rf"^\| {number} \| [^|/]*/ (\d+) s \|", readme, re.M)
        for where, m in ((f"{path.name} states", stated), (f"README row {number}", row)):
            if m is None:
                problems.append(f"{where}: no run time in seconds found")
            elif abs(int(m.group(1)) - saved) > allowed:
                problems.append(f"{where} {m.group(1)} s, but the saved run took {saved:.0f} s")
    return problems


def main(argv: list[str]) -> None:
    if argv[:1] == ["--check"]:
        runs = {p.name: facts(p)["saved_run_s"] or 0.0 for p in lessons()}
        over = [f"{n} ({s:.0f} s)" for n, s in runs.items() if s > LESSON_BUDGET_S]
        print(f"course: {sum(runs.values()):.0f} s in all (budget {COURSE_BUDGET_S} s); "
              f"lessons over {LESSON_BUDGET_S} s: {', '.join(over) or 'none'}")
        problems = time_mismatches()
        print("\n".join(problems) if problems else "every stated run time agrees with its saved run")
        sys.exit(1 if problems else 0)
    paths = [Path(p) for p in argv] or lessons()
    for p in paths:
        f = facts(p)
        run = f"{f['saved_run_s']:.0f} s" if f["saved_run_s"] is not None else "not timed"
        print(f"{f['notebook']}: last saved run {run}; states: {f['stated']}; "
              f"{f['figures']} figures, {f['slides']} slides")
        for i, e in enumerate(f["exercises"], 1):
            print(f"    exercise {i}: {e[:150]}")


if __name__ == "__main__":
    main(sys.argv[1:])
