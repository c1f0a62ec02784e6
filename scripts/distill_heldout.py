"""Lesson 08's RL experiment again, with problems held out for real (``helpers.tasks.heldout``).

    python scripts/distill_heldout.py --seed 0      # one seed (≈ 3-4 min on one thread): a part file
    python scripts/distill_heldout.py --merge       # the parts → results/sweeps/distill_heldout.json

The same recipe as the committed ``distill`` sweep's RL part (``helpers.experiments.distill.RL_RECIPE``), with
``held_out=True``: the base student and both arms never train on a held-out problem, ``accuracy`` is on the
held-out problems and ``in_distribution_accuracy`` on problems drawn as training draws them. The teacher is
the shipped one, trained before the split (it has seen practically every two-digit problem). Each seed is
its own command so that a shared machine can interleave other work between them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from helpers.experiments import THREADS, write_sweep  # noqa: E402
from helpers.experiments import distill as dsw  # noqa: E402
from helpers.lessons.teacher import load_teacher  # noqa: E402
from helpers.reproduce import build_meta  # noqa: E402
from helpers.tasks import heldout  # noqa: E402

PARTS = ROOT / "results" / "sweeps" / "distill_heldout_parts"


def run_seed(seed: int) -> dict:
    rl = dsw.run_rl_arms(seed, load_teacher(device="cpu"), held_out=True)
    runs = [{"arm": "base", "seed": seed, "metric": "accuracy", "value": rl["base_accuracy"]},
            {"arm": "base", "seed": seed, "metric": "in_distribution_accuracy",
             "value": rl["base_in_distribution_accuracy"]}]
    curves = {}
    for arm in dsw.RL_ARMS:
        res = rl[arm]
        curves[arm] = res.pop("curve")
        runs += [{"arm": arm, "seed": seed, "metric": k, "value": v} for k, v in res.items()]
    return {"seed": seed, "runs": runs, "curves": curves, "uptrain": None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int)
    ap.add_argument("--merge", action="store_true")
    args = ap.parse_args()
    if args.seed is not None:
        PARTS.mkdir(parents=True, exist_ok=True)
        out = run_seed(args.seed)
        (PARTS / f"seed{args.seed}.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        print({r["arm"] + " " + r["metric"]: round(r["value"], 3) for r in out["runs"]
               if "accuracy" in r["metric"]})
    if args.merge:
        parts = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(PARTS.glob("seed*.json"))]
        meta = {"student": vars(dsw.STUDENT), "rl_recipe": dsw.RL_RECIPE, "threads": THREADS,
                "held_out": {"n": heldout.N_HELD_OUT, "seed": heldout.HELD_OUT_SEED,
                             "closed_under_swap": True},
                **build_meta(), "device": "cpu", "made_by": "python scripts/distill_heldout.py"}
        print(write_sweep("distill_heldout", parts, meta=meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
