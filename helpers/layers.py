"""The two building blocks every other module uses: RMSNorm and the SwiGLU MLP (a dense FFN and
each DeepSeekMoE expert). This module imports nothing from the course but ``torch``, so attention,
MLA, MoE and MTP can all import it without any of them importing the assembled model.

RMSNorm: Zhang & Sennrich 2019. SwiGLU: Shazeer 2020. Shapes follow ``docs/GLOSSARY.md``.

Two paths, tested equal (``tests/test_layers.py``): the formulas written out (``reference``), used for
training and ordinary evaluation, and a decode path taken under ``torch.inference_mode()`` (which
``helpers.generate`` uses) that does the same arithmetic in fewer operator calls: RMSNorm as one fused
``F.rms_norm``, the MLP's gate and up projections as one matrix product with a stacked, transposed
weight (``stacked_weight``). A decode
step of a small model is a few hundred tiny operator calls, each costing microseconds of framework
overhead, so the call count, not the arithmetic, sets its speed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def derived_weight(owner: nn.Module, name: str, weights: tuple, build) -> torch.Tensor:
    """``build()``, a tensor made from the tensors ``weights``, kept on ``owner`` under ``name`` and
    rebuilt only when one of them changes (another tensor, or an in-place update such as an optimiser
    step, which bumps the tensor's ``_version``), so a decode loop builds it once. Kept in a plain
    attribute: not a parameter, not saved."""
    if any(w.is_inference() for w in weights):  # made under inference_mode: no version to watch,
        return build()  # so build it afresh every time (still correct)
    key = tuple((w.data_ptr(), w._version, w.dtype) for w in weights)
    store = owner.__dict__.setdefault("_stacked_weights", {})
    slot = (name, *(id(w) for w in weights))
    cached = store.get(slot)
    if cached is None or cached[0] != key:
        cached = store[slot] = (key, build())
    return cached[1]


def stacked_weight(owner: nn.Module, *linears: nn.Linear) -> torch.Tensor:
    """The weights of ``linears`` stacked along the output dimension and stored transposed, ``(in, Σ
    out)``, contiguous: ``x @ stacked_weight(...)`` computes all of their outputs side by side, as
    ``torch.cat([lin(x) for lin in linears], -1)`` does, in one matrix product.

    Why transposed: a decode step multiplies ONE row vector by each weight, and for that product
    torch's CPU kernels stream an ``(in, out)`` row-major matrix about 30% faster than the ``(out,
    in)`` layout ``nn.Linear`` keeps (measured over weights too big for the caches). Kept on ``owner``
    by ``derived_weight`` (rebuilt only when a weight changes); it is a copy, so the decode path holds
    its weights twice."""
    weights = tuple(lin.weight for lin in linears)
    return derived_weight(owner, "stacked", weights, lambda: torch.cat(weights).t().contiguous())


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · weight, computed in float32 like the reference implementations."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_inference_mode_enabled() and x.dtype == self.weight.dtype == torch.float32:
            # decode path: the same formula as ONE fused operator instead of seven
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        return self.reference(x)


class MLP(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x). DeepSeek's experts use the same shape."""

    def __init__(self, dim: int, inter_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, inter_dim, bias=False)  # gate
        self.w2 = nn.Linear(inter_dim, dim, bias=False)  # down
        self.w3 = nn.Linear(dim, inter_dim, bias=False)  # up

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_inference_mode_enabled():
            return self.reference(x)
        # decode path: gate and up from one product with [w1; w3]
        gate, up = (x @ stacked_weight(self, self.w1, self.w3)).chunk(2, dim=-1)  # (..., I) each
        return (F.silu(gate) * up) @ stacked_weight(self, self.w2)  # (..., D)
