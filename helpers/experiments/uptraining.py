"""Lesson 02's uptraining as a test of Ainslie et al.'s claim (arXiv 2305.13245, §2.1 and Figure 5): convert a
trained MHA model to GQA by mean-pooling each group's K/V heads, continue training for 5% of the
pre-training steps, and compare with the same fine-tune of the unconverted MHA model (the control) and
with GQA trained from scratch.

What this version fixes in the attention sweep's uptraining (issue #28, item 4):

- the fine-tune continues at the pre-training's **final** learning rate (``RECIPE['lr'] ×
  TrainConfig.min_lr_ratio``), held constant with no warmup, instead of re-warming to a higher rate that
  the converged-for-its-schedule MHA model then pays for; the control gets the identical schedule;
- every point of the curve, step 0 included, is the validation loss on the same fixed batches
  (``experiments.EVAL``), so the curve has no jump from a change of batches.

The pre-training is the attention sweep's MHA run (``experiments.train_arm``), recorded here as ``MHA
pre-trained``: on the attention sweep's torch build and kind of CPU it equals ``attention.json``'s MHA
number for the seed; this sweep was made on another CPU, where it differs in the fifth decimal.
``python scripts/sweep.py uptrain`` writes ``results/sweeps/uptrain.json``.
"""

from __future__ import annotations

from ..data import Corpus
from ..lessons.gqa import to_gqa
from ..plan import scaled
from ..reproduce import build_meta
from ..timing import torch_threads
from ..training import TrainConfig, evaluate, train
from . import attention as ex

UPTRAIN = dict(n_kv_heads=2, fraction=0.05, eval_every=3, seed_offset=1000)
ARMS = ("MHA + same steps", "mean-pool", "first-head")
SEEDS = tuple(range(10))


def fine_tune_recipe() -> dict:
    """The fine-tune's settings: 5% of the pre-training steps at the pre-training's final learning rate,
    constant (``min_lr_ratio=1``, no warmup), the pre-training's batch shape."""
    final_lr = ex.RECIPE["lr"] * TrainConfig.min_lr_ratio
    steps = scaled(max(1, round(ex.RECIPE["steps"] * UPTRAIN["fraction"])))
    return dict(steps=steps, batch_size=ex.RECIPE["batch_size"], seq_len=ex.RECIPE["seq_len"], lr=final_lr,
                warmup=0, min_lr_ratio=1.0, eval_every=steps, eval_iters=1)


def convert(mha, arm: str):
    if arm == "MHA + same steps":
        return to_gqa(mha, mha.config.kv_heads)  # an exact copy
    return to_gqa(mha, UPTRAIN["n_kv_heads"], method="mean" if arm == "mean-pool" else "first")


def uptrain(mha, seed: int, corpus: Corpus, arms=ARMS) -> dict[str, dict]:
    """Each arm fine-tuned from seed ``seed``'s trained MHA on the same batches with the same schedule;
    its validation loss on ``ex.EVAL``'s batches at step 0 and every ``eval_every`` steps."""
    tune = {**fine_tune_recipe(), "seed": seed + UPTRAIN["seed_offset"]}
    every = max(1, min(UPTRAIN["eval_every"], tune["steps"]))
    out = {}
    for arm in arms:
        with torch_threads(ex.THREADS):
            model = convert(mha, arm)
            steps, curve = [0], [evaluate(model, corpus, **ex.EVAL)]

            def on_step(step, _out, _batch, model=model, steps=steps, curve=curve):
                if (step + 1) % every == 0 or step + 1 == tune["steps"]:
                    steps.append(step + 1)
                    curve.append(evaluate(model, corpus, **ex.EVAL))

            train(model, corpus, progress=False, device="cpu", callback=on_step, **tune)
        out[arm] = {"at_0": curve[0], "final": curve[-1], "curve_step": steps, "curve": curve}
    return out


def run_uptrain_seed(seed: int, corpus: Corpus, arms=None, log=None) -> dict:
    """The attention sweep's MHA run on ``seed``, then every uptraining arm from it."""
    mha, _ = ex.train_arm(ex.attention_arms()["MHA"], seed, corpus)
    with torch_threads(ex.THREADS):
        pre = evaluate(mha, corpus, **ex.EVAL)
    up = uptrain(mha, seed, corpus, arms=tuple(arms) if arms else ARMS)
    runs = [{"arm": "MHA pre-trained", "seed": seed, "metric": "val_loss", "value": pre}]
    for arm, r in up.items():
        runs += [{"arm": arm, "seed": seed, "metric": "val_loss", "value": r["final"]},
                 {"arm": arm, "seed": seed, "metric": "val_loss_at_0", "value": r["at_0"]}]
        if log:
            log(f"uptrain seed {seed} {arm:<17} {r['at_0']:.4f} -> {r['final']:.4f}")
    curves = {arm: {"step": r["curve_step"], "val_loss": r["curve"]} for arm, r in up.items()}
    return {"seed": seed, "runs": runs, "curves": curves, "uptrain": None}


def write_uptrain_sweep(per_seed: list[dict], path=None):
    meta = {"pretrain_recipe": ex.RECIPE, "fine_tune": fine_tune_recipe(), "uptrain": UPTRAIN,
            "eval": ex.EVAL,
            "threads": ex.THREADS, **build_meta(), "device": "cpu", "arms": list(ARMS),
            "made_by": "python scripts/sweep.py uptrain"}
    return ex.write_sweep("uptrain", per_seed, path, meta=meta)

