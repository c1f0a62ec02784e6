"""DeepSeekMoE: routed SwiGLU experts, a top-K router and three ways to keep the load balanced.

Implements DeepSeek-V3 §2.1.2 (Eq. 12-16 and the sequence-wise balance loss, Eq. 17-20) in the shape
of the official ``inference/model.py`` classes ``Gate`` and ``MoE``:

- Router (``Gate``): scores ``s = softmax(x Wᵀ)`` (V2, Switch) or ``sigmoid(x Wᵀ)`` (V3). The experts
  are *chosen* by ``s + b`` (the bias ``b`` is a buffer, used only for selection); the *gates* come from
  the unbiased ``s`` of the chosen K, renormalised to sum 1 when ``norm_topk_prob``, times
  ``route_scale``. Group-limited routing: the E experts form ``n_expert_groups`` groups, each group is
  scored by the sum of its top-2 biased scores (V3), only the best ``n_limited_groups`` groups stay.
- Experts: SwiGLU ``w2(silu(w1 x) * w3 x)`` (``helpers.model.MLP``); ``n_shared_experts`` always-on
  shared experts form one MLP of width ``n_shared_experts · moe_inter_dim`` added to the routed output.
- Balance (``cfg.balance``):
  * ``"aux"``: the Switch Transformer loss (Fedus et al. 2021, Eq. 4-6), ``α · E · Σ_i f_i P_i`` with
    ``f_i`` the fraction of the N·K routed assignments that went to expert i (hard counts, no gradient)
    and ``P_i`` the mean router probability of expert i (the gradient flows through P only). It equals α
    exactly when routing is uniform.
  * ``"seq_aux"``: DeepSeek-V3's sequence-wise loss ``α Σ_i f_i P_i``, ``f_i = E/(K·T) Σ_t 1[i ∈ topK_t]``,
    ``P_i = (1/T) Σ_t s'_{i,t}`` (s' = scores normalised to sum 1), per sequence, averaged over B.
  * ``"loss_free"``: auxiliary-loss-free balancing (Wang et al. 2024, arXiv 2408.15664, Algorithm 1):
    after each optimiser step ``b_i += γ · sign(mean load − load_i)`` with the loads counted since the
    previous step (``MoE.after_optimizer_step``, called by ``Transformer.after_optimizer_step``).
  * ``"loss_free+seq_aux"``: both, DeepSeek-V3's own recipe (the bias does the balancing; the
    sequence-wise loss with a tiny α, 0.0001 in V3, only guards against extreme imbalance in one sequence).
- Token dropping (``cfg.capacity_factor`` c > 0; GShard, Lepikhin et al. 2020; Switch): each expert
  takes at most ``C = ceil(c · N·K / E)`` of a call's N·K assignments; the rest get gate 0 (the token
  keeps its residual and any shared expert). First choices are served before second choices, and within
  one choice rank earlier tokens first (``capacity_mask``). DeepSeek-V3 drops no tokens (§2.1.2, "No
  Token-Dropping", in training and in inference): lesson 04 measures what dropping costs against balancing.
- Metrics: ``max_vio`` (Wang et al.: (max load − mean load) / mean load) and ``load_entropy``.

Two dispatch paths compute the same routed output and are tested equal: ``dispatch_grouped`` sorts the
N·K (token, expert) assignments by expert and calls each expert once on all of its tokens;
``dispatch_loop`` is the readable reference, one token and one chosen expert at a time.

Shape letters (``docs/GLOSSARY.md``): B batch, T sequence length, D model width, N = B·T tokens,
E routed experts, K experts per token, Ng expert groups, Mg groups a token may use, St recorded steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import MLP
from .validate import check_activations, check_int, check_number


# --- routing ----------------------------------------------------------------------------------------
@dataclass
class Routing:
    """What the router decided for N tokens."""

    indices: torch.Tensor  # (N, K) chosen experts, distinct per token
    weights: torch.Tensor  # (N, K) gate values (unbiased scores, renormalised, times route_scale)
    scores: torch.Tensor  # (N, E) unbiased scores s (softmax or sigmoid), float32
    probs: torch.Tensor  # (N, E) scores normalised to sum 1 per token (P in the balance losses)
    logits: torch.Tensor  # (N, E) router logits u·e_i


def group_limit_mask(biased: torch.Tensor, n_groups: int, n_limited: int) -> torch.Tensor:
    """Boolean (N, E) mask of the experts inside each token's best ``n_limited`` groups.

    A group's score is the sum of its top-2 biased scores (DeepSeek-V3; the single score if a group
    holds one expert)."""
    N, E = biased.shape
    grouped = biased.view(N, n_groups, E // n_groups)  # (N, Ng, E/Ng)
    group_scores = grouped.topk(min(2, E // n_groups), dim=-1).values.sum(-1)  # (N, Ng)
    keep = group_scores.topk(n_limited, dim=-1).indices  # (N, n_limited)
    mask = torch.zeros(N, n_groups, dtype=torch.bool, device=biased.device)
    mask.scatter_(1, keep, True)
    return mask.repeat_interleave(E // n_groups, dim=1)  # (N, E)


class Gate(nn.Module):
    """The router: scores, (group-limited) top-K selection by biased scores, gates from unbiased ones."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        E = cfg.n_routed_experts
        self.weight = nn.Parameter(torch.empty(E, cfg.dim))  # (E, D): one centroid e_i per expert
        nn.init.normal_(self.weight, std=0.02)
        # b: a buffer, never a Parameter: it is moved by the balancing rule, not by gradient.
        self.register_buffer("bias", torch.zeros(E))  # (E,)

    def forward(self, x: torch.Tensor) -> Routing:
        cfg = self.cfg
        logits = F.linear(x.float(), self.weight.float())  # (N, E)
        if cfg.score_func == "softmax":
            scores = logits.softmax(dim=-1)
            probs = scores
        else:
            scores = logits.sigmoid()
            probs = scores / scores.sum(dim=-1, keepdim=True)
        biased = scores.detach() + self.bias  # selection only: no gradient through the choice
        if cfg.n_expert_groups > 1:
            keep = group_limit_mask(biased, cfg.n_expert_groups, cfg.n_limited_groups)
            biased = biased.masked_fill(~keep, float("-inf"))
        indices = biased.topk(cfg.n_activated_experts, dim=-1).indices  # (N, K)
        weights = scores.gather(1, indices)  # (N, K) unbiased
        if cfg.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        weights = weights * cfg.route_scale
        return Routing(indices, weights, scores, probs, logits)


# --- balance losses and metrics -----------------------------------------------------------------------
def expert_counts(indices: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Tokens routed to each expert: (E,) int64 counts of the (..., K) assignments."""
    check_int("n_experts", n_experts, min_value=1, where="expert_counts")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= n_experts):
        raise ValueError(f"expert_counts: expert indices must be in [0, {n_experts}), got "
                         f"{int(indices.min())}..{int(indices.max())}")
    return _count(indices, n_experts)


def _count(indices: torch.Tensor, n_experts: int) -> torch.Tensor:
    """``expert_counts`` without the input checks, for the layer's own (valid) router output."""
    return torch.bincount(indices.flatten(), minlength=n_experts)


def switch_aux_loss(probs: torch.Tensor, indices: torch.Tensor, alpha: float) -> torch.Tensor:
    """Switch-style loss ``α · E · Σ f_i P_i`` over N tokens: probs (N, E), indices (N, K).

    ``f_i`` = share of the N·K assignments that chose expert i (hard counts: no gradient flows through
    them); ``P_i`` = mean router probability of expert i. Uniform routing gives exactly α."""
    check_number("alpha", alpha, min_value=0.0, where="switch_aux_loss")
    E = probs.shape[-1]
    f = _count(indices, E).to(probs.dtype) / indices.numel()  # (E,)
    P = probs.mean(dim=0)  # (E,)
    return alpha * E * (f * P).sum()


def seq_aux_loss(probs: torch.Tensor, indices: torch.Tensor, alpha: float) -> torch.Tensor:
    """DeepSeek-V3's sequence-wise loss: probs (B, T, E), indices (B, T, K); α Σ f_i P_i per sequence
    with ``f_i = E/(K·T) · count_i``, averaged over the B sequences. Uniform routing gives exactly α."""
    check_number("alpha", alpha, min_value=0.0, where="seq_aux_loss")
    if probs.ndim != 3 or indices.ndim != 3 or probs.shape[:2] != indices.shape[:2]:
        raise ValueError(f"seq_aux_loss needs probs (B, T, E) and indices (B, T, K) with the same B and T, "
                         f"got {tuple(probs.shape)} and {tuple(indices.shape)}")
    B, T, E = probs.shape
    K = indices.shape[-1]
    counts = torch.zeros(B, E, dtype=probs.dtype, device=probs.device)
    counts.scatter_add_(1, indices.reshape(B, T * K), torch.ones_like(indices.reshape(B, T * K),
                                                                        dtype=probs.dtype))  # (B, E)
    f = counts * E / (K * T)  # (B, E)
    P = probs.mean(dim=1)  # (B, E)
    return alpha * (f * P).sum(-1).mean()


def loss_free_update(bias: torch.Tensor, load: torch.Tensor, gamma: float) -> torch.Tensor:
    """Wang et al. Algorithm 1: ``b_i + γ · sign(mean load − load_i)`` (a new tensor).

    ``gamma`` must be >= 0: a negative step would push the bias *toward* the overloaded experts."""
    check_number("gamma", gamma, min_value=0.0, where="loss_free_update")
    if load.shape != bias.shape:
        raise ValueError(f"loss_free_update: load has shape {tuple(load.shape)} but bias has "
                         f"{tuple(bias.shape)}; one count per expert")
    load = load.to(bias.dtype)
    return bias + gamma * torch.sign(load.mean() - load)


def max_vio(counts: torch.Tensor) -> torch.Tensor:
    """MaxVio (Wang et al.): (max_i load_i − mean load) / mean load over the last dim of counts (…, E).
    0 is perfect balance; E/K − 1 is the worst possible with K experts per token."""
    c = counts.double()
    mean = c.mean(-1)
    return (c.max(-1).values - mean) / mean.clamp_min(1e-12)


def load_entropy(counts: torch.Tensor) -> torch.Tensor:
    """Entropy in bits of the load distribution over the last dim of counts (…, E): log2(E) when
    balanced, lower as the load concentrates on fewer experts."""
    p = counts.double() / counts.double().sum(-1, keepdim=True).clamp_min(1e-12)
    return -(p * torch.log2(p.clamp_min(1e-30))).sum(-1)


def expert_capacity(n_tokens: int, top_k: int, n_experts: int, capacity_factor: float) -> int:
    """C = ceil(c · N·K / E): the assignments one expert may take in a call (at least 1)."""
    check_int("n_tokens", n_tokens, min_value=0)
    check_number("capacity_factor", capacity_factor, min_value=0.0, strict_min=True)
    return max(1, math.ceil(capacity_factor * n_tokens * top_k / n_experts))


def capacity_mask(indices: torch.Tensor, n_experts: int, capacity: int) -> torch.Tensor:
    """(N, K) bool: which assignments an expert of ``capacity`` slots keeps. Slots go to first choices
    of every token before second choices, and within one choice rank to earlier tokens first."""
    check_int("capacity", capacity, min_value=1)
    by_rank = indices.t().reshape(-1)  # (K·N,): all first choices, then all second choices …
    onehot = F.one_hot(by_rank, n_experts)  # (K·N, E)
    place = (onehot.cumsum(0) * onehot).sum(-1) - 1  # how many earlier assignments went to the same expert
    return (place < capacity).view(indices.shape[1], -1).t()  # (N, K)


# --- dispatch -----------------------------------------------------------------------------------------
def dispatch_grouped(x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor,
                     experts: nn.ModuleList) -> torch.Tensor:
    """Σ_k weights[t, k] · expert_{indices[t, k]}(x[t]) with one call per expert on all its tokens.

    x (N, D), indices/weights (N, K) → (N, D)."""
    N, K = indices.shape
    flat = indices.flatten()  # (N·K,)
    order = flat.argsort(stable=True)  # assignments sorted by expert
    token = order // K  # (N·K,) which token each sorted assignment belongs to
    gate = weights.flatten()[order].unsqueeze(-1).to(x.dtype)  # (N·K, 1)
    counts = torch.bincount(flat, minlength=len(experts)).tolist()
    out = torch.zeros_like(x)
    start = 0
    for e, n in enumerate(counts):
        if n:  # one call on all of expert e's tokens, scattered back with their gates
            tok = token[start:start + n]  # (n,)
            out.index_add_(0, tok, experts[e](x[tok]) * gate[start:start + n])
        start += n
    return out


def dispatch_loop(x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor,
                  experts: nn.ModuleList) -> torch.Tensor:
    """The readable reference: for every token, add each chosen expert's output times its gate."""
    rows = []
    for t in range(x.shape[0]):
        row = torch.zeros_like(x[t])
        for k in range(indices.shape[1]):
            expert = experts[int(indices[t, k])]
            row = row + weights[t, k].to(x.dtype) * expert(x[t])
        rows.append(row)
    return torch.stack(rows)  # (N, D)


# --- the layer ----------------------------------------------------------------------------------------
@dataclass
class MoEResult:
    out: torch.Tensor  # (B, T, D) routed + shared experts
    balance_loss: torch.Tensor  # scalar; 0 unless balance is "aux" or "seq_aux"
    counts: torch.Tensor  # (E,) int64 tokens routed to each expert in this call (N·K in all)
    indices: torch.Tensor  # (B, T, K) chosen experts
    weights: torch.Tensor  # (B, T, K) gate values
    scores: torch.Tensor  # (B, T, E) unbiased router scores
    dropped: float = 0.0  # share of the N·K assignments dropped for capacity (0 without a capacity factor)

    @property
    def max_vio(self) -> float:
        return max_vio(self.counts).item()

    @property
    def entropy(self) -> float:
        return load_entropy(self.counts).item()


class MoE(nn.Module):
    """DeepSeekMoE layer: ``shared(x) + Σ_k g_k · expert_k(x)``; see the module docstring."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.n_routed_experts <= 0:
            raise ValueError(f"MoE needs n_routed_experts > 0, got n_routed_experts={cfg.n_routed_experts}")
        self.cfg = cfg
        self.gate = Gate(cfg)
        self.experts = nn.ModuleList(MLP(cfg.dim, cfg.moe_inter_dim) for _ in range(cfg.n_routed_experts))
        self.shared_experts = (MLP(cfg.dim, cfg.n_shared_experts * cfg.moe_inter_dim)
                               if cfg.n_shared_experts else None)
        # Tokens per expert counted by training-mode forwards since the last optimiser step.
        self.register_buffer("load", torch.zeros(cfg.n_routed_experts), persistent=False)  # (E,)
        self.dispatch = "grouped"  # or "loop": the readable reference path

    def forward(self, x: torch.Tensor) -> MoEResult:
        cfg = self.cfg
        check_activations(x, cfg.dim, self.gate.weight)
        B, T, D = x.shape
        flat = x.reshape(B * T, D)  # (N, D)
        r = self.gate(flat)
        weights, dropped = r.weights, 0.0
        if cfg.capacity_factor > 0:  # over-full experts drop their latest assignments (gate 0)
            cap = expert_capacity(B * T, r.indices.shape[1], cfg.n_routed_experts, cfg.capacity_factor)
            keep = capacity_mask(r.indices, cfg.n_routed_experts, cap)  # (N, K)
            weights, dropped = weights * keep, 1.0 - keep.float().mean().item()
        run = dispatch_grouped if self.dispatch == "grouped" else dispatch_loop
        out = run(flat, r.indices, weights, self.experts)  # (N, D)
        if self.shared_experts is not None:
            out = out + self.shared_experts(flat)
        counts = _count(r.indices, cfg.n_routed_experts)  # (E,) the router's choices, before any dropping
        if self.training:
            self.load += counts.to(self.load.dtype)
        if cfg.balance == "aux":
            balance = switch_aux_loss(r.probs, r.indices, cfg.aux_loss_alpha)
        elif cfg.balance in ("seq_aux", "loss_free+seq_aux"):
            balance = seq_aux_loss(r.probs.view(B, T, -1), r.indices.view(B, T, -1), cfg.aux_loss_alpha)
        else:
            balance = r.probs.new_zeros(())
        return MoEResult(out=out.view(B, T, D), balance_loss=balance, counts=counts,
                         indices=r.indices.view(B, T, -1), weights=weights.view(B, T, -1),
                         scores=r.scores.view(B, T, -1), dropped=dropped)  # (B, T, ·)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Aux-loss-free balancing: nudge the bias toward the under-loaded experts, reset the counts."""
        if self.cfg.balance in ("loss_free", "loss_free+seq_aux") and self.load.sum() > 0:
            self.gate.bias.copy_(loss_free_update(self.gate.bias, self.load, self.cfg.bias_update_speed))
        self.load.zero_()


# --- whole-model helpers ----------------------------------------------------------------------------
def moe_layers(model: nn.Module) -> list[MoE]:
    """The model's MoE layers, in order."""
    return [m for m in model.modules() if isinstance(m, MoE)]


@dataclass
class RoutingStats:
    counts: torch.Tensor  # (L, E) tokens per expert summed over all batches, per MoE layer
    max_vio_global: float  # MaxVio of the summed counts, averaged over layers
    max_vio_batch: float  # MaxVio of each batch's counts, averaged over batches and layers
    entropy: float  # load entropy (bits) of the summed counts, averaged over layers
    layer_max_vio: list[float]  # MaxVio_global per layer


@torch.no_grad()
def routing_stats(model: nn.Module, data, *, split: str = "val", batch_size: int = 16, seq_len: int = 64,
                  iters: int = 8, seed: int = 1234, domain: str | None = None) -> RoutingStats:
    """Expert loads of ``model`` over ``iters`` fixed batches (same batches as ``helpers.evaluate``)."""
    layers = moe_layers(model)
    if not layers:
        raise ValueError("routing_stats needs a model with MoE layers (n_routed_experts > 0)")
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    total, per_batch = 0, []
    for _ in range(iters):
        b = data.get_batch(split, batch_size, seq_len, generator=gen, device=device, domain=domain)
        counts = torch.stack([m.counts for m in model.run(b.x).moe]).cpu()  # (L, E)
        total = total + counts
        per_batch.append(max_vio(counts).mean().item())
    model.train(was_training)
    layer_vio = max_vio(total)
    return RoutingStats(counts=total, max_vio_global=layer_vio.mean().item(),
                        max_vio_batch=sum(per_batch) / len(per_batch),
                        entropy=load_entropy(total).mean().item(), layer_max_vio=layer_vio.tolist())
