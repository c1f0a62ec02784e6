"""Reference solutions for the exercises (used by tests/test_exercises.py; peek only when stuck)."""

from __future__ import annotations

import torch

from ..config import ModelConfig


# --- lesson 00 ---
def l00_param_count(cfg: ModelConfig) -> int:
    D, F, V = cfg.dim, cfg.inter_dim, cfg.vocab_size
    attn = D * cfg.n_heads * cfg.hd * 2 + D * cfg.kv_heads * cfg.hd * 2
    per_layer = attn + 3 * D * F + 2 * D
    head = 0 if cfg.tie_embeddings else V * D
    return V * D + head + cfg.n_layers * per_layer + D


def l00_rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def l00_causal_mask(t: int, s: int) -> torch.Tensor:
    return torch.ones(t, s, dtype=torch.bool).tril(diagonal=s - t)
