"""Your own copies of the lessons, apart from the course's files (`make workspace`; `make lab` opens them).

Copies each lesson notebook from ``notebooks/`` into ``workspace/`` (git-ignored), but never over a file
that is already there: your answers stay yours. Run it again after ``git pull`` to add lessons that
arrived later; to start a lesson afresh, rename or delete your copy first. The course's originals stay in
``notebooks/``. The notebooks find the ``helpers`` package from ``workspace/`` as from ``notebooks/``:
the course's ``course_setup.py``, which their first cell imports, is copied (and kept current) beside them.

    python scripts/workspace.py [DEST]          (default: workspace/ in the checkout)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "scripts") not in sys.path:  # also when a test loads this file by its path
    sys.path.insert(0, str(ROOT / "scripts"))
from _safe_write import create_new  # noqa: E402

LESSONS = ROOT / "notebooks"
WORKSPACE = ROOT / "workspace"
SETUP = "course_setup.py"  # every lesson's first cell imports it from the lesson's own folder


def lessons(src: Path = LESSONS) -> list[Path]:
    return sorted(src.glob("*.ipynb"))


def missing(dest: Path = WORKSPACE, src: Path = LESSONS) -> list[str]:
    """The names of the lessons that ``dest`` does not hold yet."""
    return [nb.name for nb in lessons(src) if not (dest / nb.name).exists()]


def copy_lessons(dest: Path = WORKSPACE, src: Path = LESSONS) -> tuple[list[Path], list[Path]]:
    """Copy the lessons that ``dest`` lacks; return (copied, skipped because a file was already there)."""
    dest.mkdir(parents=True, exist_ok=True)
    copied, skipped = [], []
    for nb in lessons(src):
        target = dest / nb.name
        (copied if create_new(target, nb.read_bytes()) else skipped).append(target)
    refresh_setup(dest, src)
    return copied, skipped


def refresh_setup(dest: Path = WORKSPACE, src: Path = LESSONS) -> Path | None:
    """Put the course's ``course_setup.py`` (what every lesson's first cell imports) beside the copies.
    It is the course's code, not yours, so an older copy is replaced; nothing happens without one in
    ``src``."""
    setup = src / SETUP
    if not setup.is_file():
        return None
    target = dest / SETUP
    if not target.is_file() or target.read_bytes() != setup.read_bytes():
        target.write_bytes(setup.read_bytes())
    return target


def report(dest: Path, copied: list[Path], skipped: list[Path]) -> str:
    lines = [f"{dest}/: copied {len(copied)} lesson(s): {', '.join(p.name for p in copied) or 'none'}"]
    if skipped:
        lines.append(f"skipped {len(skipped)} already there (yours, not overwritten): "
                     f"{', '.join(p.name for p in skipped)}")
        lines.append("(to start a lesson afresh, rename or delete your copy and run `make workspace` again)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest", nargs="?", type=Path, default=WORKSPACE, help="default: workspace/")
    args = ap.parse_args(argv)
    copied, skipped = copy_lessons(args.dest)
    print(report(args.dest, copied, skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
