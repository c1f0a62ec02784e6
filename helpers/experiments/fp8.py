"""The committed seed sweep behind lesson 09: a small model trained with FP8 GEMMs against full precision.

DeepSeek-V3 (arXiv 2412.19437, §3.3, Figure 10 and Appendix B.1) trains with FP8 GEMMs and reports a
relative loss error against BF16 below 0.25% at 16B and 230B parameters. Here the arms are:

- ``"fp32"``: the model as it is (every GEMM in FP32);
- ``"fp8"``: the same model after ``helpers.fp8.to_fp8``: every block linear's three GEMMs (forward,
  activation gradient, weight gradient) take E4M3 inputs, fake-quantised with 1×128 activation tiles and
  128×128 weight blocks; embedding, output head, norms and attention's softmax stay in FP32.

Both arms of a seed start from the same ``torch.manual_seed(seed)`` model (the shapes are identical, so
every parameter gets the same initial value) and train on the same batches (``train``'s generator is
seeded by the run seed), so ``log(loss_fp8 / loss_fp32)`` on a seed is a paired quantity. Runs train on
``experiments.THREADS`` thread, bit-reproducibly. ``python scripts/sweep.py fp8`` writes
``results/sweeps/fp8.json``.
"""

from __future__ import annotations

import math

import torch

from ..config import ModelConfig
from ..data import Corpus
from ..fp8 import to_fp8
from ..model import Transformer
from ..plan import scaled_recipe
from ..reproduce import build_meta
from ..timing import torch_threads
from ..training import evaluate, train
from ..validate import check_choice, check_int
from .sweep import EXTRA_SEEDS, SEEDS, THREADS, write_sweep

# D and I multiples of 128, so every activation tile and weight block is whole (no padding)
BASE = ModelConfig(dim=128, n_layers=2, n_heads=4, inter_dim=256, max_seq_len=64)
RECIPE = dict(steps=300, batch_size=8, seq_len=64, lr=3e-3, warmup=20, eval_every=50, eval_iters=4)
EVAL = dict(batch_size=16, seq_len=64, iters=4, seed=1234)  # the same fixed batches for every run
SEEDS = SEEDS + EXTRA_SEEDS[:3]  # eight
ARMS = ("fp32", "fp8")


def build(arm: str, seed: int) -> Transformer:
    """Seed ``seed``'s model for ``arm``: the same initial weights in both arms."""
    arm = check_choice("arm", arm, ARMS)
    torch.manual_seed(check_int("seed", seed, min_value=0))
    model = Transformer(BASE)
    if arm == "fp8":
        to_fp8(model)
    return model


def train_arm(arm: str, seed: int, corpus: Corpus, *, recipe: dict | None = None):
    """One run on ``THREADS`` thread(s) on the CPU: (the metrics the sweep records, the History)."""
    with torch_threads(THREADS):
        model = build(arm, seed)
        hist = train(model, corpus, progress=False, device="cpu",
                     **{**scaled_recipe(recipe or RECIPE), "seed": seed})
        val = evaluate(model, corpus, **EVAL)
    return {"val_loss": val, "log_val_loss": math.log(val), "final_train_loss": hist.train_loss[-1],
            "train_seconds": hist.seconds}, hist


def run_fp8_seed(seed: int, corpus: Corpus, arms=None, log=None) -> dict:
    """Both arms on one seed: the records ``scripts/sweep.py`` writes."""
    names = list(ARMS) if arms is None else [check_choice("arm", a, ARMS) for a in arms]
    runs, curves = [], {}
    for name in names:
        m, hist = train_arm(name, seed, corpus)
        runs += [{"arm": name, "seed": seed, "metric": k, "value": v} for k, v in m.items()]
        curves[name] = {"step": [s + 1 for s in hist.val_step], "val_loss": hist.val_loss,
                        "train_loss": hist.train_loss}
        if log:
            log(f"fp8 seed {seed} {name:<5} val {m['val_loss']:.4f} ({m['train_seconds']:.0f} s)")
    return {"seed": seed, "runs": runs, "curves": curves, "uptrain": None}


def write_fp8_sweep(per_seed: list[dict], path=None):
    meta = {"base": dict(vars(BASE)), "recipe": RECIPE, "eval": EVAL, "threads": THREADS, **build_meta(),
            "device": "cpu", "arms": list(ARMS), "made_by": "python scripts/sweep.py fp8"}
    return write_sweep("fp8", per_seed, path, meta=meta)
