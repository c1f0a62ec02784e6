"""Run a committed seed sweep and write its results (``helpers.experiments`` explains the design).

    python scripts/sweep.py attention                      # every seed, one process (~25 min on 1 core)
    python scripts/sweep.py attention --seeds 0 1 --part a # a share of the seeds, into a part file
    python scripts/sweep.py attention --merge              # parts + the committed sweep -> attention.json
    python scripts/sweep.py attention --seeds 5 6 7 8 9 --arms MHA GQA-2 MQA "MLA Dc=4" --part x  # +seeds
    python scripts/sweep.py moe --seeds 0 1 2 --part a     # lesson 04's sweep, the same way
    python scripts/sweep.py moe --arms "softmax capacity c=1" --part c && \
        python scripts/sweep.py moe --extend               # new arms added beside the committed ones
    python scripts/sweep.py mtp                            # lesson 05: plain vs MTP (helpers.model_sweeps)
    python scripts/sweep.py capstone                       # lesson 06: tiny DeepSeek-V3 vs its baseline
    python scripts/sweep.py dsa                            # lesson 07: sparse attention at several k
    python scripts/sweep.py distill                        # lesson 08: distillation vs GRPO
    python scripts/sweep.py fp8 --seeds 0 1 2 3 4 5 6 7    # lesson 09: FP8 GEMMs vs full precision
    python scripts/sweep.py recall --seeds 0 --part p0     # lessons 02-03: associative recall, one seed
                                                           # a part (~4 min), 10 seeds, then --merge
    python scripts/sweep.py uptrain --seeds 0 1 --part a   # lesson 02: uptraining at the final lr

Two processes with disjoint ``--seeds`` and one ``--merge`` use both cores of a 2-core machine. Every run
trains on its sweep's fixed thread count (``helpers.experiments.THREADS``, one; ``mtp`` and ``capstone``
on ``helpers.model_sweeps.THREADS``, two: run those one process at a time), so the numbers do not
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

from helpers import (  # noqa: E402
    distill_sweep,
    dsa_sweep,
    fp8_sweep,
    model_sweeps,
    moe_sweep,
    plan,
    recall_sweep,
    uptrain_sweep,
)
from helpers import experiments as ex  # noqa: E402
from helpers.data import load_corpus  # noqa: E402

SWEEPS = {"attention": ex.run_attention_seed, "moe": moe_sweep.run_moe_seed,
          "mtp": model_sweeps.run_mtp_seed, "capstone": model_sweeps.run_capstone_seed,
          "dsa": dsa_sweep.run_dsa_seed, "distill": distill_sweep.run_distill_seed,
          "fp8": fp8_sweep.run_fp8_seed, "recall": recall_sweep.run_recall_seed,
          "uptrain": uptrain_sweep.run_uptrain_seed}
WRITERS = {"attention": lambda per_seed: ex.write_sweep("attention", per_seed),
           "moe": moe_sweep.write_moe_sweep, "mtp": model_sweeps.write_mtp_sweep,
           "capstone": model_sweeps.write_capstone_sweep, "dsa": dsa_sweep.write_dsa_sweep,
           "distill": distill_sweep.write_distill_sweep, "fp8": fp8_sweep.write_fp8_sweep,
           "recall": recall_sweep.write_recall_sweep, "uptrain": uptrain_sweep.write_uptrain_sweep}


def part_path(name: str, part: str) -> Path:
    return ex.SWEEP_DIR / f"{name}.part-{part}.json"


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
    if args.extend:
        parts = sorted(ex.SWEEP_DIR.glob(f"{args.name}.part-*.json"))
        per_seed = [s for f in parts for s in json.loads(f.read_text(encoding="utf-8"))]
        arms = " ".join(repr(a) for a in sorted({r["arm"] for s in per_seed for r in s["runs"]}))
        try:
            path = ex.extend_sweep(args.name, per_seed, f"python scripts/sweep.py {args.name} --arms {arms} "
                                   "--part …, then --extend")
        except (ValueError, FileNotFoundError) as err:
            print(f"not extended: {err}", file=sys.stderr)
            return 1
        for f in parts:
            f.unlink()
        print(f"extended {path}")
        return 0
    if args.merge:
        parts = sorted(ex.SWEEP_DIR.glob(f"{args.name}.part-*.json"))
        if not parts:
            print(f"no part files {args.name}.part-*.json in {ex.SWEEP_DIR}", file=sys.stderr)
            return 1
        committed = ex.sweep_path(args.name)
        per_seed = ex.per_seed_results(committed) if committed.is_file() else []  # keep what is there
        per_seed += [s for f in parts for s in json.loads(f.read_text(encoding="utf-8"))]
        seeds = sorted({s["seed"] for s in per_seed})
        try:
            path = WRITERS[args.name](per_seed)
        except ValueError as err:  # the same (arm, seed) twice
            print(f"not merged: {err}", file=sys.stderr)
            return 1
        for f in parts:
            f.unlink()
        print(f"wrote {path} (seeds {sorted(seeds)})")
        return 0
    corpus = load_corpus()
    start, per_seed = time.perf_counter(), []
    for seed in args.seeds:
        per_seed.append(SWEEPS[args.name](seed, corpus, arms=args.arms, log=lambda s: print(s, flush=True)))
        if args.part:  # rewritten after every seed, so an interrupted run keeps its finished seeds
            part_path(args.name, args.part).parent.mkdir(parents=True, exist_ok=True)
            part_path(args.name, args.part).write_text(json.dumps(per_seed) + "\n", encoding="utf-8")
    if not args.part:
        print(f"wrote {WRITERS[args.name](per_seed)}")
    print(f"{len(per_seed)} seed(s) in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
