"""The committed seed sweeps behind lessons 02 and 03: what sharing or compressing K/V costs in quality.

A verdict needs several seeds (``helpers.compare``), and several seeds of every configuration do not fit
in a lesson's three minutes on a CPU. So the full sweep is run once by a committed script,
``python scripts/sweep.py attention`` (about 12 minutes on 2 idle cores), and its results are committed in
``results/sweeps/attention.json`` together with the recipe that made them. A lesson loads the sweep, runs
one seed of one or two arms live, and shows that its live run reproduces the committed number: training
is bit-deterministic for a fixed seed, recipe and thread count, which is why every run here trains with
``THREADS`` threads. ``tests/test_experiments.py`` re-runs one arm of each sweep the same way.

The arms share one recipe and differ only in the attention (shape letters from ``docs/GLOSSARY.md``):

- ``MHA``, ``GQA-2``, ``MQA``: the ``tiny`` preset (H = 6 heads of Dh = 16) with G = 6, 2, 1 K/V heads;
  the cache holds 2·G·Dh numbers per token and layer.
- ``MLA Dc=…``: the same model with MLA (Dn = Dv = Dh, Dr = Dh/2, no query compression); it caches
  Dc + Dr numbers per token and layer. Dc = 24 and 56 give exactly MQA's and GQA-2's cache bytes (32 and
  64 numbers), so each has a same-size rival; Dc = 4 goes far below everything, towards the knee.
- ``uptrain``: seed s's trained MHA converted to G = 2 by mean pooling and by keeping the first head of
  each group (Ainslie et al. §2.1), measured right after conversion and after a fine-tune of 5% of the
  pre-training steps (the paper's budget), beside the control that gives MHA the same extra steps.

Each run records the validation loss on fixed batches (``EVAL``) and ``copy_gain``: the loss on the
first copy of a random 48-letter string minus the loss on its exact repeat right after it (see
``copy_probe``). A model that can look a token up in its cache and copy what followed it (an "induction
head") predicts the repeat almost perfectly, and that skill is what K/V capacity is for; a gain near zero
says the model does not copy yet, so a smaller cache has little to take away.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ..compare import PairedRuns
from ..config import ModelConfig, preset
from ..data import Corpus
from ..kv_cache import config_cache_bytes_per_token
from ..lessons.gqa import to_gqa
from ..mla import set_mla_mode
from ..model import Transformer
from ..plan import scaled, scaled_recipe
from ..reproduce import build_meta
from ..timing import torch_threads
from ..training import History, evaluate, train
from ..validate import check_choice, check_int
from ..viz.style import PALETTE, latent_colors
from .paired_init import INIT, paired_init
from .sweep import (  # noqa: F401  (Sweep, load_sweep...: helpers.experiments' old names)
    EXTRA_SEEDS,
    ROOT,
    SEEDS,
    SWEEP_DIR,
    THREADS,
    Sweep,
    load_sweep,
    per_seed_results,
    sweep_path,
    write_sweep,
)

# Every arm runs all ten seeds (SEEDS + EXTRA_SEEDS), so every paired comparison uses the same seeds.
# (The first version ran five seeds everywhere and added five more to four arms after looking.)
EXTRA_ARMS = ("MHA", "GQA-2", "MQA", "MLA Dc=4", "MLA Dc=24", "MLA Dc=56")  # arms that also run EXTRA_SEEDS
NUDGED = "layers.0.ffn.w1.weight"  # the weight nudge_one_weight moves: element [0, 0]
RECIPE = dict(steps=300, batch_size=8, seq_len=128, lr=3e-3, eval_every=50, eval_iters=16)
EVAL = dict(batch_size=16, seq_len=128, iters=16, seed=1234)  # the same fixed batches for every run
UPTRAIN = dict(n_kv_heads=2, fraction=0.05, lr_factor=1 / 3, warmup=2, eval_every=5, seed_offset=1000)
MLA_TRAIN_MODE = "latent"  # MLA trains through the mode that re-expands K/V from the latent (lesson 03 §4)
COPY_PROBE = dict(n=16, length=48, seed=0)


def attention_arms(base: ModelConfig | None = None) -> dict[str, ModelConfig]:
    """The sweep's configurations by name, all from one base (the ``tiny`` preset by default)."""
    base = preset("tiny") if base is None else base
    Dh = base.hd
    mla = dict(attn_type="mla", qk_nope_head_dim=Dh, v_head_dim=Dh, qk_rope_head_dim=Dh // 2, q_lora_rank=0)
    arms = {"MHA": base}
    for g in (2, 1):
        arms["MQA" if g == 1 else f"GQA-{g}"] = base.replace(n_kv_heads=g)
    for dc in (4, 24, 56):
        arms[f"MLA Dc={dc}"] = base.replace(kv_lora_rank=dc, **mla)
    return arms


def cache_numbers_per_token(cfg: ModelConfig) -> int:
    """Numbers one token adds to one layer's cache: 2·G·Dh for MHA/GQA/MQA, Dc + Dr for MLA (the
    course's one cache formula, ``kv_cache.config_cache_bytes_per_token``, at one byte per number)."""
    return config_cache_bytes_per_token(cfg, bytes_per_element=1) // cfg.n_layers


def arm_color(name: str) -> str:
    """An arm's colour: its family's from the course palette; MLA arms in shades, darker as Dc grows."""
    family = "GQA" if name.startswith("GQA") else name.split()[0]
    if family == "MLA":
        widths = [c.kv_lora_rank for c in attention_arms().values() if c.attn_type == "mla"]
        return latent_colors(widths)[int(name.split("=")[1])]
    return PALETTE[family]


def train_arm(cfg: ModelConfig, seed: int, corpus: Corpus, *, callback=None,
              recipe: dict | None = None, perturb=None) -> tuple[Transformer, History]:
    """One run of the recipe: seed ``seed`` sets the initial weights and the batch order, on ``THREADS``
    threads, on the CPU (the committed numbers are CPU numbers). The initial weights are
    ``paired_init(model, seed)``: every parameter two arms share (embedding, MLP, queries, norms, head)
    starts identical in both, so a paired difference between arms cancels the seed's luck.

    ``perturb(model)``, if given, changes the initial weights before training: the controls of
    ``scripts/attention_chaos.py`` (``nudge_one_weight``, ``redraw_kv``) that ask where a seed's luck lives.
    """
    seed = check_int("seed", seed, min_value=0)
    with torch_threads(THREADS):
        torch.manual_seed(seed)
        model = paired_init(Transformer(cfg), seed)
        if perturb is not None:
            with torch.no_grad():
                perturb(model)
        if cfg.attn_type == "mla":
            set_mla_mode(model, MLA_TRAIN_MODE)
        hist = train(model, corpus, progress=False, callback=callback, device="cpu",
                     **{**scaled_recipe(recipe or RECIPE), "seed": seed})
    return model.eval(), hist


@torch.no_grad()
def copy_probe(model: Transformer, *, n: int = COPY_PROBE["n"], length: int = COPY_PROBE["length"],
               seed: int = COPY_PROBE["seed"]) -> tuple[float, float]:
    """Mean loss on a random lowercase string of ``length`` letters and on its exact repeat after a
    space (``n`` strings; the first two letters of each copy are left out). Nothing but the first copy
    predicts the repeat, so the gap between the two numbers measures copying through the cache."""
    g = torch.Generator().manual_seed(seed)
    letters = torch.randint(ord("a"), ord("z") + 1, (n, length), generator=g)  # (n, L)
    x = torch.cat([letters, torch.full((n, 1), ord(" ")), letters], dim=1)  # (n, 2L+1)
    with torch_threads(THREADS):
        logits = model(x[:, :-1].to(model.device)).float()  # (n, 2L, V)
    loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten().to(model.device),
                           reduction="none").view(n, -1)  # (n, 2L): position t predicts x[t+1]
    first, repeat = loss[:, 1:length - 1], loss[:, length + 2:]  # skip each copy's first two letters
    return first.mean().item(), repeat.mean().item()


def measure(model: Transformer, corpus: Corpus) -> dict[str, float]:
    """The numbers recorded for every run: validation loss on ``EVAL``'s batches, and copy_gain."""
    with torch_threads(THREADS):
        val = evaluate(model, corpus, **EVAL)
    first, repeat = copy_probe(model)
    return {"val_loss": val, "copy_gain": first - repeat}


def uptrain(mha: Transformer, seed: int, corpus: Corpus) -> dict[str, dict]:
    """Ainslie et al.'s recipe on one seed's trained MHA: convert to G = ``UPTRAIN['n_kv_heads']`` by mean
    pooling and by first-head selection, fine-tune each for ``fraction`` of the pre-training steps, and
    fine-tune an unconverted copy of MHA the same way (the control). Per arm: the validation loss right
    after conversion (``at_0``), the fine-tune's validation curve and its final value."""
    steps = scaled(max(1, round(RECIPE["steps"] * UPTRAIN["fraction"])))
    tune = {**scaled_recipe(RECIPE), "steps": steps, "lr": RECIPE["lr"] * UPTRAIN["lr_factor"],
            "warmup": UPTRAIN["warmup"], "eval_every": scaled(UPTRAIN["eval_every"], minimum=1),
            "seed": seed + UPTRAIN["seed_offset"]}
    out = {}
    for arm, make in (("MHA + same steps", lambda: to_gqa(mha, mha.config.kv_heads)),
                      ("mean-pool", lambda: to_gqa(mha, UPTRAIN["n_kv_heads"], method="mean")),
                      ("first-head", lambda: to_gqa(mha, UPTRAIN["n_kv_heads"], method="first"))):
        with torch_threads(THREADS):
            model = make()
            at_0 = evaluate(model, corpus, **EVAL)
            hist = train(model, corpus, progress=False, device="cpu", **tune)
            final = evaluate(model, corpus, **EVAL)
        out[arm] = {"at_0": at_0, "final": final, "curve_step": [0] + [s + 1 for s in hist.val_step],
                    "curve": [at_0] + hist.val_loss}
    return out


def run_attention_seed(seed: int, corpus: Corpus, arms: list[str] | None = None, log=None) -> dict:
    """Every arm of the attention sweep on one seed (and the uptraining from its MHA): the records
    ``scripts/sweep.py`` writes."""
    configs = attention_arms()
    names = list(configs) if arms is None else [check_choice("arm", a, list(configs)) for a in arms]
    runs, curves, up = [], {}, None
    for name in names:
        model, hist = train_arm(configs[name], seed, corpus)
        m = measure(model, corpus)
        runs += [{"arm": name, "seed": seed, "metric": k, "value": v} for k, v in m.items()]
        curves[name] = {"step": [s + 1 for s in hist.val_step], "val_loss": hist.val_loss}
        if log:
            log(f"seed {seed} {name:<11} val {m['val_loss']:.4f} copy_gain {m['copy_gain']:+.3f} "
                f"({hist.seconds:.0f} s)")
        if name == "MHA":
            up = uptrain(model, seed, corpus)
    return {"seed": seed, "runs": runs, "curves": curves, "uptrain": up}


def write_attention_sweep(per_seed: list[dict], path: Path | None = None) -> Path:
    """``run_attention_seed``'s results as the committed ``attention.json``, with this sweep's recipe."""
    meta = {"recipe": RECIPE, "init": INIT, "eval": EVAL, "uptrain": UPTRAIN, "copy_probe": COPY_PROBE,
            "threads": THREADS,
            "mla_train_mode": MLA_TRAIN_MODE, **build_meta(), "device": "cpu",
            "arms": {a: {"cache_numbers_per_token_per_layer": cache_numbers_per_token(c)}
                     for a, c in attention_arms().items()},
            "made_by": "python scripts/sweep.py attention"}
    return write_sweep("attention", per_seed, path, meta=meta)


CHAOS_PATH = ROOT / "results" / "pilots" / "attention_chaos.jsonl"  # scripts/attention_chaos.py appends here


def nudge_one_weight(eps: float):
    """A ``train_arm`` perturbation: add ``eps`` to ONE initial weight, ``NUDGED[0, 0]`` (the first MLP's
    first element: every arm has it and every token passes through it; an embedding row of a byte the
    corpus never holds would change nothing at all). Two runs that differ by a rounding-sized change."""
    def perturb(model):
        model.get_parameter(NUDGED)[0, 0] += float(eps)
    return perturb


def redraw_kv(seed: int):
    """A ``train_arm`` perturbation: re-draw every key and value projection (``wk``, ``wv``) from ``seed``
    (``paired_init(..., only=)``), everything else as before. Two runs of one arm that differ in exactly the
    weights that differ between MHA and GQA/MQA."""
    def perturb(model):
        paired_init(model, seed, only=lambda name: name.endswith((".wk.weight", ".wv.weight")))
    return perturb


CONTROLS = {  # name -> (what the jsonl records as "control", the perturbation for run seed s)
    "nudge": ("one weight +1e-06", lambda s: nudge_one_weight(1e-6)),
    "kv": ("K/V weights from seed s+1000", lambda s: redraw_kv(s + 1000)),
}


def chaos_runs(path: Path | None = None, control: str = "nudge", arm: str = "MHA") -> PairedRuns:
    """One control of ``scripts/attention_chaos.py`` as paired runs: ``arm``'s committed sweep value on each
    seed beside the same run with its initial weights perturbed (``CONTROLS[control]``). How far apart the
    two land is how much of the seed's luck that perturbation carries. The last line written for a seed
    wins (a re-run replaces an earlier one)."""
    path = CHAOS_PATH if path is None else Path(path)
    label = CONTROLS[check_choice("control", control, list(CONTROLS))][0]
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    last = {r["seed"]: r for r in rows if r["arm"] == arm and r["control"] == label}
    if not last:
        raise ValueError(f"{path} has no rows for arm {arm!r} and control {label!r}")
    seeds = sorted(last)
    return PairedRuns.from_values({arm: [last[s]["val_loss_sweep"] for s in seeds],
                                   f"{arm}, {label}": [last[s]["val_loss_perturbed"] for s in seeds]},
                                  seeds=seeds)
