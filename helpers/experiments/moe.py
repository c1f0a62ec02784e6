"""The committed seed sweep behind lesson 04: what balancing the experts costs, compared at matched balance.

The question (Wang et al. 2024; DeepSeek-V3 §2.1.2 and §4.5.3): at *equal balance*, does auxiliary-loss-free
balancing cost less language-model quality than an auxiliary loss, and which one leaves the experts more
specialised? One run of one setting says nothing; so every arm below trains on five seeds, and the
lesson compares arms with ``helpers.compare`` (paired by seed, 95% t intervals). The sweep is run once by
``python scripts/sweep.py moe`` (about 15 minutes on 2 idle cores, two processes) and committed in
``results/sweeps/moe.json``; lesson 04 loads it, re-trains two arms of seed 0 live and shows that its live
runs reproduce the committed numbers exactly (training on ``experiments.THREADS`` thread is
bit-deterministic).

Every arm is lesson 04's small MoE language model (``BASE``: 2 layers, D = 64, E = 8 routed experts of
width 64, K = 2, renormalised gates) trained with ``RECIPE``, under one of two routers:

- ``softmax``: DeepSeek-V2's and the Switch Transformer's scores, the router the lesson's live runs use
  (the Switch loss is defined on softmax probabilities);
- ``sigmoid``: DeepSeek-V3's affinities (the balance losses then use scores normalised to sum 1).

and one balancing method: ``none``; ``aux α=…`` (the Switch loss, batch-wise: f and P over the whole
batch); ``seq-aux α=…`` (DeepSeek-V3's sequence-wise loss: f and P per sequence); ``loss-free γ=…`` (the
selection bias). α runs from Wang et al.'s 0.001 to 1, far enough to hurt. Two more arms test the shared
expert at equal active parameters: ``sigmoid K=3`` (three routed experts) against ``sigmoid K=2+shared``
(two routed plus one always-on expert of the same width), both with loss-free balancing. Two arms added
later (``python scripts/sweep.py moe --arms … --part c`` then ``--extend``; their build is recorded in the
sweep's ``meta["extensions"]``) drop tokens instead of balancing: ``softmax capacity c=1`` and ``c=1.25``,
no balancing, each expert taking at most ``ceil(c · N·K / E)`` assignments of a batch (GShard, Switch;
``helpers.moe.capacity_mask``). DeepSeek-V3 drops none.

Per run (``measure_moe``), on fixed validation batches:

- ``val_loss``: next-token loss (nats/byte) on ``EVAL``'s batches;
- ``max_vio_global``: MaxVio of the expert loads summed over all validation batches (Wang et al.'s
  MaxVio_global), averaged over layers; ``max_vio_batch``: MaxVio of each batch of B·T = 1,024 tokens,
  averaged (what an expert-parallel step waits for); ``entropy``: load entropy in bits (3 is balanced);
- ``starved``: the share of (layer, expert) pairs that receive under a quarter of their fair share;
- ``domain_tv``: total-variation distance between the expert loads of the two domains (prose vs code),
  averaged over layers (0 = the domains use the experts identically, 1 = disjoint experts);
- ``class_mi``: mutual information between a token's byte class (``BYTE_CLASSES``) and the experts it is
  sent to, in bits, averaged over layers: how much knowing the expert tells about the token;
- ``dropped`` (capacity arms only): the share of the N·K assignments of a validation batch dropped;
- ``train_seconds``: training wall time on one thread (a cost, not a quality measure).
"""

from __future__ import annotations

import math

import torch

from ..config import ModelConfig
from ..data import Corpus
from ..model import Transformer
from ..moe import max_vio, moe_layers
from ..plan import scaled_recipe
from ..reproduce import build_meta
from ..timing import torch_threads
from ..training import evaluate, train
from ..validate import check_choice, check_int
from .sweep import SEEDS, THREADS, write_sweep  # noqa: F401  (SEEDS: this sweep's seeds)

BASE = ModelConfig(dim=64, n_layers=2, n_heads=4, inter_dim=128, max_seq_len=64, n_routed_experts=8,
                   n_activated_experts=2, moe_inter_dim=64)
RECIPE = dict(steps=300, batch_size=16, seq_len=64, lr=3e-3, eval_every=300, eval_iters=8)
EVAL = dict(batch_size=16, seq_len=64, iters=16, seed=1234)  # the same fixed batches for every run
ALPHAS = (0.001, 0.01, 0.1, 1.0)
SEQ_ALPHAS = (0.01, 0.1)
GAMMAS = (0.0001, 0.001, 0.01)
CAPACITY_FACTORS = (1.0, 1.25)  # token dropping instead of balancing (softmax router, added later)
ROUTERS = ("softmax", "sigmoid")
# Byte classes for the specialisation measure; every byte of the corpus falls in exactly one.
BYTE_CLASSES = {"space / newline": b" \n\t", "lowercase": bytes(range(97, 123)),
                "uppercase": bytes(range(65, 91)), "digit": b"0123456789",
                "punctuation": bytes(b for b in range(33, 127) if not chr(b).isalnum()),
                "other": bytes(b for b in range(256) if b > 126 or (b < 32 and b not in b"\n\t"))}
STARVED = 0.25  # an expert with under a quarter of its fair share of the load counts as starved


def arm_name(router: str, method: str, value: float | None = None) -> str:
    """``"softmax aux α=0.01"`` and the like: router, method, and its one knob."""
    knob = {"aux": "α", "seq-aux": "α", "loss-free": "γ", "capacity": "c"}.get(method)
    return f"{router} {method}" + (f" {knob}={value:g}" if knob else "")


def moe_arms(base: ModelConfig | None = None) -> dict[str, ModelConfig]:
    """The sweep's configurations by name (see the module docstring)."""
    base = BASE if base is None else base
    arms = {}
    for router in ROUTERS:
        cfg = base.replace(score_func=router)
        arms[arm_name(router, "none")] = cfg
        for a in ALPHAS:
            arms[arm_name(router, "aux", a)] = cfg.replace(balance="aux", aux_loss_alpha=a)
        for a in SEQ_ALPHAS:
            arms[arm_name(router, "seq-aux", a)] = cfg.replace(balance="seq_aux", aux_loss_alpha=a)
        for g in GAMMAS:
            arms[arm_name(router, "loss-free", g)] = cfg.replace(balance="loss_free", bias_update_speed=g)
    for c in CAPACITY_FACTORS:  # no balancing; the over-full experts drop tokens instead
        arms[arm_name("softmax", "capacity", c)] = base.replace(score_func="softmax", capacity_factor=c)
    shared = base.replace(score_func="sigmoid", balance="loss_free", bias_update_speed=0.001)
    arms["sigmoid K=3"] = shared.replace(n_activated_experts=3)
    arms["sigmoid K=2+shared"] = shared.replace(n_activated_experts=2, n_shared_experts=1)
    return arms


def method_of(arm: str) -> str:
    """The balancing method of an arm name: 'none', 'aux', 'seq-aux', 'loss-free', 'capacity' or 'shared'."""
    parts = arm.split()
    return "shared" if parts[1].startswith("K=") else parts[1]


def knob_of(arm: str) -> float | None:
    """α, γ or the capacity factor c of an arm name (None for 'none' and the shared-expert arms)."""
    parts = arm.split()
    return float(parts[2].split("=")[1]) if len(parts) > 2 and "=" in parts[2] else None


def new_moe_model(cfg: ModelConfig, seed: int) -> Transformer:
    """The untrained model of seed ``seed`` (its initial weights depend on the seed alone)."""
    with torch_threads(THREADS):  # as the sweep built it
        torch.manual_seed(check_int("seed", seed, min_value=0))
        return Transformer(cfg)


def train_moe_arm(cfg: ModelConfig, seed: int, corpus: Corpus, *, callback=None,
                  model: Transformer | None = None) -> tuple[Transformer, float]:
    """One run of ``RECIPE`` on ``THREADS`` thread(s) on the CPU: the model and its training seconds.
    ``model`` is ``new_moe_model(cfg, seed)`` made beforehand (to attach a live monitor to it first)."""
    seed = check_int("seed", seed, min_value=0)
    model = new_moe_model(cfg, seed) if model is None else model
    with torch_threads(THREADS):
        hist = train(model, corpus, progress=False, callback=callback, device="cpu",
                     **{**scaled_recipe(RECIPE), "seed": seed})
    return model.eval(), hist.seconds


def class_of_byte() -> torch.Tensor:
    """(256,) the index in ``BYTE_CLASSES`` of every byte value."""
    table = torch.full((256,), -1, dtype=torch.long)
    for c, members in enumerate(BYTE_CLASSES.values()):
        table[list(members)] = c
    assert (table >= 0).all(), "BYTE_CLASSES must cover every byte"
    return table


def mutual_information(joint: torch.Tensor) -> float:
    """I(row; column) in bits of a table of counts (…, R, C), averaged over leading dims."""
    p = joint.double() / joint.double().sum((-2, -1), keepdim=True).clamp_min(1e-30)
    pr, pc = p.sum(-1, keepdim=True), p.sum(-2, keepdim=True)
    terms = p * torch.log2(p.clamp_min(1e-30) / (pr * pc).clamp_min(1e-30))
    return terms.sum((-2, -1)).mean().item()


def total_variation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Total-variation distance between two load tables (…, E), each normalised per row; mean over rows."""
    pa = a.double() / a.double().sum(-1, keepdim=True)
    pb = b.double() / b.double().sum(-1, keepdim=True)
    return (0.5 * (pa - pb).abs().sum(-1)).mean().item()


@torch.no_grad()
def routing_tables(model: Transformer, corpus: Corpus, *,
                   domain: str | None = None) -> dict[str, torch.Tensor]:
    """Expert loads on ``EVAL``'s validation batches: ``total`` (L, E) summed, ``per_batch`` (iters, L, E),
    ``by_class`` (L, classes, E): the assignments of each byte class (the router's choices, before any
    dropping), and ``dropped`` (iters, L): the share of assignments a capacity factor dropped."""
    layers = len(moe_layers(model.layers))
    E, n_cls = model.config.n_routed_experts, len(BYTE_CLASSES)
    cls_of = class_of_byte().to(model.device)
    gen = torch.Generator().manual_seed(EVAL["seed"])
    per_batch, dropped, by_class = [], [], torch.zeros(layers, n_cls, E, dtype=torch.long)
    with torch_threads(THREADS):
        for _ in range(EVAL["iters"]):
            b = corpus.get_batch("val", EVAL["batch_size"], EVAL["seq_len"], generator=gen,
                                 device=model.device, domain=domain)
            moe = model.run(b.x).moe[:layers]  # the main model's MoE layers
            per_batch.append(torch.stack([m.counts for m in moe]).cpu())  # (L, E)
            dropped.append([m.dropped for m in moe])
            K = moe[0].indices.shape[-1]
            cls = cls_of[b.x].unsqueeze(-1).expand(-1, -1, K).flatten()  # (B·T·K,)
            for layer, m in enumerate(moe):
                by_class[layer].view(-1).index_add_(0, (cls * E + m.indices.flatten()).cpu(),
                                                    torch.ones(cls.numel(), dtype=torch.long))
    per_batch = torch.stack(per_batch)  # (iters, L, E)
    return {"total": per_batch.sum(0), "per_batch": per_batch, "by_class": by_class,
            "dropped": torch.tensor(dropped, dtype=torch.float64)}  # (iters, L) share of assignments dropped


def measure_moe(model: Transformer, corpus: Corpus) -> dict[str, float]:
    """The numbers recorded for every run (the module docstring defines each)."""
    with torch_threads(THREADS):
        val = evaluate(model, corpus, **EVAL)
    tables = routing_tables(model, corpus)
    total = tables["total"]
    E = total.shape[-1]
    share = total.double() / total.double().sum(-1, keepdim=True)
    docs, code = (routing_tables(model, corpus, domain=d)["total"] for d in ("docs", "code"))
    dropping = {"dropped": tables["dropped"].mean().item()} if model.config.capacity_factor > 0 else {}
    return {"val_loss": val,
            "max_vio_global": max_vio(total).mean().item(),
            "max_vio_batch": max_vio(tables["per_batch"]).mean().item(),
            "entropy": _entropy_bits(share).mean().item(),
            "starved": (share < STARVED / E).double().mean().item(),
            "domain_tv": total_variation(docs, code),
            "class_mi": mutual_information(tables["by_class"]), **dropping}


def _entropy_bits(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log2(p.clamp_min(1e-30))).sum(-1)


def step_cost(max_vio_batch: float) -> float:
    """An expert-parallel MoE step waits for its busiest expert: about (1 + MaxVio_batch) times the time
    of a perfectly balanced step (each expert on its own device, compute proportional to its tokens)."""
    if not math.isfinite(max_vio_batch) or max_vio_batch < 0:
        raise ValueError(f"step_cost: MaxVio must be a finite number >= 0, got {max_vio_batch}")
    return 1.0 + max_vio_batch


def run_moe_seed(seed: int, corpus: Corpus, arms: list[str] | None = None, log=None) -> dict:
    """Every arm of the MoE sweep on one seed: the records ``scripts/sweep.py moe`` writes."""
    configs = moe_arms()
    names = list(configs) if arms is None else [check_choice("arm", a, list(configs)) for a in arms]
    runs = []
    for name in names:
        model, seconds = train_moe_arm(configs[name], seed, corpus)
        m = {**measure_moe(model, corpus), "train_seconds": seconds}
        runs += [{"arm": name, "seed": seed, "metric": k, "value": v} for k, v in m.items()]
        if log:
            log(f"seed {seed} {name:<26} val {m['val_loss']:.4f} MaxVio {m['max_vio_global']:.2f}/"
                f"{m['max_vio_batch']:.2f} MI {m['class_mi']:.3f} ({seconds:.0f} s)")
    return {"seed": seed, "runs": runs, "curves": {}, "uptrain": None}


def write_moe_sweep(per_seed: list[dict], path=None):
    """Merge per-seed results into ``results/sweeps/moe.json`` with the recipe that made them."""
    meta = {"recipe": RECIPE, "eval": EVAL, "base": {k: getattr(BASE, k) for k in (
                "dim", "n_layers", "n_heads", "inter_dim", "n_routed_experts", "n_activated_experts",
                "moe_inter_dim")},
            "byte_classes": list(BYTE_CLASSES), "starved_below": STARVED, "threads": THREADS,
            **build_meta(), "device": "cpu", "made_by": "python scripts/sweep.py moe"}
    return write_sweep("moe", per_seed, path, meta=meta)


# --- reading the sweep: frontiers and matched pairs ----------------------------------------------------
METHOD_COLORS = {"none": "none", "aux": "aux", "seq-aux": "seq_aux", "loss-free": "loss_free",
                 "shared": "shared"}


def arm_points(sweep, router: str, x_metric: str = "max_vio_global", y_metric: str = "val_loss") -> dict:
    """Per arm of one router: (x mean, x half-width, y mean, y half-width) over its seeds (t intervals)."""
    from ..compare import mean_interval

    out = {}
    for arm in sweep.arms:
        if arm.split()[0] != router or method_of(arm) == "shared":
            continue
        xs = [sweep.value(arm, s, x_metric) for s in sweep.seeds_of(arm)]
        ys = [sweep.value(arm, s, y_metric) for s in sweep.seeds_of(arm)]
        out[arm] = (*mean_interval(xs), *mean_interval(ys))
    return out


def matched_aux_arm(sweep, loss_free_arm: str, metric: str = "max_vio_global",
                    methods: tuple[str, ...] = ("aux",)) -> str:
    """The auxiliary-loss arm of the same router whose mean ``metric`` is closest to ``loss_free_arm``'s:
    the rival at (nearly) matched balance. Whether the match holds is for a paired interval to say."""
    router = loss_free_arm.split()[0]
    target = sweep.runs(metric, [loss_free_arm]).values[loss_free_arm]
    mean = sum(target.values()) / len(target)
    rivals = [a for a in sweep.arms if a.split()[0] == router and method_of(a) in methods]
    if not rivals:
        raise ValueError(f"no {methods} arms for router {router!r} in the sweep")

    def gap(arm):
        v = sweep.runs(metric, [arm]).values[arm]
        return abs(sum(v.values()) / len(v) - mean)
    return min(rivals, key=gap)


def plot_frontier(sweep, router: str, ax=None, *, x_metric: str = "max_vio_global",
                  y_metric: str = "val_loss", xlabel: str | None = None, legend: bool = True):
    """Validation loss against MaxVio for every arm of one router, each point its mean over seeds with
    95% intervals on both axes; the arms of one method are joined in the order of their knob (α or γ),
    which is labelled beside each point. Lower left is better on both counts."""
    import matplotlib.pyplot as plt

    from ..viz.style import PALETTE

    pts = arm_points(sweep, router, x_metric, y_metric)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    markers = {"none": "*", "aux": "o", "seq-aux": "D", "loss-free": "s"}
    labels = {"none": "no balancing", "aux": "aux loss (batch-wise), α", "seq-aux": "sequence-wise aux, α",
              "loss-free": "loss-free bias, γ"}
    for method in ("none", "aux", "seq-aux", "loss-free"):
        arms = sorted((a for a in pts if method_of(a) == method), key=lambda a: knob_of(a) or 0.0)
        if not arms:
            continue
        c = PALETTE.get(METHOD_COLORS[method], "#555555")
        xs, ys = [pts[a][0] for a in arms], [pts[a][2] for a in arms]
        ax.plot(xs, ys, "-", color=c, lw=1, alpha=0.6)
        ax.errorbar(xs, ys, xerr=[pts[a][1] for a in arms], yerr=[pts[a][3] for a in arms],
                    fmt=markers[method], color=c, ms=9 if method == "none" else 6, capsize=2, lw=1,
                    label=labels[method])
        for a, x, y in zip(arms, xs, ys):
            if knob_of(a) is not None:
                ax.annotate(f"{knob_of(a):g}", (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8,
                            color=c)
    ax.set(xlabel=xlabel or x_metric, ylabel=f"{y_metric.replace('_', ' ')} (nats/byte)",
           title=f"{router} router: quality against balance")
    if legend:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax.figure


def paired_against_none(sweep, router: str, metric: str = "val_loss") -> dict:
    """Every balancing arm of one router against no balancing on the same seeds: ``{arm: Difference}``
    of ``metric`` (arm − none), the comparison the balancing methods' price is read from."""
    none = arm_name(router, "none")
    return {arm: sweep.runs(metric, [none, arm]).difference(none, arm) for arm in sweep.arms
            if arm.split()[0] == router and arm != none and method_of(arm) not in ("shared", "capacity")}


def plot_paired_frontier(sweep, router: str, ax=None, *, x_metric: str = "max_vio_global",
                         xlabel: str | None = None, legend: bool = True):
    """The price of balance, paired: each balancing arm's validation loss minus no balancing's on the
    same seeds (mean and 95% interval, filled when it excludes zero) against the arm's mean ``x_metric``;
    no balancing itself sits on the zero line at its own MaxVio. Arms of one method are joined in the
    order of their knob, which is labelled beside each point."""
    import matplotlib.pyplot as plt

    from ..viz.style import PALETTE

    diffs = paired_against_none(sweep, router)
    xs = {a: arm_points(sweep, router, x_metric)[a][0] for a in [*diffs, arm_name(router, "none")]}
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.axhline(0.0, color=PALETTE.get("reference", "#888888"), lw=1, zorder=1)
    none = arm_name(router, "none")
    ax.plot([xs[none]], [0.0], "*", ms=12, color=PALETTE[METHOD_COLORS["none"]], label="no balancing",
            zorder=3)
    markers = {"aux": "o", "seq-aux": "D", "loss-free": "s"}
    labels = {"aux": "aux loss (batch-wise), α", "seq-aux": "sequence-wise aux, α",
              "loss-free": "loss-free bias, γ"}
    for method in markers:
        arms = sorted((a for a in diffs if method_of(a) == method), key=lambda a: knob_of(a) or 0.0)
        c = PALETTE.get(METHOD_COLORS[method], "#555555")
        ax.plot([xs[a] for a in arms], [diffs[a].mean for a in arms], "-", color=c, lw=1, alpha=0.6)
        for i, a in enumerate(arms):
            d = diffs[a]
            ax.plot([xs[a]] * 2, [d.low, d.high], color=c, lw=2.2, solid_capstyle="butt", gid="interval")
            ax.plot([xs[a]], [d.mean], markers[method], ms=7, color=c, zorder=3, gid="mean",
                    markerfacecolor=c if d.excludes_zero else "white",
                    label=labels[method] if i == 0 else None)
            ax.annotate(f"{knob_of(a):g}", (xs[a], d.mean), textcoords="offset points", xytext=(5, 4),
                        fontsize=8, color=c)
    ax.set_xscale("log")  # MaxVio spans 0.2 … 2.5: the well-balanced arms would crowd together
    ax.set_xticks([0.25, 0.5, 1, 2], ["0.25", "0.5", "1", "2"])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set(xlabel=xlabel or x_metric,
           ylabel="val loss − no balancing (nats/byte)\npaired over seeds, 95% interval",
           title=f"{router} router: the price of balance, paired")
    if legend:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax.figure


def matched_aux_arms(sweep, loss_free_arm: str, n: int = 2, metric: str = "max_vio_global") -> list[str]:
    """The ``n`` auxiliary-loss arms of the same router nearest to ``loss_free_arm`` in mean ``metric``,
    nearest first: a verdict that holds against one match and not the next depends on the matching rule."""
    check_int("n", n, min_value=1)
    router = loss_free_arm.split()[0]

    def mean(arm):
        v = sweep.runs(metric, [arm]).values[arm]
        return sum(v.values()) / len(v)
    target = mean(loss_free_arm)
    rivals = [a for a in sweep.arms if a.split()[0] == router and method_of(a) == "aux"]
    if not rivals:
        raise ValueError(f"no aux arms for router {router!r} in the sweep")
    return sorted(rivals, key=lambda a: abs(mean(a) - target))[:n]
