"""Rotary position embedding and multi-head attention with shared K/V heads (MHA, GQA, MQA).

RoPE: Su et al. 2021 (arXiv 2104.09864), in the "rotate half" layout Hugging Face's Llama uses, so
weights copy across unchanged. GQA: Ainslie et al. 2023 (arXiv 2305.13245): H query heads in G groups,
each group reading one K/V head; G = H is MHA, G = 1 is MQA.

Two paths compute the same attention and are tested equal: ``explicit_attention`` (softmax(QKᵀ/√d)V,
written out, and able to return the attention weights) and ``sdpa_attention`` (PyTorch's fused kernel).
Likewise two projections: ``Attention.project`` (three products, RoPE on q and on k) for training, and
``Attention.project_fused`` (one product with the stacked ``[W_Q; W_K; W_V]``, RoPE on q and k in one
call), which the layer takes under ``torch.inference_mode()``, i.e. in ``helpers.generate``: a decode
step of a small model costs what its operator calls cost, not its arithmetic.

Shape letters (``docs/GLOSSARY.md``): B batch, T new positions, S key positions (cache + new), H query
heads, G KV heads, Dh head width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import stacked_weight
from .validate import check_activations, check_rope_tables


def rope_tables(head_dim: int, max_seq_len: int, theta: float = 10000.0,
                device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each ``(max_seq_len, head_dim)``: frequency i applies to dims i and i + Dh/2."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device)
                               / head_dim)  # (Dh/2,)
    pos = torch.arange(max_seq_len, dtype=torch.float32, device=device)
    angles = torch.outer(pos, inv_freq)  # (S, Dh/2)
    angles = torch.cat([angles, angles], dim=-1)  # (S, Dh)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (..., T, Dh) by the angles of its positions; cos/sin are (T, Dh)."""
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


def causal_mask(t: int, s: int, device=None) -> torch.Tensor | None:
    """Boolean (T, S) mask, True where query i may see key j: the T queries are the *last* T of S
    positions. ``None`` when no mask is needed (one query sees everything cached)."""
    if t == 1:
        return None
    q_pos = torch.arange(s - t, s, device=device).unsqueeze(1)  # (T, 1)
    k_pos = torch.arange(s, device=device).unsqueeze(0)  # (1, S)
    return k_pos <= q_pos  # (T, S)


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                       return_weights: bool = False):
    """The readable path. q: (B, H, T, Dh); k, v: (B, G, S, Dh) with H a multiple of G."""
    B, H, T, Dh = q.shape
    G, S = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(Dh) if scale is None else scale
    # The H/G query heads of a group all read the same K/V head, so stack them as extra query rows:
    # one (H/G·T, Dh) @ (Dh, S) product per group, and K/V are never copied H/G times (a broadcast
    # matmul against k.unsqueeze(2) would materialise that copy and make GQA slower than MHA).
    qg = q.reshape(B, G, H // G * T, Dh)  # (B, G, H/G·T, Dh): query heads grouped by their K/V head
    scores = (qg @ k.transpose(-1, -2) * scale).view(B, G, H // G, T, S)  # (B, G, H/G, T, S)
    mask = causal_mask(T, S, q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, G, H/G, T, S)
    out = (weights.view(B, G, H // G * T, S) @ v).view(B, H, T, v.shape[-1])  # (B, H, T, Dv)
    if return_weights:
        return out, weights.reshape(B, H, T, S)
    return out


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   scale: float | None = None) -> torch.Tensor:
    """The fused path: ``F.scaled_dot_product_attention`` with the same masking and grouping."""
    T, S = q.shape[2], k.shape[2]
    H, G = q.shape[1], k.shape[1]
    mask = causal_mask(T, S, q.device)
    kwargs = {"scale": scale}
    if G != H:
        kwargs["enable_gqa"] = True
    if mask is not None and T == S:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, **kwargs)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **kwargs)  # (B, H, T, Dv)


def attend(q, k, v, impl: str = "sdpa", scale: float | None = None) -> torch.Tensor:
    if impl == "explicit":
        return explicit_attention(q, k, v, scale)
    if impl == "sdpa":
        return sdpa_attention(q, k, v, scale)
    raise ValueError(f"impl={impl!r} must be 'sdpa' or 'explicit'")


class Attention(nn.Module):
    """Causal self-attention with ``n_kv_heads`` K/V heads (MHA when G = H, MQA when G = 1)."""

    def __init__(self, cfg: ModelConfig, layer_idx: int = 0):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.hd
        self.impl = cfg.attn_impl
        self.wq = nn.Linear(cfg.dim, self.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(self.n_heads * self.head_dim, cfg.dim, bias=False)

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Queries, keys and values for x (B, T, D), with RoPE applied to q and k."""
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, G, T, Dh)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, G, T, Dh)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def project_fused(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """The same q, k, v as ``project`` in fewer operator calls (the decode path): one product with
        the stacked ``[wq; wk; wv]``, and RoPE on the H query heads and the G key heads together."""
        B, T, _ = x.shape
        H, G, Dh = self.n_heads, self.n_kv_heads, self.head_dim
        qkv = x @ stacked_weight(self, self.wq, self.wk, self.wv)  # (B, T, (H + 2G)·Dh)
        qk, v = qkv.split([(H + G) * Dh, G * Dh], dim=-1)
        qk = apply_rope(qk.view(B, T, H + G, Dh).transpose(1, 2), cos, sin)  # (B, H + G, T, Dh)
        q, k = qk.split([H, G], dim=1)  # (B, H, T, Dh), (B, G, T, Dh)
        return q, k, v.view(B, T, G, Dh).transpose(1, 2)  # v: (B, G, T, Dh)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache=None,
                impl: str | None = None) -> torch.Tensor:
        check_activations(x, self.wq.in_features, self.wq.weight)
        B, T, _ = x.shape
        check_rope_tables(cos, sin, T, self.head_dim)
        fused = torch.is_inference_mode_enabled()  # generate(): the decode path, tested equal
        q, k, v = self.project_fused(x, cos, sin) if fused else self.project(x, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, G, S, Dh): the whole history
        out = attend(q, k, v, impl or self.impl).transpose(1, 2).reshape(B, T, -1)  # (B, T, H·Dh)
        return out @ stacked_weight(self, self.wo) if fused else self.wo(out)  # (B, T, D)

    def attention_weights(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """The (B, H, T, T) attention map of a fresh sequence, for plotting."""
        q, k, v = self.project(x, cos, sin)
        return explicit_attention(q, k, v, return_weights=True)[1]
