"""Execute notebooks headless and save them with outputs (``make notebooks``).

Saved notebooks must read well on GitHub: outputs kept, errors refused, widget state (which would
embed JavaScript) stripped, and no absolute machine paths in outputs.

It never destroys a learner's work: it refuses to start when a notebook holds changes that are in no git
commit (a learner's answers?), unless forced (``--force``, or ``FORCE=1``: ``make notebooks FORCE=1``);
it writes each notebook atomically; and a notebook that fails is not saved: the run goes on with the
next one and reports the failures at the end (exit status 1).

    python scripts/run_notebooks.py [--force] [--timeout SECONDS] [NOTEBOOK ...]   (default: all lessons)
    python scripts/run_notebooks.py --no-save [NOTEBOOK ...]   # execute only (make test-gpu-plan)
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "scripts") not in sys.path:  # also when a test loads this file by its path
    sys.path.insert(0, str(ROOT / "scripts"))
from _safe_write import forced, refusal, unsaved_work, write_notebook  # noqa: E402

PATH_RE = re.compile(r"(/(?:home|root|tmp|work|Users)/[^\s'\"]*)")
FORCE_HINT = "`make notebooks FORCE=1`, or `python scripts/run_notebooks.py --force ...`"


class NotebookFailed(Exception):
    """A notebook that raised or holds an error output; the message is its failing cell's error line."""


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
TQDM_RE = re.compile(r"^[^\n|]*\d+%\|")  # a bar's text: "training:   0%|    | 0/1000 [00:00<?, ?it/s]"
REPR_RE = re.compile(r"^[A-Z][A-Za-z]*\((children|\{|'data'|data=|layout=)")  # VBox(children=…
WIDGET_NOTE = ("Live widget: it renders in a running Jupyter kernel; the static figure or table below "
               "shows the same result")


def clean_outputs(nb) -> None:
    """Strip widget state and machine paths, and make what a reader without a kernel sees readable: a
    progress bar widget is dropped (its saved text is the bar's first frame, "0/N"; the cell's printed
    summary stays), and a widget whose saved text is its constructor repr gets a one-line note instead."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                out["text"] = PATH_RE.sub("<path>", out["text"])
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                text = "".join(data.get("text/plain", ""))
                if TQDM_RE.match(text):
                    continue
                if not text or REPR_RE.match(text):
                    data["text/plain"] = WIDGET_NOTE
            kept.append(out)
        if cell.get("cell_type") == "code":
            cell["outputs"] = kept


def first_error(nb) -> tuple[int, dict] | None:
    """The first cell (1-based index) with an error output, and that output."""
    for i, cell in enumerate(nb.cells, 1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return i, out
    return None


def describe(nb, ename: str, evalue: str) -> str:
    """``cell 3 (`x = 1/0`): ZeroDivisionError: division by zero``."""
    found = first_error(nb)
    where = ""
    if found:
        i, _ = found
        line = next((ln.strip() for ln in nb.cells[i - 1].source.splitlines() if ln.strip()), "")
        where = f"cell {i} (`{line[:60]}{'…' if len(line) > 60 else ''}`): "
    return f"{where}{ename}: {evalue}".strip()


def run(path: Path, timeout: int = 900, save: bool = True) -> float:
    """Execute ``path`` and save it with its outputs (``save=False``: only execute); return the seconds
    it ran.

    Raises :class:`NotebookFailed` (and saves nothing) when a cell fails or leaves an error output."""
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as err:
        raise NotebookFailed(describe(nb, err.ename, err.evalue)) from err
    elapsed = time.perf_counter() - t0
    found = first_error(nb)  # a cell tagged raises-exception, for instance
    if found:
        _, out = found
        raise NotebookFailed(describe(nb, out.get("ename", "error"), out.get("evalue", "")))
    if save:
        clean_outputs(nb)
        write_notebook(nb, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--force", action="store_true",
                    help="also overwrite notebooks with uncommitted changes (or FORCE=1)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds a cell may run (default 900)")
    ap.add_argument("--no-save", action="store_true",
                    help="execute only, change no file (make test-gpu-plan: every cell must run)")
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    if not args.no_save and not forced(args.force):
        dirty = unsaved_work(paths)
        if dirty:
            print(refusal(dirty, FORCE_HINT), file=sys.stderr)
            return 1
    failed = []
    for path in paths:
        try:
            elapsed = run(path, args.timeout, save=not args.no_save)
        except Exception as err:  # any failure: report it, save nothing, go on with the next
            reason = str(err) if isinstance(err, NotebookFailed) else f"{type(err).__name__}: {err}"
            reason = reason.strip().splitlines()[0] if reason.strip() else type(err).__name__
            failed.append(f"{path}: {reason}")
            print(f"{path}: FAILED, not saved: {reason}", flush=True)
            continue
        if args.no_save:
            print(f"{path}: executed in {elapsed:.1f} s (not saved)", flush=True)
            continue
        size = path.stat().st_size
        print(f"{path}: executed in {elapsed:.1f} s, {size / 1024:.0f} KiB", flush=True)
    if failed:
        print(f"\n{len(failed)} of {len(paths)} notebook(s) failed and were not saved:", file=sys.stderr)
        for line in failed:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
