"""Build the course as a static website (``make site``): ``build/site/index.html``.

The pages are the README (as the home page) and the committed notebooks with their saved outputs,
rendered by Sphinx + MyST-NB with the book theme (configuration: ``docs/conf.py``). Nothing is executed:
what a reader sees is what the notebook was saved with, and it needs no kernel.

Steps: stage the sources under ``build/site-src`` (README → ``index.md`` with a table of contents and the
lesson names linked to their pages; ``notebooks/NN_*.ipynb``; ``docs/img``; the glossary), run
``sphinx-build -W -n`` (any warning, a broken cross-reference above all, fails the build), then check
the built pages: every figure a notebook holds must be an image file on its page, with alt text.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURE_MIMES = ("image/png", "image/svg+xml", "image/jpeg")


def notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def home_page(readme: str, stems: list[str]) -> str:
    """The README with each lesson name (`` `NN_name` `` in its table) linked to its page, and a table of
    contents for the site's navigation."""
    def link(m: re.Match) -> str:
        stem = m.group(1)
        return f"[`{stem}`](notebooks/{stem}.ipynb)" if stem in stems else m.group(0)

    text = re.sub(r"(?<!\[)`(\d\d_[a-z0-9_]+)`", link, readme)
    toc = "\n".join(f"notebooks/{s}" for s in stems)
    reference = "```{toctree}\n:hidden:\n:caption: Reference\n\ndocs/GLOSSARY\n```\n"
    return f"{text.rstrip()}\n\n{reference}\n```{{toctree}}\n:hidden:\n:caption: Lessons\n\n{toc}\n```\n"


TITLE_RE = re.compile(r"""(?:set_title|suptitle|title)\s*[(=]\s*f?(["'])(.+?)\1""")
HEADING_RE = re.compile(r"^#{1,6}\s+(.+)$", re.M)


def figure_alt(code: str, heading: str) -> str:
    """Alt text for a code cell's figures: the titles its code gives them (an f-string's fields become
    "…"), else the section it sits in. A reader who cannot see the figure learns what it shows."""
    titles = [re.sub(r"\{[^}]*\}", "…", m.group(2)) for m in TITLE_RE.finditer(code)]
    titles = [t.replace("$", "").strip() for t in titles if t.strip()]
    if titles:
        return "Figure: " + "; ".join(dict.fromkeys(titles))
    return f"Figure of the section “{heading}”" if heading else "Figure"


def with_alt_text(nb: dict) -> dict:
    """The notebook with ``mystnb.image.alt`` set on every cell that draws a figure (MyST-NB puts it
    on the image), unless the cell already has one. Only the staged copy changes."""
    heading = ""
    for cell in nb["cells"]:
        source = "".join(cell.get("source", ""))
        if cell["cell_type"] == "markdown":
            found = HEADING_RE.findall(source)
            heading = found[-1].strip() if found else heading
            continue
        if any(m in out.get("data", {}) for out in cell.get("outputs", []) for m in FIGURE_MIMES):
            image = cell.setdefault("metadata", {}).setdefault("mystnb", {}).setdefault("image", {})
            image.setdefault("alt", figure_alt(source, heading))
    return nb


def stage(src: Path) -> list[Path]:
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    nbs = notebooks()
    for nb in nbs:
        staged = with_alt_text(json.loads(nb.read_text(encoding="utf-8")))
        (src / "notebooks" / nb.name).write_text(json.dumps(staged, ensure_ascii=False), encoding="utf-8")
    if (ROOT / "docs" / "img").exists():
        shutil.copytree(ROOT / "docs" / "img", src / "docs" / "img")
    (src / "docs").mkdir(exist_ok=True)
    shutil.copy2(ROOT / "docs" / "GLOSSARY.md", src / "docs" / "GLOSSARY.md")  # a page of its own
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (src / "index.md").write_text(home_page(readme, [nb.stem for nb in nbs]), encoding="utf-8")
    return nbs


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs: list[str] = []
        self.alts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs).get("src", ""))
            self.alts.append(dict(attrs).get("alt") or "")


def saved_figures(nb_path: Path) -> int:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    return sum(1 for cell in nb["cells"] for out in cell.get("outputs", [])
               if any(m in out.get("data", {}) for m in FIGURE_MIMES))


def check_figures(out: Path, nbs: list[Path]) -> list[str]:
    """Problems found: a page with fewer images than its notebook's figures, or an image that is missing."""
    problems = []
    for nb in nbs:
        page = out / "notebooks" / f"{nb.stem}.html"
        if not page.exists():
            problems.append(f"{page.relative_to(out)} was not built")
            continue
        parser = Images()
        parser.feed(page.read_text(encoding="utf-8"))
        figures = [(s, a) for s, a in zip(parser.srcs, parser.alts)
                   if "_images/" in s or s.startswith("data:image")]
        for s, alt in figures:
            if not s.startswith("data:") and not (page.parent / s).resolve().exists():
                problems.append(f"{page.relative_to(out)}: image {s} is missing")
            if not alt.strip() or alt.strip() == Path(s).name:
                problems.append(f"{page.relative_to(out)}: image {s} has no alt text")
        want = saved_figures(nb)
        if len(figures) < want:
            problems.append(f"{page.relative_to(out)} shows {len(figures)} figures, the notebook has {want}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "site")
    args = ap.parse_args(argv)
    src = ROOT / "build" / "site-src"
    nbs = stage(src)
    if not nbs:
        print("no notebooks to build", file=sys.stderr)
        return 1
    doctrees = ROOT / "build" / "site-doctrees"
    for stale in (args.out, doctrees):  # a fresh build: cached pages would keep links resolved earlier
        if stale.exists():
            shutil.rmtree(stale)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-q",
           "-c", str(ROOT / "docs"), "-d", str(doctrees), str(src), str(args.out)]
    if subprocess.run(cmd).returncode != 0:
        print("site build failed (warnings are errors: see above)", file=sys.stderr)
        return 1
    problems = check_figures(args.out, nbs)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    n_fig = sum(saved_figures(nb) for nb in nbs)
    print(f"site: {args.out / 'index.html'} ({len(nbs)} notebooks, {n_fig} figures, executed nothing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
