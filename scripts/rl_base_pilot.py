"""The pilot before lesson 08's ``rl_base`` sweep (one seed, a few minutes): is the scratchpad teacher
accurate, how strong are the bases at each budget, and can the student learn the scratchpad format?

    python scripts/rl_base_pilot.py            # appends its rows to results/pilots/distill.jsonl
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from helpers.experiments import rl_base as rb  # noqa: E402
from helpers.model import Transformer  # noqa: E402
from helpers.tasks import (  # noqa: E402
    arith,
    heldout,
    scratchpad,
)
from helpers.timing import torch_threads  # noqa: E402
from helpers.training import optimizer_step  # noqa: E402

OUT = ROOT / "results" / "pilots" / "distill.jsonl"


def emit(row: dict) -> None:
    print(row, flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    stage = args[0] if args else "all"
    test = heldout.held_out_problems()
    if stage in ("teacher", "all"):  # one run measured at 1000, 2000, 3000 steps (train_procedure_teacher)
        r, t0 = rb.TEACHER_RECIPE, time.perf_counter()
        with torch_threads(rb.THREADS):
            torch.manual_seed(r["seed"])
            model = Transformer(rb.TEACHER_CONFIG)
            opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=0.0)
            gen = torch.Generator().manual_seed(r["seed"])
            for step in range(3000):
                problems = heldout.sample_training_problems(r["batch"], r["digits"], gen)
                b = arith.sft_batch(problems, [scratchpad.scratchpad(p) for p in problems])
                optimizer_step(opt, model.run(b.x, b.y).loss)
                if (step + 1) % 1000 == 0:
                    emit({"pilot": "teacher", "steps": step + 1, "params": model.num_params(),
                          **{k: round(v, 4) for k, v in rb.teacher_accuracy(model.eval()).items()},
                          "seconds": round(time.perf_counter() - t0, 1)})
                    model.train()
    if stage in ("bases", "all"):
        t0 = time.perf_counter()
        bases = rb.nested_bases(0, (100, 250, 500, 1000, 2000, 4000))
        for steps, base in bases.items():
            emit({"pilot": "base", "seed": 0, "base_steps": steps,
                  "held_out_accuracy": scratchpad.graded_accuracy(base, test),
                  "seconds_all": round(time.perf_counter() - t0, 1)})
    if stage in ("arms", "all"):
        base = rb.nested_bases(0, (1000,))[1000]
        t0 = time.perf_counter()
        res = rb.run_arms(0, base, rb.LR, rb.train_procedure_teacher())
        for arm, r in res.items():
            emit({"pilot": "arms", "seed": 0, "base_steps": 1000, "arm": arm, "lr": rb.LR.get(arm),
                  **{k: round(v, 4) for k, v in r.items() if k != "curve"},
                  "curve": r.get("curve", {}).get("accuracy"),
                  "seconds_all": round(time.perf_counter() - t0, 1)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
