"""Where does a seed's luck live in the attention sweep? (issue #28: why its language-model pairs pair
weakly even with paired initial weights)

For each seed, MHA is trained again with everything identical to its committed sweep run (paired initial
weights, batches, thread count) except for one perturbation of the initial weights
(``helpers.experiments.attention.CONTROLS``):

* ``nudge``: ONE weight moved by 1e-6 (weights are ~0.02). If the final losses landed far apart, the
  training would be chaotic and no pairing could cancel anything.
* ``kv``: the key and value projections (``wk``, ``wv``) re-drawn from another seed, nothing else: exactly
  the weights that differ between MHA and GQA/MQA. If this moves the final loss as much as a whole new
  seed does, the seed's luck lives in those weights, and arms that must differ in them cannot pair.

Appends one line per (control, seed) to results/pilots/attention_chaos.jsonl; lessons 02 reads it through
``attention.chaos_runs``. The unperturbed value is the committed sweep's.

    python scripts/attention_chaos.py --control kv --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from helpers.data import load_corpus  # noqa: E402
from helpers.experiments import attention as ex  # noqa: E402
from helpers.reproduce import build_meta  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--control", choices=sorted(ex.CONTROLS), default="nudge")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--arm", default="MHA", choices=list(ex.attention_arms()))
    args = p.parse_args(argv)
    corpus, sweep, cfg = load_corpus(), ex.load_sweep("attention"), ex.attention_arms()[args.arm]
    label, make = ex.CONTROLS[args.control]
    for seed in args.seeds:
        model, _ = ex.train_arm(cfg, seed, corpus, perturb=make(seed))
        got = ex.measure(model, corpus)["val_loss"]
        plain = sweep.value(args.arm, seed)
        row = {"arm": args.arm, "seed": seed, "control": label, "val_loss_perturbed": got,
               "val_loss_sweep": plain, "difference": got - plain,
               "same_build_as_sweep": sweep.reproduction(args.arm, seed, {"val_loss": plain}).expected_exact,
               **build_meta()}
        print(json.dumps(row), flush=True)
        ex.CHAOS_PATH.parent.mkdir(parents=True, exist_ok=True)
        with ex.CHAOS_PATH.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
