"""Execute notebooks headless and save them with outputs (``make notebooks``).

Saved notebooks must read well on GitHub: outputs kept, errors refused, widget state (which would
embed JavaScript) stripped, and no absolute machine paths in outputs.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
PATH_RE = re.compile(r"(/(?:home|root|tmp|work|Users)/[^\s'\"]*)")


def clean_outputs(nb) -> None:
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                out["text"] = PATH_RE.sub("<path>", out["text"])


def run(path: Path, timeout: int = 900) -> float:
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    elapsed = time.perf_counter() - t0
    clean_outputs(nb)
    for cell in nb.cells:
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            raise RuntimeError(f"{path} produced an error output; not saved")
    nbformat.write(nb, path)
    return elapsed


def main(paths: list[str]) -> None:
    for p in paths:
        elapsed = run(Path(p))
        size = Path(p).stat().st_size
        print(f"{p}: executed in {elapsed:.1f} s, {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(sys.argv[1:] or sorted(str(p) for p in (ROOT / "notebooks").glob("*.ipynb")))
