"""The committed seed sweep behind lesson 07: DeepSeek Sparse Attention trained the way V3.2 was.

The task makes long-range retrieval matter: each sequence is ``HALF`` bytes of the course corpus followed
by the same ``HALF`` bytes again. The first half is ordinary language modelling (``text_loss``); in the
second half every next byte sits exactly ``HALF`` positions back, so a model that finds it predicts it
almost perfectly (``copy_loss``). A sparse layer that reads k of up to 127 positions must spend some of
its k on that one far position and the rest on the local context the text needs.

One seed runs the DeepSeek-V3.2 recipe at course scale (``RECIPE``), on ``experiments.THREADS`` thread:

1. dense pre-training of a 2-layer MLA model whose indexer is present but unused (k ≥ the context);
2. dense warm-up: everything frozen but the indexers, trained by KL(p_t ‖ softmax(I(t, ·))) to the
   main attention (``helpers.dsa``, phase ``"warmup"``); the recall of dense attention mass inside the
   indexer's top-k is recorded every ``recall_every`` steps;
3. sparse training at each k (phase ``"sparse"``: all parameters; the main model learns from the LM loss
   on top-k attention, the indexer from the KL over its selected set, its input detached), against the
   *same* model trained on densely for the same steps on the same batches (arm ``"dense"``), and a
   k = 4 arm that skips the warm-up.

Every arm of a seed starts from the same pre-trained weights and sees the same batches, so arm − dense
is a paired difference (``helpers.compare``). ``python scripts/sweep.py dsa`` writes
``results/sweeps/dsa.json``; ``tests/test_dsa_sweep.py`` re-runs one seed's arm.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..data import Corpus
from ..dsa import (
    dsa_layers,
    indexer_parameters,
    indexer_recall,
    record_stats,
)
from ..model import Transformer
from ..plan import scaled
from ..reproduce import build_meta
from ..timing import synced_clock, torch_threads
from ..training import run_steps
from ..validate import check_choice, check_int
from .sweep import EXTRA_SEEDS, SEEDS, THREADS, write_sweep

HALF = 64  # bytes of text, then the same bytes again: sequences of 2·HALF − 1 inputs
SEQ_LEN = 2 * HALF - 1
DENSE_K = 2 * HALF  # k at least the context: every causal position is read
BASE = ModelConfig(dim=64, n_layers=2, n_heads=4, inter_dim=172, max_seq_len=2 * HALF, attn_type="mla",
                   q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
                   index_n_heads=4, index_head_dim=16, index_topk=DENSE_K)
RECIPE = dict(batch_size=16, pretrain_steps=300, pretrain_lr=3e-3, warmup_steps=60, warmup_lr=1e-2,
              sparse_steps=100, sparse_lr=1e-3, recall_every=10, recall_k=8)
EVAL = dict(batch_size=32, iters=2, seed=7)  # the same fixed validation batches for every run
SEEDS = SEEDS + EXTRA_SEEDS  # ten: the knee in k needs them
KS = (2, 4, 8, 16)
ARMS = ("dense", *(f"k={k}" for k in KS), "k=4, no warm-up")


def arm_k(arm: str) -> int:
    """The k an arm trains and is evaluated with (``DENSE_K`` for the dense arm)."""
    arm = check_choice("arm", arm, ARMS)
    return DENSE_K if arm == "dense" else int(arm.split(",")[0][2:])


def repeat_batch(corpus: Corpus, split: str, batch_size: int, generator: torch.Generator):
    """(x, y), each (B, 2·HALF − 1): HALF bytes of one corpus window, then the same bytes again."""
    b = corpus.get_batch(split, batch_size, HALF, generator=generator)
    seq = torch.cat([b.x, b.x], dim=1)  # (B, 2·HALF)
    return seq[:, :-1], seq[:, 1:]


def eval_batches(corpus: Corpus) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(EVAL["seed"])
    return [repeat_batch(corpus, "val", EVAL["batch_size"], gen) for _ in range(EVAL["iters"])]


@torch.no_grad()
def measure(model: Transformer, corpus: Corpus, k: int) -> dict[str, float]:
    """Validation losses with top-k attention: the whole sequence, the text half (targets 0 … HALF−2)
    and the copy half (targets HALF−1 …, each one HALF positions back)."""
    check_int("k", k, min_value=1)
    model.eval()
    losses = []
    with torch_threads(THREADS):
        for x, y in eval_batches(corpus):
            logits = model.run(x, index_topk=k, dsa_phase="inference").logits  # (B, T, V)
            losses.append(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape))
    loss = torch.cat(losses)  # (N, 2·HALF − 1)
    return {"val_loss": loss.mean().item(), "text_loss": loss[:, :HALF - 1].mean().item(),
            "copy_loss": loss[:, HALF - 1:].mean().item()}


@torch.no_grad()
def measure_recall(model: Transformer, corpus: Corpus, ks=KS) -> dict[str, float]:
    """Recall of dense attention by the indexer's top-k, averaged over layers: the share of dense
    attention mass inside the top-k (``recall_mass@k``) and the overlap with dense attention's own
    top-k set (``recall_set@k``), on the first validation batch."""
    x, _ = eval_batches(corpus)[0]
    record_stats(model, True)
    model.eval()
    with torch_threads(THREADS):
        model.run(x, dsa_phase="warmup")  # dense attention, so p_t is the full distribution
        out = {}
        for k in ks:
            recalls = [indexer_recall(m.stats.attention, m.stats.index_scores, k) for m in dsa_layers(model)]
            out[f"recall_mass@{k}"] = sum(r.mass for r in recalls) / len(recalls)
            out[f"recall_set@{k}"] = sum(r.set for r in recalls) / len(recalls)
    record_stats(model, False)
    return out


def new_dsa_model(seed: int) -> Transformer:
    with torch_threads(THREADS):
        torch.manual_seed(check_int("seed", seed, min_value=0))
        return Transformer(BASE)


def _loop(model, params, corpus, steps, lr, gen, step_fn, callback=None) -> float:
    """Plain AdamW (no weight decay, constant lr) for ``steps`` batches (``helpers.plan.scaled``: fewer
    under ``COURSE_STEPS_SCALE``); returns the wall seconds."""
    steps = scaled(steps)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    start = synced_clock()
    with torch_threads(THREADS):
        run_steps(opt, steps, lambda step: step_fn(*repeat_batch(corpus, "train", RECIPE["batch_size"], gen)),
                  callback=None if callback is None else lambda step, loss: callback(step, loss.item()))
    model.eval()
    return synced_clock() - start


def pretrain(model: Transformer, corpus: Corpus, seed: int, callback=None) -> float:
    """Stage 1: dense language-model training (the indexer is never consulted: k ≥ the context)."""
    gen = torch.Generator().manual_seed(seed)
    return _loop(model, list(model.parameters()), corpus, RECIPE["pretrain_steps"], RECIPE["pretrain_lr"],
                 gen, lambda x, y: model.run(x, y, index_topk=DENSE_K, dsa_phase="inference").loss, callback)


def warm_up(model: Transformer, corpus: Corpus, seed: int, callback=None) -> dict[str, list]:
    """Stage 2: only the indexers learn, by the KL to the dense attention. Returns the curve of the
    KL and of ``recall_mass@recall_k`` (before step 0 and every ``recall_every`` steps)."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = indexer_parameters(model)
    for p in params:
        p.requires_grad_(True)
    curve = {"step": [0], "recall_mass": [measure_recall(model, corpus, (RECIPE["recall_k"],))
                                          [f"recall_mass@{RECIPE['recall_k']}"]], "kl": []}

    def step_fn(x, y):
        return model.run(x, dsa_phase="warmup").indexer_loss

    def on_step(step, kl):
        curve["kl"].append(kl)
        if (step + 1) % scaled(RECIPE["recall_every"], minimum=1) == 0:
            curve["step"].append(step + 1)
            curve["recall_mass"].append(measure_recall(model, corpus, (RECIPE["recall_k"],))
                                        [f"recall_mass@{RECIPE['recall_k']}"])
            model.train()
        if callback is not None:
            callback(step, kl, curve)

    gen = torch.Generator().manual_seed(1000 + seed)
    curve["seconds"] = _loop(model, params, corpus, RECIPE["warmup_steps"], RECIPE["warmup_lr"], gen, step_fn,
                             on_step)
    for p in model.parameters():
        p.requires_grad_(True)
    return curve


def sparse_train(model: Transformer, corpus: Corpus, seed: int, k: int, callback=None) -> float:
    """Stage 3 at ``k`` (``DENSE_K``: the dense control, the same steps and batches without sparsity)."""
    check_int("k", k, min_value=1)
    phase = "sparse" if k < DENSE_K else "inference"  # sparse: out.loss includes the indexers' KL

    def step_fn(x, y):
        return model.run(x, y, index_topk=k, dsa_phase=phase).loss

    gen = torch.Generator().manual_seed(2000 + seed)
    return _loop(model, list(model.parameters()), corpus, RECIPE["sparse_steps"], RECIPE["sparse_lr"], gen,
                 step_fn, callback)


def run_dsa_seed(seed: int, corpus: Corpus, arms=None, log=None) -> dict:
    """One seed: pre-train, warm up, then every arm from the same weights. Records per arm the losses
    after sparse training and before it (``*_before``: the warmed-up model read at that k), the
    indexer's recall after the warm-up (arm ``"indexer"``) and the warm-up curve."""
    names = list(ARMS) if arms is None else [check_choice("arm", a, ARMS) for a in arms]
    model = new_dsa_model(seed)
    pre_s = pretrain(model, corpus, seed)
    pretrained = copy.deepcopy(model.state_dict())
    curve = warm_up(model, corpus, seed)
    warmed = copy.deepcopy(model.state_dict())
    runs = [{"arm": "indexer", "seed": seed, "metric": m, "value": v}
            for m, v in measure_recall(model, corpus).items()]
    for name in names:
        k = arm_k(name)
        model.load_state_dict(pretrained if "no warm-up" in name else warmed)
        before = measure(model, corpus, k)
        seconds = sparse_train(model, corpus, seed, k)
        after = measure(model, corpus, k)
        vals = {**after, **{f"{m}_before": v for m, v in before.items()}, "train_seconds": seconds}
        runs += [{"arm": name, "seed": seed, "metric": m, "value": v} for m, v in vals.items()]
        if log:
            log(f"dsa seed {seed} {name:<16} copy {after['copy_loss']:.4f} text {after['text_loss']:.4f} "
                f"({seconds:.0f} s)")
    curves = {"warmup": {"step": curve["step"], "recall_mass": curve["recall_mass"], "kl": curve["kl"]},
              "pretrain_seconds": pre_s, "warmup_seconds": curve["seconds"]}
    return {"seed": seed, "runs": runs, "curves": curves, "uptrain": None}


def write_dsa_sweep(per_seed: list[dict], path=None):
    meta = {"base": {k: v for k, v in vars(BASE).items()}, "recipe": RECIPE, "eval": EVAL, "half": HALF,
            "threads": THREADS, **build_meta(), "device": "cpu", "arms": list(ARMS),
            "made_by": "python scripts/sweep.py dsa"}
    return write_sweep("dsa", per_seed, path, meta=meta)
