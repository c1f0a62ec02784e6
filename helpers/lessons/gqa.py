"""Grouped-query attention tools (lesson 02): grouping, mean-pool uptraining, diagrams, attention maps.

Ainslie et al. 2023, "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head
Checkpoints" (arXiv 2305.13245). §2.2: the H query heads are split into G groups and every group
reads one key head and one value head; G = H is multi-head attention (MHA), G = 1 multi-query
attention (MQA). The attention itself lives in ``helpers.attention`` (one module with ``n_kv_heads``);
this module holds what the lesson adds around it:

- ``kv_head_of``: which K/V head each query head reads. Query head h belongs to group h // (H/G), the
  same order as Hugging Face's ``repeat_kv`` (``repeat_interleave`` over heads).
- ``pool_heads`` / ``to_gqa``: §2.1 uptraining. "The projection matrices for key and value heads are
  mean-pooled into single projection matrices" per group, then training continues briefly. Because
  RoPE rotates every head by the same angles, pooling the weight rows pools the rotated keys too.
  ``method="first"`` keeps the first head of each group instead (the paper's weaker baseline).
- ``draw_grouping`` / ``draw_groupings``: a matplotlib diagram of which query heads share a K/V head.
- ``attention_maps`` and ``within_group_tv``: per-head attention maps of a model and how differently
  the heads of one group attend (mean total-variation distance).

Shape letters (``docs/GLOSSARY.md``): B batch, T query length, S key length, D model width, H query
heads, G KV heads (groups), Dh head width, l layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..attention import Attention
from ..model import Transformer
from ..validate import InputTypeError, check_int
from ..viz.style import group_colors  # one colour per K/V group (defined here before)

POOL_METHODS = ("mean", "first")


def check_grouping(n_heads: int, n_kv_heads: int) -> None:
    """Raise ``ValueError`` unless G K/V heads can be shared evenly by H query heads."""
    check_int("n_heads", n_heads, min_value=1)
    check_int("n_kv_heads", n_kv_heads, min_value=1)
    if n_heads % n_kv_heads:
        raise ValueError(f"n_heads={n_heads} is not divisible by n_kv_heads={n_kv_heads}: every K/V "
                         f"head must serve the same number of query heads (choose a divisor of {n_heads})")


def kv_head_of(n_heads: int, n_kv_heads: int) -> list[int]:
    """For each query head h, the K/V head (group) it reads: h // (H/G)."""
    check_grouping(n_heads, n_kv_heads)
    per_group = n_heads // n_kv_heads
    return [h // per_group for h in range(n_heads)]


def pool_heads(weight: torch.Tensor, n_from: int, n_to: int, head_dim: int,
               method: str = "mean") -> torch.Tensor:
    """Pool the rows of a K or V projection ``weight`` (n_from·Dh, D) from ``n_from`` heads into
    ``n_to`` heads (n_to·Dh, D): each new head is the mean (or the first) of n_from/n_to adjacent heads."""
    if method not in POOL_METHODS:
        raise ValueError(f"method={method!r} must be one of {POOL_METHODS}")
    check_int("n_from", n_from, min_value=1, where="pool_heads")
    check_int("n_to", n_to, min_value=1, where="pool_heads")
    check_int("head_dim", head_dim, min_value=1, where="pool_heads")
    if n_from % n_to:
        raise ValueError(f"cannot pool {n_from} K/V heads into n_kv_heads={n_to}: it must divide {n_from}")
    if weight.ndim != 2 or weight.shape[0] != n_from * head_dim:
        raise ValueError(f"weight has shape {tuple(weight.shape)}, expected ({n_from * head_dim}, D) "
                         f"for {n_from} heads of width {head_dim}")
    D = weight.shape[1]
    grouped = weight.view(n_to, n_from // n_to, head_dim, D)  # (G, G0/G, Dh, D)
    pooled = grouped.mean(dim=1) if method == "mean" else grouped[:, 0]  # (G, Dh, D)
    return pooled.reshape(n_to * head_dim, D)  # (G·Dh, D)


@torch.no_grad()
def to_gqa(model: Transformer, n_kv_heads: int, method: str = "mean") -> Transformer:
    """A new model with ``n_kv_heads`` K/V heads whose K/V projections are the pooled heads of
    ``model``'s (Ainslie et al. §2.1); every other weight is copied unchanged. ``model`` is untouched.
    G equal to the model's own G returns an exact copy."""
    cfg = getattr(model, "config", None)
    if not isinstance(model, Transformer) or cfg is None:
        raise InputTypeError(f"to_gqa needs a helpers Transformer, got {type(model).__name__}")
    if cfg.attn_type != "mha":
        raise ValueError(f"to_gqa needs MHA/GQA attention (attn_type='mha'), the model has "
                         f"attn_type={cfg.attn_type!r}: MLA has no per-head K/V projections to pool")
    check_grouping(cfg.n_heads, n_kv_heads)
    g_from = cfg.kv_heads
    if g_from % n_kv_heads:
        raise ValueError(f"the model has {g_from} K/V heads; they cannot be pooled into "
                         f"n_kv_heads={n_kv_heads} groups (it must divide {g_from})")
    new = Transformer(cfg.replace(n_kv_heads=n_kv_heads))
    new.to(device=model.device, dtype=model.tok_emb.weight.dtype)
    state = model.state_dict()
    for name, module in model.named_modules():
        if isinstance(module, Attention):  # every block, MTP blocks included
            for proj in ("wk", "wv"):
                key = f"{name}.{proj}.weight"
                state[key] = pool_heads(state[key], g_from, n_kv_heads, module.head_dim, method)
    new.load_state_dict(state)
    return new.train(model.training)


# --- diagrams (colours: helpers.viz.style) -----------------------------------------------------------
def draw_grouping(n_heads: int, n_kv_heads: int, ax=None, title: str | None = None):
    """Draw H query-head boxes above G K/V-head boxes, each query head joined to the K/V head it
    reads, coloured by group. Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    groups = kv_head_of(n_heads, n_kv_heads)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3.0, 0.55 * n_heads + 1), 2.6))
    colors = group_colors(n_kv_heads)
    per_group = n_heads // n_kv_heads
    w, h, y_q, y_kv = 0.8, 0.55, 2.0, 0.0
    kv_x = [g * per_group + (per_group - 1) / 2 for g in range(n_kv_heads)]  # under their group
    kv_w = per_group - 1 + w  # spans the boxes of its query heads
    for q, g in enumerate(groups):
        ax.plot([q, kv_x[g]], [y_q - h / 2, y_kv + h / 2], color=colors[g], lw=1.6, alpha=0.8, zorder=1)
        ax.add_patch(FancyBboxPatch((q - w / 2, y_q - h / 2), w, h, boxstyle="round,pad=0.02",
                                    fc=colors[g], ec="black", lw=0.8, alpha=0.55, zorder=2))
        ax.text(q, y_q, f"q{q}", ha="center", va="center", fontsize=8, zorder=3)
    for g in range(n_kv_heads):
        ax.add_patch(FancyBboxPatch((kv_x[g] - kv_w / 2, y_kv - h / 2), kv_w, h,
                                    boxstyle="round,pad=0.02", fc=colors[g], ec="black", lw=1.0, zorder=2))
        ax.text(kv_x[g], y_kv, f"K/V {g}" if kv_w > 1.2 else f"kv{g}", ha="center", va="center",
                fontsize=8, color="white", fontweight="bold", zorder=3)
    kind = "MHA" if n_kv_heads == n_heads else "MQA" if n_kv_heads == 1 else "GQA"
    ax.set_title(title or f"{kind}: H={n_heads} query heads, G={n_kv_heads} K/V heads", fontsize=10)
    ax.text(-0.9, y_q, "query\nheads", ha="right", va="center", fontsize=8)
    ax.text(-0.9, y_kv, "cached\nK/V heads", ha="right", va="center", fontsize=8)
    ax.set_xlim(-2.3, n_heads - 0.3)
    ax.set_ylim(y_kv - 0.6, y_q + 0.6)
    ax.set_aspect("auto")
    ax.axis("off")
    return ax


def draw_groupings(n_heads: int, kv_heads: list[int]):
    """One ``draw_grouping`` panel per G in ``kv_heads``, stacked; returns the Figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(kv_heads), 1, figsize=(max(4.0, 0.6 * n_heads + 1.5),
                                                         2.0 * len(kv_heads)), squeeze=False)
    for ax, g in zip(axes[:, 0], kv_heads):
        draw_grouping(n_heads, g, ax=ax)
    fig.tight_layout()
    return fig


# --- attention maps -------------------------------------------------------------------------------
@dataclass
class AttentionMaps:
    weights: torch.Tensor  # (L, B, H, T, T): softmax weights, row t = where query t looks
    n_heads: int  # H
    n_kv_heads: int  # G of the model the maps came from

    def group(self, layer: int, group: int, n_kv_heads: int | None = None, batch: int = 0) -> torch.Tensor:
        """(H/G, T, T) maps of the query heads in ``group``; pass ``n_kv_heads`` to group an MHA
        model's heads the way a GQA model with that many K/V heads would."""
        G = self.n_kv_heads if n_kv_heads is None else n_kv_heads
        heads = [h for h, g in enumerate(kv_head_of(self.n_heads, G)) if g == group]
        return self.weights[layer, batch, heads]


@torch.no_grad()
def attention_maps(model: Transformer, idx: torch.Tensor) -> AttentionMaps:
    """Every layer's per-head attention map for token ids ``idx`` (B, T), using
    ``Attention.attention_weights`` on the same normalised inputs the forward pass sees."""
    cfg = model.config
    if cfg.attn_type != "mha":
        raise ValueError(f"attention_maps needs attn_type='mha', the model has {cfg.attn_type!r}")
    B, T = idx.shape
    if T > cfg.max_seq_len:
        raise ValueError(f"T={T} exceeds max_seq_len={cfg.max_seq_len}")
    cos, sin = model.rope_cos[:T], model.rope_sin[:T]  # (T, Dh)
    x = model.tok_emb(idx)  # (B, T, D)
    maps = []
    for layer in model.layers:
        maps.append(layer.attn.attention_weights(layer.attn_norm(x), cos, sin))  # (B, H, T, T)
        x, _ = layer(x, cos, sin)
    return AttentionMaps(torch.stack(maps), cfg.n_heads, cfg.kv_heads)  # (L, B, H, T, T)


def within_group_tv(weights: torch.Tensor, n_kv_heads: int) -> float:
    """Mean total-variation distance, ½·Σ_s |p_i(s) − p_j(s)|, between the attention rows of every pair
    of query heads in the same group, averaged over pairs, queries, groups and batch. 0 means the heads
    of a group attend identically; 1 means they never look at the same keys. ``weights``: (B, H, T, S)."""
    B, H, T, S = weights.shape
    check_grouping(H, n_kv_heads)
    n = H // n_kv_heads
    if n == 1:
        return 0.0
    w = weights.reshape(B, n_kv_heads, n, T, S)  # (B, G, H/G, T, S)
    tv = 0.5 * (w.unsqueeze(2) - w.unsqueeze(3)).abs().sum(-1)  # (B, G, H/G, H/G, T)
    return (tv.sum(dim=(2, 3)) / (n * (n - 1))).mean().item()
