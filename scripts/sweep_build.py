"""The torch release the committed sweeps were made with, for installing it beside the newest one.

Every file in ``results/sweeps/`` records its torch build (``meta.torch``, e.g. ``2.13.0+cpu``). Live
runs reproduce a sweep bit for bit only on that build (``helpers.reproduce``), so CI runs the suite on
it as well as on the newest torch the project admits (``make test-sweep-torch``, ``.ci/run``).

    python3 scripts/sweep_build.py          # prints the release, e.g. 2.13.0 (no local tag: pip's ==)
    python3 scripts/sweep_build.py --full   # the build string as recorded, e.g. 2.13.0+cpu

Exits 1 when the sweeps disagree (re-make the odd one out on the common build). Standard library only:
it runs before anything is installed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SWEEPS = Path(__file__).resolve().parent.parent / "results" / "sweeps"


def sweep_builds(folder: Path = SWEEPS) -> dict[str, str]:
    """Each committed sweep's recorded torch build, by file name."""
    return {p.name: json.loads(p.read_text(encoding="utf-8"))["meta"]["torch"]
            for p in sorted(folder.glob("*.json"))}


def common_build(folder: Path = SWEEPS) -> str:
    builds = sweep_builds(folder)
    if not builds:
        raise SystemExit(f"no sweeps in {folder}")
    if len(set(builds.values())) != 1:
        raise SystemExit(f"the sweeps were made with different torch builds: {builds}")
    return next(iter(builds.values()))


def main(argv: list[str]) -> int:
    build = common_build()
    print(build if "--full" in argv else build.split("+")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
