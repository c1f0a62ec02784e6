"""Run a committed seed sweep and write its results (``helpers.experiments`` explains the design).

    python scripts/sweep.py attention                      # every seed, one process (~25 min on 1 core)
    python scripts/sweep.py attention --seeds 0 1 --part a # a share of the seeds, into a part file
    python scripts/sweep.py attention --merge              # the part files -> results/sweeps/attention.json

Two processes with disjoint ``--seeds`` and one ``--merge`` use both cores of a 2-core machine. Every run
trains on ``helpers.experiments.THREADS`` thread(s), so the numbers do not depend on how the work is split.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from helpers import experiments as ex  # noqa: E402
from helpers.data import load_corpus  # noqa: E402

SWEEPS = {"attention": ex.run_attention_seed}


def part_path(name: str, part: str) -> Path:
    return ex.SWEEP_DIR / f"{name}.part-{part}.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(SWEEPS))
    p.add_argument("--seeds", type=int, nargs="+", default=list(ex.SEEDS))
    p.add_argument("--part", help="write a part file (merge them with --merge) instead of the sweep")
    p.add_argument("--merge", action="store_true", help="merge the part files into the committed sweep")
    args = p.parse_args(argv)
    if args.merge:
        parts = sorted(ex.SWEEP_DIR.glob(f"{args.name}.part-*.json"))
        if not parts:
            print(f"no part files {args.name}.part-*.json in {ex.SWEEP_DIR}", file=sys.stderr)
            return 1
        per_seed = [s for f in parts for s in json.loads(f.read_text(encoding="utf-8"))]
        seeds = [s["seed"] for s in per_seed]
        if len(set(seeds)) != len(seeds):
            print(f"the part files repeat seeds: {sorted(seeds)}", file=sys.stderr)
            return 1
        path = ex.write_sweep(args.name, per_seed)
        for f in parts:
            f.unlink()
        print(f"wrote {path} (seeds {sorted(seeds)})")
        return 0
    corpus = load_corpus()
    start, per_seed = time.perf_counter(), []
    for seed in args.seeds:
        per_seed.append(SWEEPS[args.name](seed, corpus, log=lambda s: print(s, flush=True)))
        if args.part:  # rewritten after every seed, so an interrupted run keeps its finished seeds
            part_path(args.name, args.part).parent.mkdir(parents=True, exist_ok=True)
            part_path(args.name, args.part).write_text(json.dumps(per_seed) + "\n", encoding="utf-8")
    if not args.part:
        print(f"wrote {ex.write_sweep(args.name, per_seed)}")
    print(f"{len(per_seed)} seed(s) in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
