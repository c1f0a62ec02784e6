"""Mark the cells a lecturer shows, for RISE slideshows in JupyterLab (lecture mode).

Sets ``metadata.slideshow.slide_type`` on every cell of the given notebooks (default: all lessons), from
the notebook's own structure, so running it again changes nothing:

* the title (``# ...``) and each section (``## ...``) start a new slide (from the markdown cell
  that holds the heading);
* a sub-section (``### ...``) and a code cell that draws a figure start a sub-slide (one press down), so
  each key figure gets the screen to itself;
* the setup cell that locates ``helpers`` is skipped (it still runs with "Run All");
* every other cell continues the slide above it (``-``).

It also sets the notebook's ``metadata.rise`` options (scrolling slides, since a section can be longer
than a screen). ``--check`` changes nothing and exits 1 if a notebook is not marked as it would mark it.
It refuses to rewrite a notebook whose changes are in no git commit (a learner's answers?) unless forced
(``--force`` or ``FORCE=1``), and writes atomically.
Open a notebook in JupyterLab and press the slideshow button (or Alt+R) to present it.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "scripts") not in sys.path:  # also when a test loads this file by its path
    sys.path.insert(0, str(ROOT / "scripts"))
from _safe_write import forced, refusal, unsaved_work, write_notebook  # noqa: E402

RISE_OPTIONS = {"scroll": True, "transition": "none", "enable_chalkboard": False}
SETUP_MARK = re.compile(r"find the course's `helpers` package", re.I)
FIGURE_MIMES = ("image/png", "image/svg+xml", "image/jpeg")


def heading_level(text: str) -> int:
    """The highest heading level in a markdown cell (1 for ``#``), 0 if none. A section heading often
    sits below a closing paragraph of the section before; that cell then opens the new slide."""
    levels = [len(m.group(1)) for m in re.finditer(r"^(#{1,6})\s", text, re.M)]
    return min(levels) if levels else 0


def draws_figure(cell) -> bool:
    return any(m in out.get("data", {}) for out in cell.get("outputs", []) for m in FIGURE_MIMES)


def slide_types(nb) -> list[str]:
    """The slide type of each cell, in order."""
    types = []
    for i, cell in enumerate(nb.cells):
        level = heading_level(cell.source) if cell.cell_type == "markdown" else 0
        if level in (1, 2):
            kind = "slide"
        elif level == 3:
            kind = "subslide"
        elif cell.cell_type == "code" and SETUP_MARK.search(cell.source):
            kind = "skip"
        elif cell.cell_type == "code" and draws_figure(cell):
            # A figure right under its heading stays on the heading's slide.
            kind = "-" if i > 0 and types[-1] in ("slide", "subslide") and \
                nb.cells[i - 1].cell_type == "markdown" and len(nb.cells[i - 1].source) < 400 else "subslide"
        else:
            kind = "-"
        types.append(kind)
    if types and types[0] != "slide":
        types[0] = "slide"  # the deck starts with a slide whatever the first cell is
    return types


def mark(nb) -> bool:
    """Set the slide metadata; return True if anything changed."""
    changed = False
    for cell, kind in zip(nb.cells, slide_types(nb)):
        if cell.metadata.get("slideshow", {}).get("slide_type") != kind:
            cell.metadata.setdefault("slideshow", {})["slide_type"] = kind
            changed = True
    rise = nb.metadata.get("rise", {})
    if any(rise.get(k) != v for k, v in RISE_OPTIONS.items()):
        nb.metadata["rise"] = {**rise, **RISE_OPTIONS}
        changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook needs marking")
    ap.add_argument("--force", action="store_true",
                    help="also rewrite notebooks with uncommitted changes (or FORCE=1)")
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    marked = {}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        marked[path] = (nb, mark(nb))
    stale = [path for path, (_, changed) in marked.items() if changed]
    if not args.check and stale and not forced(args.force):
        dirty = unsaved_work(stale)
        if dirty:
            print(refusal(dirty, "`python scripts/mark_slides.py --force` (or FORCE=1)"), file=sys.stderr)
            return 1
    for path, (nb, changed) in marked.items():
        if changed and not args.check:
            write_notebook(nb, path)
        n_slides = sum(c.metadata["slideshow"]["slide_type"] == "slide" for c in nb.cells)
        print(f"{path.name}: {n_slides} slides{' (needs marking)' if args.check and changed else ''}")
    if args.check and stale:
        print("run `python scripts/mark_slides.py` to mark them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
