"""The two building blocks every other module uses: RMSNorm and the SwiGLU MLP (a dense FFN and
each DeepSeekMoE expert). This module imports nothing from the course but ``torch``, so attention,
MLA, MoE and MTP can all import it without any of them importing the assembled model.

RMSNorm: Zhang & Sennrich 2019. SwiGLU: Shazeer 2020. Shapes follow ``docs/GLOSSARY.md``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · weight, computed in float32 like the reference implementations."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class MLP(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x). DeepSeek's experts use the same shape."""

    def __init__(self, dim: int, inter_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, inter_dim, bias=False)  # gate
        self.w2 = nn.Linear(inter_dim, dim, bias=False)  # down
        self.w3 = nn.Linear(dim, inter_dim, bias=False)  # up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
