"""The committed recall sweep behind lessons 02 and 03: answer accuracy on multi-query associative recall
(``helpers.tasks.recall``) against the number of pairs N, for five attention arms of one narrow-headed model.

The arms share everything but the attention (D = 64, H = 16 query heads of Dh = 4, the depth in
``BASE``); per token and layer they cache

- ``MHA``: 2·16·4 = 128 numbers; ``GQA-2``: 2·2·4 = 16; ``MQA``: 2·1·4 = 8;
- ``MLA Dc=6``: Dc + Dr = 6 + 2 = 8, exactly MQA's; ``MLA Dc=14``: 14 + 2 = 16, exactly GQA-2's
  (Dn = Dv = 4, Dr = 2, no query compression; trained through the latent path, as in the attention sweep).

Narrow heads are the point: with Dh = 4, RoPE leaves a shared K/V head two slowly rotating dimensions
in which to tell the keys of a sequence apart, and MHA sixteen heads of them.

Every run of seed s starts from ``paired_init(model, s)`` (each parameter seeded by the run seed and its
name, so every weight two arms have in common starts identical) and trains on the same batches (the
generator is seeded by s alone). One model is trained per (arm, seed) on a mix of N (``RECIPE['pairs']``,
step i uses the i-th in turn) and then scored on held-out sequences at each N of ``PAIRS``: the records
are ``accuracy@N=<pairs>``. Runs train on ``experiments.THREADS`` thread on the CPU, bit-reproducibly.
``python scripts/sweep.py recall`` writes ``results/sweeps/recall.json``.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..mla import set_mla_mode
from ..model import Transformer
from ..plan import scaled_recipe
from ..reproduce import build_meta
from ..tasks.recall import RecallTask, evaluate_recall, train_recall
from ..timing import stopwatch, torch_threads
from ..validate import check_choice, check_int
from .attention import cache_numbers_per_token
from .paired_init import INIT, paired_init
from .sweep import THREADS, write_sweep

# One token per pair (``RecallTask.pair_base``): the lookup is one attention step, so what binds is what
# the cache keeps per token (the pilot, results/pilots/recall.jsonl, chose this; two-token pairs were not
# learned within the budget). 32 keys, 4 values: chance 1/4.
# One token per pair (``RecallTask.pair_base``): the lookup is one attention step, so what binds is what
# the cache keeps per token (the pilot, results/pilots/recall.jsonl, chose this; two-token pairs were not
# learned within the budget). 32 keys, 4 values: chance 1/4.
TASK = RecallTask(n_keys=32, n_values=4, key_base=64, value_base=32, pair_base=128)
PAIRS = (4, 8, 12, 16)  # N at which every run is scored (N ≤ n_keys / 2)
BASE = ModelConfig(dim=64, n_layers=2, n_heads=16, head_dim=4, inter_dim=128,
                   max_seq_len=TASK.seq_len(max(PAIRS)))
RECIPE = dict(pairs=PAIRS, steps=300, batch_size=32, lr=3e-3, warmup=50)
EVAL = dict(n_seqs=256, batch_size=128, seed=1234)  # the same held-out sequences for every run
SEEDS = tuple(range(10))
MLA_TRAIN_MODE = "latent"
CURVE_EVERY = 50  # the training curve is stored as means over blocks of this many steps


def recall_arms(base: ModelConfig | None = None) -> dict[str, ModelConfig]:
    """The sweep's configurations by name: MHA, GQA-2, MQA, and MLA at MQA's and GQA-2's cache size."""
    base = BASE if base is None else base
    Dh = base.hd
    mla = dict(attn_type="mla", qk_nope_head_dim=Dh, v_head_dim=Dh, qk_rope_head_dim=Dh // 2, q_lora_rank=0)
    arms = {"MHA": base, "GQA-2": base.replace(n_kv_heads=2), "MQA": base.replace(n_kv_heads=1)}
    for rival in ("MQA", "GQA-2"):
        dc = cache_numbers_per_token(arms[rival]) - Dh // 2  # Dc + Dr = the rival's numbers per token
        arms[f"MLA Dc={dc}"] = base.replace(kv_lora_rank=dc, **mla)
    return arms


ARMS = tuple(recall_arms())


def metric(n_pairs: int) -> str:
    return f"accuracy@N={n_pairs}"


def build(arm: str, seed: int) -> Transformer:
    """Seed ``seed``'s model for ``arm``, with paired initial weights."""
    arms = recall_arms()
    cfg = arms[check_choice("arm", arm, list(arms))]
    model = paired_init(Transformer(cfg), check_int("seed", seed, min_value=0))
    if cfg.attn_type == "mla":
        set_mla_mode(model, MLA_TRAIN_MODE)
    return model


def train_arm(arm: str, seed: int, *, recipe: dict | None = None, pairs=PAIRS, callback=None):
    """One run on ``THREADS`` thread(s) on the CPU: ({metric: accuracy} at each N of ``pairs``, history,
    seconds of training)."""
    recipe = scaled_recipe(recipe or RECIPE)
    with torch_threads(THREADS):
        torch.manual_seed(seed)
        model = build(arm, seed)
        with stopwatch() as clock:  # helpers.timing: the course's one clock
            hist = train_recall(model, TASK, seed=seed, callback=callback, **recipe)
        seconds = clock.seconds
        acc = {metric(n): evaluate_recall(model, TASK, n, **EVAL) for n in pairs}
    return acc, hist, seconds


def _blocks(values: list[float], every: int = CURVE_EVERY) -> list[float]:
    return [sum(values[i:i + every]) / len(values[i:i + every]) for i in range(0, len(values), every)]


def run_recall_seed(seed: int, corpus=None, arms=None, log=None) -> dict:
    """Every arm on one seed: the records ``scripts/sweep.py`` writes (``corpus`` is not used)."""
    names = list(ARMS) if arms is None else [check_choice("arm", a, list(ARMS)) for a in arms]
    runs, curves = [], {}
    for name in names:
        acc, hist, seconds = train_arm(name, seed)
        runs += [{"arm": name, "seed": seed, "metric": k, "value": v} for k, v in acc.items()]
        runs.append({"arm": name, "seed": seed, "metric": "train_seconds", "value": seconds})
        curves[name] = {"step": list(range(CURVE_EVERY, len(hist.loss) + CURVE_EVERY, CURVE_EVERY)),
                        "train_loss": _blocks(hist.loss), "train_accuracy": _blocks(hist.accuracy)}
        if log:
            log(f"recall seed {seed} {name:<10} " + " ".join(f"{k[9:]} {v:.3f}" for k, v in acc.items())
                + f" ({seconds:.0f} s)")
    return {"seed": seed, "runs": runs, "curves": curves, "uptrain": None}


def write_recall_sweep(per_seed: list[dict], path=None):
    meta = {"base": dict(vars(BASE)), "task": dict(vars(TASK)), "pairs": list(PAIRS),
            "recipe": {**RECIPE, "pairs": list(RECIPE["pairs"])}, "eval": EVAL, "threads": THREADS,
            "init": INIT,
            "mla_train_mode": MLA_TRAIN_MODE,
            **build_meta(), "device": "cpu",
            "arms": {a: {"cache_numbers_per_token_per_layer": cache_numbers_per_token(c)}
                     for a, c in recall_arms().items()},
            "made_by": "python scripts/sweep.py recall"}
    return write_sweep("recall", per_seed, path, meta=meta)


# ---- reading the committed sweep (lessons 02 and 03) ----

def pairs_of(sweep) -> list[int]:
    """The N values a loaded sweep scored, in order."""
    return sorted({int(r["metric"].split("=")[1]) for r in sweep.records
                   if r["metric"].startswith("accuracy@")})


def accuracy_table(sweep, arms) -> str:
    """Mean accuracy over seeds (± the half-width of one arm's 95% t interval) per arm and N: a picture of
    each arm, not a comparison (comparisons are the paired ``differences``)."""
    from ..compare import mean_interval

    ns = pairs_of(sweep)
    lines = [f"{'arm':<10} {'cache':>5} " + " ".join(f"{'N=' + str(n):>14}" for n in ns)]
    for arm in arms:
        cache = sweep.meta["arms"][arm]["cache_numbers_per_token_per_layer"]
        cells = []
        for n in ns:
            m, h = mean_interval(list(sweep.runs(metric(n), [arm]).values[arm].values()))
            cells.append(f"{m:6.3f} ± {h:5.3f}")
        lines.append(f"{arm:<10} {cache:>5} " + " ".join(f"{c:>14}" for c in cells))
    return "\n".join(lines)


def differences(sweep, a: str, b: str) -> dict:
    """{N: paired Difference b − a of accuracy} on the seeds both arms have."""
    return {n: sweep.runs(metric(n), [a, b]).difference(a, b) for n in pairs_of(sweep)}


def pairings(sweep, a: str, b: str) -> dict:
    """{N: Pairing of a and b}: the per-seed correlation and paired against unpaired SD."""
    return {n: sweep.runs(metric(n), [a, b]).pairing(a, b) for n in pairs_of(sweep)}


KNEE = 0.97  # an arm's knee: where its accuracy first falls more than 3% below its own at the smallest N


def knee(sweep, arm: str, fraction: float = KNEE) -> int | None:
    """The smallest N at which ``arm``'s mean accuracy falls below ``fraction`` of its own accuracy at the
    smallest N (None: it never does within the sweep)."""
    ns = pairs_of(sweep)
    means = {n: sum(v := list(sweep.runs(metric(n), [arm]).values[arm].values())) / len(v) for n in ns}
    return next((n for n in ns if means[n] < fraction * means[ns[0]]), None)


def plot_accuracy(sweep, arms, ax, *, colors=None, chance: float | None = None):
    """Accuracy against N per arm: mean over seeds and its 95% t interval (unpaired error bars: a
    picture, the verdicts come from ``differences``). Points of one N are spread a little so none hides."""
    from ..compare import mean_interval

    ns = pairs_of(sweep)
    for i, arm in enumerate(arms):
        shift = 1 + 0.03 * (i - (len(arms) - 1) / 2)
        stats = [mean_interval(list(sweep.runs(metric(n), [arm]).values[arm].values())) for n in ns]
        cache = sweep.meta["arms"][arm]["cache_numbers_per_token_per_layer"]
        ax.errorbar([n * shift for n in ns], [m for m, _ in stats], yerr=[h for _, h in stats], marker="o",
                    ms=4, capsize=2, lw=1.5, color=(colors or {}).get(arm), label=f"{arm} ({cache} numbers)")
    if chance is not None:
        ax.axhline(chance, color="0.6", lw=1, ls=":", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set(xlabel="key-value pairs N", ylabel="answer accuracy (held-out)", ylim=(0, None))
    ax.legend(fontsize=8)
    return ax


def plot_paired_against_n(sweep, comparisons, ax, *, colors=None):
    """Each comparison (a, b) as its paired difference b − a in accuracy at every N: mean and 95%
    interval, filled where the interval excludes zero, hollow where not."""
    ns = pairs_of(sweep)
    ax.axhline(0, color="0.5", lw=1)
    for i, (a, b) in enumerate(comparisons):
        shift = 1 + 0.04 * (i - (len(comparisons) - 1) / 2)
        c = (colors or {}).get(b)
        diffs = differences(sweep, a, b)
        xs = [n * shift for n in ns]
        ax.plot(xs, [diffs[n].mean for n in ns], color=c, lw=1, alpha=0.6)
        for x, n in zip(xs, ns):
            d = diffs[n]
            ax.plot([x, x], [d.low, d.high], color=c, lw=2.5, solid_capstyle="butt")
            ax.plot([x], [d.mean], "o", ms=7, color=c, markerfacecolor=c if d.excludes_zero else "white",
                    label=f"{b} − {a}" if n == ns[0] else None, zorder=3)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set(xlabel="key-value pairs N", ylabel="paired accuracy difference\nmean and 95% interval")
    ax.legend(fontsize=8)
    return ax


def summary(sweep, a: str, b: str) -> str:
    """One sentence generated from the paired intervals of ``b − a`` at every N: where b's accuracy is
    detectably below or above a's, and where the seeds cannot tell."""
    diffs = differences(sweep, a, b)
    groups = {"detectably below": [n for n, d in diffs.items() if d.excludes_zero and d.mean < 0],
              "detectably above": [n for n, d in diffs.items() if d.excludes_zero and d.mean > 0],
              "not detectably different from": [n for n, d in diffs.items() if not d.excludes_zero]}
    cache = {x: sweep.meta["arms"][x]["cache_numbers_per_token_per_layer"] for x in (a, b)}
    parts = [f"{what} {a}'s at N = {', '.join(map(str, ns))}" for what, ns in groups.items() if ns]
    n = next(iter(diffs.values())).n
    return (f"{b} ({cache[b]} numbers per token and layer) against {a} ({cache[a]}): accuracy "
            + "; ".join(parts) + f" (paired 95% intervals over {n} seeds).")
