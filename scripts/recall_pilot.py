"""The recall sweep's pilot (issue #28): one seed, a few arms, a few recipes, before the sweep's recipe is
fixed. Appends one line per run to results/pilots/recall.jsonl (the grid the lessons and the report quote).

    python scripts/recall_pilot.py --arms MHA MQA --steps 1000 --lr 3e-3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from helpers.experiments import recall as rs  # noqa: E402

OUT = ROOT / "results" / "pilots" / "recall.jsonl"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", default=["MHA", "MQA"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=rs.RECIPE["steps"])
    p.add_argument("--lr", type=float, default=rs.RECIPE["lr"])
    p.add_argument("--batch-size", type=int, default=rs.RECIPE["batch_size"])
    p.add_argument("--pairs", type=int, nargs="+", default=list(rs.RECIPE["pairs"]), help="training mix")
    p.add_argument("--head-dim", type=int, default=rs.BASE.hd, help="Dh (D stays, H = D / Dh)")
    p.add_argument("--dim", type=int, default=rs.BASE.dim, help="D")
    p.add_argument("--layers", type=int, default=rs.BASE.n_layers)
    p.add_argument("--keys", type=int, default=rs.TASK.n_keys)
    p.add_argument("--values", type=int, default=rs.TASK.n_values)
    p.add_argument("--eval-pairs", type=int, nargs="+", default=list(rs.PAIRS))
    p.add_argument("--fused", action="store_true", help="one token per pair (keys at 64, pairs at 128)")
    args = p.parse_args(argv)
    fused = dict(key_base=64, pair_base=128) if args.fused else {}
    rs.TASK = rs.RecallTask(n_keys=args.keys, n_values=args.values, **fused)
    rs.BASE = rs.BASE.replace(n_layers=args.layers, dim=args.dim, head_dim=args.head_dim,
                              n_heads=args.dim // args.head_dim,
                              max_seq_len=rs.TASK.seq_len(max(args.pairs + args.eval_pairs)))
    recipe = {**rs.RECIPE, "steps": args.steps, "lr": args.lr, "batch_size": args.batch_size,
              "pairs": tuple(args.pairs)}
    for arm in args.arms:
        acc, _, seconds = rs.train_arm(arm, args.seed, recipe=recipe, pairs=args.eval_pairs)
        row = {"arm": arm, "seed": args.seed, "steps": args.steps, "lr": args.lr,
               "batch_size": args.batch_size, "layers": args.layers, "D": args.dim, "Dh": args.head_dim,
               "H": rs.BASE.n_heads,
               "keys": args.keys, "values": args.values, "fused": args.fused,
               "train_pairs": list(args.pairs), **acc, "train_seconds": round(seconds, 1)}
        print(json.dumps(row), flush=True)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        with OUT.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
