"""Rebuild the course corpus in data/ from Python's own files (no download).

Two domains, both from the CPython distribution this script runs on, redistributable under the
PSF License Agreement (copied beside the data as data/LICENSE-PSF.txt):

* docs.txt  English prose: the reference documentation topics in ``pydoc_data.topics``.
* code.txt  Python source: a fixed list of pure-Python standard-library modules.

The files depend on the Python release that builds them (the shipped ones came from the version
recorded in data/MANIFEST.json). Run ``python scripts/build_corpus.py`` to rebuild; it rewrites
data/SHA256SUMS so that ``helpers.data.load_corpus`` verifies the new files.

A different Python release writes a different corpus, so the script refuses to run unless the running
Python's version is the one in data/MANIFEST.json; ``--force`` replaces the corpus on purpose. To undo
a damaged or changed data/ folder, restore it instead: ``git checkout -- data/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import sysconfig
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
# Pure-Python modules with readable, idiomatic code, kept in a fixed order.
CODE_MODULES = [
    "textwrap", "heapq", "bisect", "functools", "fractions", "statistics", "string", "shlex",
    "fnmatch", "glob", "colorsys", "calendar", "difflib", "queue", "sched", "graphlib", "reprlib",
    "operator", "copy", "keyword", "numbers", "ipaddress", "random", "dataclasses", "enum",
]
CODE_BYTES = 480_000  # about the size of the prose, so the two domains are balanced


def build_docs() -> str:
    import pydoc_data.topics as topics

    parts = [topics.topics[name].strip() for name in sorted(topics.topics)]
    return "\n\n".join(parts) + "\n"


def build_code() -> str:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for name in CODE_MODULES:
        src = (stdlib / f"{name}.py").read_text(encoding="utf-8")
        parts.append(f"# ---- {name}.py ----\n{src.strip()}\n")
        total += len(parts[-1])
        if total >= CODE_BYTES:
            break
    return "\n".join(parts)[:CODE_BYTES]


def find_license() -> str:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    candidates = [stdlib / "LICENSE.txt", stdlib.parent / "LICENSE.txt", Path(sys.prefix) / "LICENSE.txt"]
    for candidate in candidates:
        if candidate.exists():
            return candidate.read_text(encoding="utf-8")
    raise FileNotFoundError("CPython's LICENSE.txt was not found beside the standard library")


def python_mismatch(manifest: Path | None = None, running: str | None = None) -> str | None:
    """Why rebuilding with this Python would not reproduce the shipped corpus; ``None`` if it would.

    ``manifest`` defaults to data/MANIFEST.json; ``running`` to ``platform.python_version()``. A
    missing manifest (nothing shipped yet) is no reason to refuse; an unreadable one is.
    """
    manifest = DATA / "MANIFEST.json" if manifest is None else manifest
    running = running or platform.python_version()
    if not manifest.exists():
        return None
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))["python"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return (f"cannot read the Python version the corpus was built with from {manifest} ({err!r}); "
                "restore the shipped files with `git checkout -- data/`, or pass --force to rebuild anyway")
    if str(recorded) == running:
        return None
    return (f"this is Python {running}, but the shipped corpus was built with Python {recorded} "
            f"(\"python\" in {manifest}), and a rebuild with another release writes a different corpus. "
            "To repair data/, restore the shipped files with `git checkout -- data/`; to rebuild the "
            f"same corpus, run this script with Python {recorded}; to replace the corpus on purpose, "
            "pass --force")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true",
                        help="rebuild even if this Python is not the one recorded in data/MANIFEST.json")
    args = parser.parse_args(argv)
    problem = python_mismatch()
    if problem and not args.force:
        sys.exit(f"build_corpus.py: refusing to rebuild: {problem}")
    DATA.mkdir(exist_ok=True)
    files = {"docs.txt": build_docs(), "code.txt": build_code(), "LICENSE-PSF.txt": find_license()}
    sums = []
    for name, text in files.items():
        (DATA / name).write_text(text, encoding="utf-8", newline="\n")
        digest = hashlib.sha256((DATA / name).read_bytes()).hexdigest()
        sums.append(f"{digest}  {name}")
    (DATA / "SHA256SUMS").write_text("\n".join(sums) + "\n", newline="\n")
    manifest = {"python": platform.python_version(), "code_modules": CODE_MODULES,
                "code_bytes": CODE_BYTES, "source": "CPython standard library and pydoc_data.topics"}
    (DATA / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", newline="\n")
    for line in sums:
        print(line)


if __name__ == "__main__":
    main()
