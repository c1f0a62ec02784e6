"""The pre-norm transformer block and the factories that fill it: ``x + Attn(RMSNorm(x))`` then
``x + FFN(RMSNorm(x))``. The configuration picks each part: ``attn_type="mla"`` swaps in multi-head
latent attention (``helpers.mla``) for MHA/GQA/MQA (``helpers.attention``), and layers from
``n_dense_layers`` on swap the dense MLP for DeepSeekMoE (``helpers.moe``) when ``n_routed_experts > 0``.

Imports go one way: config → layers → attention/mla/moe → dsa → blocks → mtp → model.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .attention import Attention
from .config import ModelConfig
from .dsa import SparseMLA
from .layers import MLP, RMSNorm
from .mla import MLA
from .moe import MoE, MoEResult


def make_attention(cfg: ModelConfig, layer_idx: int) -> nn.Module:
    """MLA (sparse, DSA, when ``index_n_heads > 0``) or MHA/GQA/MQA (by ``n_kv_heads``)."""
    if cfg.is_sparse_attention:
        return SparseMLA(cfg, layer_idx)
    return MLA(cfg, layer_idx) if cfg.attn_type == "mla" else Attention(cfg, layer_idx)


def make_ffn(cfg: ModelConfig, layer_idx: int) -> nn.Module:
    """DeepSeekMoE for the MoE layers, the dense SwiGLU MLP otherwise."""
    return MoE(cfg) if cfg.layer_is_moe(layer_idx) else MLP(cfg.dim, cfg.inter_dim)


class BlockOutput(NamedTuple):
    """What a block returns; unpacks as ``hidden, moe = block(...)``."""

    hidden: torch.Tensor  # (B, T, D) the new residual stream
    moe: MoEResult | None  # the MoE layer's routing result, None for a dense block


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = make_attention(cfg, layer_idx)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = make_ffn(cfg, layer_idx)
        self.is_moe = isinstance(self.ffn, MoE)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache=None,
                **attn_options) -> BlockOutput:
        """``attn_options`` go to the attention as they are (DSA's ``index_topk`` and ``phase``)."""
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, **attn_options)
        if self.is_moe:
            moe = self.ffn(self.ffn_norm(x))
            return BlockOutput(x + moe.out, moe)
        return BlockOutput(x + self.ffn(self.ffn_norm(x)), None)
