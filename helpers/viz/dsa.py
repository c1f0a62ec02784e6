"""Lesson 07's pictures of DeepSeek Sparse Attention (DeepSeek-V3.2-Exp, arXiv 2512.02556 §2): the three
training stages and the indexer's recall (``plot_dsa_stages``), what one query reads (``plot_selection``),
and decode speed against the FLOP model (``plot_decode_speed``). Each draws on the axes it is given (a new
figure if none) and returns what it drew or measured, so a test can check the picture.

Letters (``docs/GLOSSARY.md``): t query position, s key position, S cached positions, k positions read.
"""

from __future__ import annotations

import torch

from ..dsa import decode_attention_cost, selection_mask
from .style import PALETTE


def _axes(axes, n: int, figsize):
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, n, figsize=figsize)
    return axes


def plot_dsa_stages(live, sweep, recipe: dict, axes=None):
    """Left: the live run's training loss (``live``, a ``helpers.viz.live.LiveLoss``) with the indexer
    warm-up (stage 2, ``recipe["pretrain_steps"]`` to ``+ recipe["warmup_steps"]``) shaded; right: the
    warm-up's recall of dense attention mass inside the indexer's top-``recipe["recall_k"]``, every seed of
    ``sweep`` (seed 0, the live run's, drawn bold). Returns the two axes."""
    ax1, ax2 = _axes(axes, 2, (11.5, 3.5))
    start, end = recipe["pretrain_steps"], recipe["pretrain_steps"] + recipe["warmup_steps"]
    live.figure(ax=ax1, title="training loss, seed 0")
    ax1.axvspan(start, end, color=PALETTE["indexer"], alpha=0.12, lw=0)
    ax1.annotate("2 · warm-up\n(indexer only)", (start + 3, ax1.get_ylim()[1] * 0.8), fontsize=8)
    for s in sweep.seeds:
        c = sweep.curves[s]["warmup"]
        name = "seed 0 (this run)" if s == 0 else (f"seeds 1-{sweep.seeds[-1]}" if s == 1 else None)
        ax2.plot(c["step"], c["recall_mass"], color=PALETTE["indexer"], alpha=1.0 if s == 0 else 0.35,
                 lw=2 if s == 0 else 1, label=name)
    ax2.set(xlabel="warm-up step", ylim=(0, 1.02),
            ylabel=f"dense attention mass\ninside the indexer's top-{recipe['recall_k']}",
            title="the indexer learns what attention reads")
    ax2.legend(fontsize=8)
    return ax1, ax2


def plot_decode_speed(rows, cfg, k: int, flop_crossover: int, axes=None, grid=None):
    """Left: measured ms per decoded token of one layer, dense MLA against DSA reading ``k`` positions
    (``rows``: ``helpers.bench.dsa`` rows with ``context``, ``dense_ms``, ``sparse_ms``); right: the FLOP
    model (``helpers.dsa.decode_attention_cost`` for ``cfg``) over ``grid`` contexts (default 2⁸ … 2¹⁷),
    dense, DSA and the indexer's share, with the crossover context marked. Returns the two axes."""
    ax1, ax2 = _axes(axes, 2, (11.5, 3.6))
    ctx = [r.context for r in rows]
    ax1.plot(ctx, [r.dense_ms for r in rows], "o-", color=PALETTE["MLA"], label="dense MLA (V3)")
    ax1.plot(ctx, [r.sparse_ms for r in rows], "o-", color=PALETTE["DSA"], label=f"DSA, k = {k} (V3.2)")
    ax1.set(xscale="log", xlabel="cached positions S (log scale)", ylabel="ms per decoded token (best of 3)",
            title="measured: one layer's decode step")
    ax1.legend(fontsize=8)
    grid = grid or [2 ** i for i in range(8, 18)]
    read_k = decode_attention_cost(cfg, k).macs  # k positions read densely: the sparse part alone
    ax2.plot(grid, [decode_attention_cost(cfg, s).macs / 1e6 for s in grid], color=PALETTE["MLA"],
             label="dense MLA")
    ax2.plot(grid, [decode_attention_cost(cfg, s, k).macs / 1e6 for s in grid], color=PALETTE["DSA"],
             label="DSA (indexer + k latents)")
    ax2.plot(grid, [(decode_attention_cost(cfg, s, k).macs - read_k) / 1e6 for s in grid], ":",
             color=PALETTE["indexer"], label="of which the indexer")
    ax2.axvline(flop_crossover, color=PALETTE["reference"], lw=0.8, ls="--",
                label=f"FLOP crossover, S = {flop_crossover:,}")
    ax2.set(xscale="log", yscale="log", xlabel="cached positions S (log scale)",
            ylabel="attention multiply-adds (millions)", title="the FLOP model (attention only)")
    ax2.legend(fontsize=8)
    return ax1, ax2


def plot_selection(attention: torch.Tensor, scores: torch.Tensor, *, layer: int, k: int, t: int,
                   fig=None) -> float:
    """What one DSA layer reads, from a dense pass's record (``helpers.dsa.record_stats``): ``attention``
    (T, S) dense attention summed over heads, ``scores`` (T, S) the indexer's scores I. Top row: the dense
    attention, softmax(I) and the top-``k`` selection, query ``t`` marked; bottom: query ``t``'s dense
    attention, its softmax(I) and the ``k`` positions it reads. Returns the share of dense attention's
    mass at ``t`` that the selection holds."""
    import matplotlib.pyplot as plt

    keep = selection_mask(scores.unsqueeze(0), k)[0]  # (T, S)
    soft = scores.softmax(-1)
    fig = fig or plt.figure(figsize=(12, 5.6))
    top = [fig.add_subplot(2, 3, i + 1) for i in range(3)]
    for ax, img, title, cmap in [(top[0], attention, "dense attention p (summed over heads)", "Purples"),
                                 (top[1], soft, "indexer: softmax(I)", "RdPu"),
                                 (top[2], keep.float(), f"selected: top-{k}", "Greys")]:
        ax.imshow(img.numpy() ** (0.5 if cmap != "Greys" else 1), cmap=cmap, aspect="auto",
                  interpolation="nearest")
        ax.axhline(t, color="#f2b701", lw=0.8)
        ax.set(title=title, xlabel="key position s", ylabel="query position t")
        ax.grid(False)
    ax = fig.add_subplot(2, 1, 2)
    s = torch.arange(t + 1)
    ax.bar(s, attention[t, :t + 1], color=PALETTE["MLA"], alpha=0.6, label="dense attention p_t")
    ax.plot(s, soft[t, :t + 1], color=PALETTE["indexer"], lw=1, label="softmax(I(t, ·))")
    sel = s[keep[t, :t + 1]]
    ax.plot(sel, torch.zeros(len(sel)) - 0.03, "^", color=PALETTE["DSA"], label=f"the top-{k} it reads")
    caught = attention[t][keep[t]].sum().item()
    ax.set(xlabel="key position s", ylabel="weight", xlim=(-1, attention.shape[1]),
           title=f"layer {layer}, query t = {t}: the top-{k} hold {caught:.0%} of dense attention's mass")
    ax.legend(fontsize=8, loc="upper left")
    return caught
