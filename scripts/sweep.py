"""Run a committed seed sweep and write its results (``helpers.experiments.sweep`` explains the design;
``helpers.experiments.registry`` lists the sweeps).

    python scripts/sweep.py attention                      # every seed, one process (~25 min on 1 core)
    python scripts/sweep.py attention --seeds 0 1 --part a # a share of the seeds, into a part file
    python scripts/sweep.py attention --merge              # parts + the committed sweep -> attention.json
    python scripts/sweep.py attention --seeds 5 6 7 8 9 --arms MHA GQA-2 MQA "MLA Dc=4" --part x  # +seeds
    python scripts/sweep.py moe --seeds 0 1 2 --part a     # lesson 04's sweep, the same way
    python scripts/sweep.py moe --arms "softmax capacity c=1" --part c && \
        python scripts/sweep.py moe --extend               # new arms added beside the committed ones
    python scripts/sweep.py mtp                            # lesson 05: plain vs MTP (experiments.models)
    python scripts/sweep.py capstone                       # lesson 06: tiny DeepSeek-V3 vs its baseline
    python scripts/sweep.py dsa                            # lesson 07: sparse attention at several k
    python scripts/sweep.py distill                        # lesson 08: distillation vs GRPO
    python scripts/sweep.py fp8 --seeds 0 1 2 3 4 5 6 7    # lesson 09: FP8 GEMMs vs full precision
    python scripts/sweep.py recall --seeds 0 --part p0     # lessons 02-03: associative recall, one seed
                                                           # a part (~4 min), 10 seeds, then --merge
    python scripts/sweep.py uptrain --seeds 0 1 --part a   # lesson 02: uptraining at the final lr

Two processes with disjoint ``--seeds`` and one ``--merge`` use both cores of a 2-core machine. Every run
trains on its sweep's fixed thread count (``helpers.experiments.sweep.THREADS``, one; ``mtp`` and ``capstone``
on ``helpers.experiments.models.THREADS``, two: run those one process at a time), so the numbers do not
depend on how the work is split.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from helpers import plan  # noqa: E402
from helpers.data import load_corpus  # noqa: E402
from helpers.experiments import sweep as ex  # noqa: E402
from helpers.experiments.registry import SWEEPS  # noqa: E402


def part_path(name: str, part: str) -> Path:
    return ex.SWEEP_DIR / f"{name}.part-{part}.json"


def fold_parts(name: str, extend: bool) -> int:
    """--merge: the part files and the committed sweep rewritten as one sweep (by the sweep's writer);
    --extend: the part files' new arms appended to the committed sweep, its records and meta untouched."""
    parts = sorted(ex.SWEEP_DIR.glob(f"{name}.part-*.json"))
    if not parts:
        print(f"no part files {name}.part-*.json in {ex.SWEEP_DIR}", file=sys.stderr)
        return 1
    new = [s for f in parts for s in json.loads(f.read_text(encoding="utf-8"))]
    try:
        if extend:
            arms = " ".join(repr(a) for a in sorted({r["arm"] for s in new for r in s["runs"]}))
            made_by = f"python scripts/sweep.py {name} --arms {arms} --part …, then --extend"
            path = ex.extend_sweep(name, new, made_by)
        else:
            committed = ex.sweep_path(name)
            per_seed = ex.per_seed_results(committed) if committed.is_file() else []  # keep what is there
            per_seed += new
            path = SWEEPS[name].write(per_seed)
    except (ValueError, FileNotFoundError) as err:  # the same (arm, seed) twice; an arm the sweep has
        print(f"not {'extended' if extend else 'merged'}: {err}", file=sys.stderr)
        return 1
    for f in parts:
        f.unlink()
    seeds = sorted({r["seed"] for r in json.loads(path.read_text(encoding="utf-8"))["records"]})
    print(f"{'extended' if extend else 'wrote'} {path} (seeds {seeds})")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(SWEEPS))
    p.add_argument("--seeds", type=int, nargs="+", default=list(ex.SEEDS))
    p.add_argument("--arms", nargs="+", help="only these arms (default: all); e.g. extra seeds for a few")
    p.add_argument("--part", help="write a part file (merge them with --merge) instead of the sweep")
    p.add_argument("--merge", action="store_true", help="merge the part files into the committed sweep")
    p.add_argument("--extend", action="store_true",
                   help="add the part files' NEW arms to the committed sweep, keeping its records and meta; "
                        "their build is recorded in meta['extensions']")
    args = p.parse_args(argv)
    forced = {v: os.environ[v] for v in (plan.PLAN_VAR, plan.SCALE_VAR) if os.environ.get(v, "").strip()}
    if forced and not (args.merge or args.extend):  # a sweep is the full-length CPU recipe, nothing else
        print(f"refused: {forced} would change the recipe a committed sweep records; unset them",
              file=sys.stderr)
        return 2
    if args.merge or args.extend:
        return fold_parts(args.name, extend=args.extend)
    corpus = load_corpus()
    start, per_seed = time.perf_counter(), []
    for seed in args.seeds:
        run = SWEEPS[args.name].run_seed
        per_seed.append(run(seed, corpus, arms=args.arms, log=lambda s: print(s, flush=True)))
        if args.part:  # rewritten after every seed, so an interrupted run keeps its finished seeds
            part_path(args.name, args.part).parent.mkdir(parents=True, exist_ok=True)
            part_path(args.name, args.part).write_text(json.dumps(per_seed) + "\n", encoding="utf-8")
    if not args.part:
        print(f"wrote {SWEEPS[args.name].write(per_seed)}")
    print(f"{len(per_seed)} seed(s) in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
