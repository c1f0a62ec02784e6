"""The learning-rate grid behind lesson 08's ``rl_base`` sweep: every arm at each of its ``LR_GRID`` values,
one seed (``LR_SEED``, not a sweep seed), from the middle base.

    python scripts/rl_base_lr.py GRPO          # one arm's grid into a part file (several arms: one each)
    python scripts/rl_base_lr.py --merge       # the parts → results/sweeps/rl_base_lr.json, the pick

The rule: each arm takes the grid value with the best final *in-distribution* accuracy (problems drawn as
training draws them; never the held-out ones, which only the sweep reports); ties go to the smaller value.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from helpers.experiments import rl_base as rb  # noqa: E402
from helpers.experiments.sweep import SWEEP_DIR, THREADS, load_sweep, write_sweep  # noqa: E402
from helpers.reproduce import build_meta  # noqa: E402


def grid_arm(arm: str, lr: float) -> str:
    return f"{arm} lr={lr:g}"


def pick(sweep) -> dict:
    """The rule, applied to a loaded grid: {arm: lr}."""
    out = {}
    for arm, lrs in rb.LR_GRID.items():
        scores = [(sweep.value(grid_arm(arm, lr), rb.LR_SEED, "in_distribution_accuracy"), -lr, lr)
                  for lr in lrs]
        out[arm] = max(scores)[2]
    return out


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    parts = SWEEP_DIR / "rl_base_lr_parts"
    if args == ["--merge"]:
        per_seed = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(parts.glob("*.json"))]
        meta = {"grid": rb.LR_GRID, "seed": rb.LR_SEED, "base_steps": rb.BASE_BUDGETS[1], "recipe": rb.RECIPE,
                "rule": "best final in-distribution accuracy (ties: the smaller lr)", "threads": THREADS,
                **build_meta(), "device": "cpu",
                "made_by": "python scripts/rl_base_lr.py ARM …, then --merge"}
        path = write_sweep("rl_base_lr", per_seed, meta=meta)
        print(path, pick(load_sweep("rl_base_lr")))
        return 0
    arms = args or list(rb.ARMS)
    base = rb.nested_bases(rb.LR_SEED, (rb.BASE_BUDGETS[1],))[rb.BASE_BUDGETS[1]]
    teacher = rb.train_procedure_teacher()
    runs, curves = [], {}
    for arm in arms:
        for lr in rb.LR_GRID[arm]:
            lrs = {**rb.LR, arm: lr}
            res = rb.run_arms(rb.LR_SEED, base, lrs, teacher, arms=(arm,))[arm]
            curves[grid_arm(arm, lr)] = res.pop("curve")
            runs += [{"arm": grid_arm(arm, lr), "seed": rb.LR_SEED, "metric": k, "value": float(v)}
                     for k, v in res.items()]
            print(grid_arm(arm, lr), {k: round(v, 3) for k, v in res.items() if "accuracy" in k}, flush=True)
    parts.mkdir(parents=True, exist_ok=True)
    (parts / f"{'_'.join(arms)}.json").write_text(
        json.dumps({"seed": rb.LR_SEED, "runs": runs, "curves": curves, "uptrain": None}) + "\n",
        encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
