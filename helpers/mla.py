"""Multi-head latent attention (MLA): low-rank K/V, decoupled RoPE and weight absorption (lesson 03).

DeepSeek-V2 §2.1 (arXiv 2405.04434, Eq. 9–19) and DeepSeek-V3 §2.1.1 (Eq. 1–11); the layout and
weight names follow the official ``inference/model.py`` class ``MLA`` (deepseek-ai/DeepSeek-V3):

    query  c_q  = RMSNorm(W_DQ x)                     (B, T, Dq)   wq_a, q_norm   (no compression:
           q    = W_UQ c_q  → per head [q_nope; q_pe]  (B, H, T, Dn + Dr)  wq_b    one wq: D → H·(Dn+Dr))
    key/value
           [c_kv; k_pe] = [W_DKV; W_KR] x              (B, T, Dc + Dr)    wkv_a = W_DKV and W_KR fused
           c_kv = RMSNorm(c_kv)                        the latent, cached  kv_norm
           k_pe = RoPE(k_pe)                           ONE RoPE key shared by all heads, cached
           [k_nope; v] = W_UKV c_kv  (per head)        (B, H, S, Dn + Dv) wkv_b = [W_UK; W_UV]
    score  (q_nope·k_nope + RoPE(q_pe)·k_pe) / sqrt(Dn + Dr)
    out    wo [o_1; ...; o_H]                          (B, T, D)          wo: H·Dv → D

RoPE touches only the Dr-wide parts: a rotation sitting between ``q_nope`` and ``W_UK c_kv`` would
depend on the distance between the two positions, so ``W_UK`` could no longer be folded into the
query. With RoPE moved to the small shared ``k_pe``, inference can *absorb* the up-projections:

    q_nope·(W_UK c_j) = (W_UKᵀ q_nope)·c_j      → attend with a Dc-wide query over the latents
    Σ_j p_j (W_UV c_j) = W_UV (Σ_j p_j c_j)     → apply W_UV once, after the weighted sum

The paper's two key/value down-projections, W_DKV (W^DKV: D → Dc, to the latent) and W_KR (W^KR:
D → Dr, to the shared RoPE key), are fused into one projection ``wkv_a``, as in the official code.

Three paths, selected by ``MLA.mode`` (or ``forward(..., mode=...)``), all computing the same function.
The course's names against DeepSeek's ``attn_impl`` (official ``model.py``), whose ``"naive"`` is our
``"kv"``; the course has no mode called ``"naive"``, so that no name means two things:

    course mode   DeepSeek attn_impl   caches                          per decode step
    "kv"          "naive"              expanded per-head K and V       attend over per-head K/V
    "latent"      (no DeepSeek name)   latent c_kv and k_pe            re-expand K/V of all S, attend
    "absorbed"    "absorb"             latent c_kv and k_pe            attend over the latents

* ``"absorbed"`` (default): caches ``(c_kv, k_pe)`` and attends over the latents directly, W_UK folded
  into the query and W_UV into the output. Seen from the cache this is multi-*query* attention with
  one key of width Dc + Dr and one value of width Dc shared by all H heads.
* ``"latent"``: caches the same ``(c_kv, k_pe)`` but rebuilds the per-head K and V of every cached
  position from the latent at every step (what Hugging Face ``DeepseekV3Attention`` does since
  transformers 5.15; earlier releases cached the expanded K and V, like ``"kv"``).
* ``"kv"``: caches the expanded per-head K ``(B, H, S, Dn+Dr)`` and V ``(B, H, S, Dv)``: nothing to
  recompute, but ``H·(Dn+Dr) + H·Dv`` elements per token per layer (40,960 for DeepSeek-V3) instead of
  ``Dc + Dr`` (576).

``cfg.attn_impl`` picks the readable path (``"explicit"``: scores written out term by term) or the
fused one (``"sdpa"``); they are tested equal. The cache bill (DeepSeek-V2 Table 1) is at the bottom.

Shape letters (``docs/GLOSSARY.md``): B batch, T new positions, S key positions (cached + new), D model
width, H heads, Dq query latent (q_lora_rank), Dc KV latent (kv_lora_rank), Dn non-RoPE head part
(qk_nope_head_dim), Dr RoPE part (qk_rope_head_dim), Dv value head width (v_head_dim), l layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import apply_rope, attend, causal_mask
from .config import ModelConfig
from .kv_cache import (  # noqa: F401  (MODES, RENAMED and the cache bill: their old home)
    MODES,
    RENAMED,
    CacheRow,
    MLACacheBill,
    cache_bill,
    cache_table,
    check_mla_mode,
    deepseek_v3_cache_bill,
    mla_cache_bill,
)
from .layers import RMSNorm
from .validate import check_activations, check_rope_tables


def absorbed_attention_explicit(q_lat: torch.Tensor, q_pe: torch.Tensor, c_kv: torch.Tensor,
                                k_pe: torch.Tensor, scale: float) -> torch.Tensor:
    """The readable absorbed path, the two score terms written out (official ``model.py``).

    q_lat: (B, H, T, Dc) queries already multiplied by W_UK; q_pe: (B, H, T, Dr) rotated;
    c_kv: (B, S, Dc) cached latents; k_pe: (B, S, Dr) cached rotated RoPE keys.
    Returns the weighted sum of *latents* per head, (B, H, T, Dc): W_UV is applied by the caller.
    All H heads read the same latents, so the heads are stacked as H·T query rows of one matrix
    product per sequence (the latents are never copied per head).
    """
    B, H, T, Dc = q_lat.shape
    S = c_kv.shape[1]
    if T == 1:  # decode: (B, S, H) latents-first, then transposed. With only H query rows, torch's CPU
        # kernel streams the cache about twice as fast this way round; the same products either way
        scores = (c_kv @ q_lat.reshape(B, H, Dc).transpose(1, 2)
                  + k_pe @ q_pe.reshape(B, H, -1).transpose(1, 2)).transpose(1, 2).contiguous()
    else:  # content term q_lat · c_kv plus position term q_pe · k_pe
        scores = (q_lat.reshape(B, H * T, Dc) @ c_kv.transpose(1, 2)
                  + q_pe.reshape(B, H * T, -1) @ k_pe.transpose(1, 2))
    scores = (scores * scale).view(B, H, T, S)  # (B, H, T, S)
    mask = causal_mask(T, S, q_lat.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, H, T, S)
    return (weights.view(B, H * T, S) @ c_kv).view(B, H, T, Dc)  # (B, H, T, Dc)


def absorbed_attention_sdpa(q_lat: torch.Tensor, q_pe: torch.Tensor, c_kv: torch.Tensor,
                            k_pe: torch.Tensor, scale: float) -> torch.Tensor:
    """The same thing through the fused kernel, as multi-query attention: one shared key
    [c_kv; k_pe] (width Dc + Dr) and one shared value c_kv (width Dc) for the H·T query rows
    [q_lat; q_pe]; the causal mask is repeated for each head's block of T rows."""
    B, H, T, Dc = q_lat.shape
    S = c_kv.shape[1]
    q = torch.cat([q_lat, q_pe], dim=-1).reshape(B, 1, H * T, -1)  # (B, 1, H·T, Dc + Dr)
    k = torch.cat([c_kv, k_pe], dim=-1).unsqueeze(1)  # (B, 1, S, Dc + Dr)
    mask = causal_mask(T, S, q_lat.device)
    mask = None if mask is None else mask.repeat(H, 1)  # (H·T, S): row h·T + t is query t of head h
    out = F.scaled_dot_product_attention(q, k, c_kv.unsqueeze(1), attn_mask=mask, scale=scale)
    return out.view(B, H, T, Dc)  # (B, H, T, Dc)


class MLA(nn.Module):
    """Multi-head latent attention; ``forward(x, cos, sin, cache=None)`` like ``helpers.attention.Attention``.

    ``cos``/``sin`` are the RoPE tables for the current positions, ``(T, Dr)``. With a cache, the
    ``"absorbed"`` and ``"latent"`` modes call ``cache.update(layer_idx, c_kv, k_pe)`` with
    ``(B, T, Dc)`` and ``(B, T, Dr)``; ``"kv"`` stores ``(k, v)``. Don't switch a cache between
    ``"kv"`` and the other two modes mid-sequence (they store different tensors).
    """

    def __init__(self, cfg: ModelConfig, layer_idx: int = 0, mode: str = "absorbed"):
        super().__init__()
        if cfg.qk_rope_head_dim <= 0:
            raise ValueError(f"qk_rope_head_dim={cfg.qk_rope_head_dim}: MLA needs a decoupled RoPE part "
                             "(DeepSeek-V3 uses 64); without one the model has no position signal")
        self.layer_idx = layer_idx
        self.mode = check_mla_mode(mode)
        self.impl = cfg.attn_impl
        self.dim, self.n_heads = cfg.dim, cfg.n_heads
        self.q_lora_rank, self.kv_lora_rank = cfg.q_lora_rank, cfg.kv_lora_rank
        self.nope_dim, self.rope_dim, self.v_dim = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
        self.qk_dim = self.nope_dim + self.rope_dim  # Dn + Dr
        self.softmax_scale = self.qk_dim ** -0.5  # 1/sqrt(Dn + Dr); YaRN would multiply by mscale²
        H = self.n_heads
        if self.q_lora_rank == 0:
            self.wq = nn.Linear(self.dim, H * self.qk_dim, bias=False)  # W_Q: D → H·(Dn+Dr)
        else:
            self.wq_a = nn.Linear(self.dim, self.q_lora_rank, bias=False)  # W_DQ: D → Dq
            self.q_norm = RMSNorm(self.q_lora_rank, cfg.norm_eps)
            self.wq_b = nn.Linear(self.q_lora_rank, H * self.qk_dim, bias=False)  # W_UQ (+ W_QR)
        # W_DKV (D → Dc) and W_KR (D → Dr), fused: D → Dc + Dr
        self.wkv_a = nn.Linear(self.dim, self.kv_lora_rank + self.rope_dim, bias=False)
        self.kv_norm = RMSNorm(self.kv_lora_rank, cfg.norm_eps)
        # [W_UK; W_UV]: Dc → H·(Dn + Dv), rows grouped per head as [k_nope (Dn); v (Dv)]
        self.wkv_b = nn.Linear(self.kv_lora_rank, H * (self.nope_dim + self.v_dim), bias=False)
        self.wo = nn.Linear(H * self.v_dim, self.dim, bias=False)  # W_O: H·Dv → D

    # --- the projections --------------------------------------------------------------------------
    def queries(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """q_nope (B, H, T, Dn) and the rotated q_pe (B, H, T, Dr)."""
        B, T, _ = x.shape
        q = self.wq(x) if self.q_lora_rank == 0 else self.wq_b(self.q_norm(self.wq_a(x)))  # (B, T, H·(Dn+Dr))
        q = q.view(B, T, self.n_heads, self.qk_dim).transpose(1, 2)  # (B, H, T, Dn + Dr)
        q_nope, q_pe = q.split([self.nope_dim, self.rope_dim], dim=-1)
        return q_nope, apply_rope(q_pe, cos, sin)

    def latents(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """What the cache stores: the normalised latent c_kv (B, T, Dc) and the rotated k_pe (B, T, Dr)."""
        c_kv, k_pe = self.wkv_a(x).split([self.kv_lora_rank, self.rope_dim], dim=-1)
        return self.kv_norm(c_kv), apply_rope(k_pe, cos, sin)

    def up_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W_UK (H, Dn, Dc) and W_UV (H, Dv, Dc): the two halves of wkv_b, per head."""
        w = self.wkv_b.weight.view(self.n_heads, self.nope_dim + self.v_dim, self.kv_lora_rank)
        return w[:, :self.nope_dim], w[:, self.nope_dim:]

    def expand(self, c_kv: torch.Tensor, k_pe: torch.Tensor):
        """Per-head keys (B, H, S, Dn + Dr) and values (B, H, S, Dv) rebuilt from the latents."""
        B, S, _ = c_kv.shape
        kv = self.wkv_b(c_kv).view(B, S, self.n_heads, self.nope_dim + self.v_dim).transpose(1, 2)
        k_nope, v = kv.split([self.nope_dim, self.v_dim], dim=-1)  # (B, H, S, Dn), (B, H, S, Dv)
        k_pe = k_pe.unsqueeze(1).expand(B, self.n_heads, S, self.rope_dim)  # (B, H, S, Dr): shared
        return torch.cat([k_nope, k_pe], dim=-1), v  # (B, H, S, Dn + Dr), (B, H, S, Dv)

    # --- the three paths --------------------------------------------------------------------------
    def attend_expanded(self, q_nope, q_pe, k, v) -> torch.Tensor:
        """Plain attention over per-head K (B, H, S, Dn + Dr) and V (B, H, S, Dv): modes kv and latent."""
        q = torch.cat([q_nope, q_pe], dim=-1)  # (B, H, T, Dn + Dr)
        return attend(q, k, v, self.impl, self.softmax_scale)  # (B, H, T, Dv)

    def attend_absorbed(self, q_nope, q_pe, c_kv, k_pe) -> torch.Tensor:
        w_uk, w_uv = self.up_weights()
        q_lat = torch.einsum("bhtn,hnc->bhtc", q_nope, w_uk)  # (B, H, T, Dc): W_UK folded into q
        if self.impl == "fused":  # one pass over the latents per decode step (helpers.fused_mla)
            from .fused_mla import absorbed_attention_fused as fn
        else:
            fn = absorbed_attention_explicit if self.impl == "explicit" else absorbed_attention_sdpa
        o_lat = fn(q_lat, q_pe, c_kv, k_pe, self.softmax_scale)  # (B, H, T, Dc)
        return torch.einsum("bhtc,hvc->bhtv", o_lat, w_uv)  # (B, H, T, Dv): W_UV after the sum

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache=None,
                mode: str | None = None) -> torch.Tensor:
        mode = check_mla_mode(mode or self.mode)
        check_activations(x, self.dim, self.wkv_a.weight)
        B, T, _ = x.shape
        check_rope_tables(cos, sin, T, self.rope_dim)
        q_nope, q_pe = self.queries(x, cos, sin)  # (B, H, T, Dn), (B, H, T, Dr)
        c_kv, k_pe = self.latents(x, cos, sin)  # (B, T, Dc), (B, T, Dr)
        if mode == "kv":
            k, v = self.expand(c_kv, k_pe)  # only the new positions
            if cache is not None:
                k, v = cache.update(self.layer_idx, k, v)  # (B, H, S, Dn + Dr), (B, H, S, Dv)
            out = self.attend_expanded(q_nope, q_pe, k, v)
        else:
            if cache is not None:
                c_kv, k_pe = cache.update(self.layer_idx, c_kv, k_pe)  # (B, S, Dc), (B, S, Dr)
            if mode == "latent":
                out = self.attend_expanded(q_nope, q_pe, *self.expand(c_kv, k_pe))  # every step, all S
            else:
                out = self.attend_absorbed(q_nope, q_pe, c_kv, k_pe)
        return self.wo(out.transpose(1, 2).reshape(B, T, self.n_heads * self.v_dim))  # (B, T, D)


def set_mla_mode(model: nn.Module, mode: str) -> int:
    """Switch every MLA layer of ``model`` to ``mode``; returns how many layers were switched."""
    check_mla_mode(mode)
    layers = [m for m in model.modules() if isinstance(m, MLA)]
    for m in layers:
        m.mode = mode
    return len(layers)
