"""Lesson 00 exercises: count the parameters, write RMSNorm, build the causal mask."""

from __future__ import annotations

import torch

from ..attention import causal_mask
from ..config import ModelConfig
from ..model import RMSNorm, Transformer
from . import Checked, call_or_none, close, not_attempted, report


def check_param_count(answer: int | None, cfg: ModelConfig) -> Checked:
    name = "parameter count"
    if answer is None:
        return not_attempted(name)
    expected = Transformer(cfg).num_params()
    return report(int(answer) == expected, name,
                  f"you said {answer:,}; count the embedding, the untied head, per layer "
                  "wq, wk, wv, wo, w1, w2, w3 and two norm weights, and the final norm")


def check_rmsnorm(fn) -> Checked:
    """``fn(x, weight, eps)`` must equal RMSNorm."""
    name = "RMSNorm"
    torch.manual_seed(0)
    w = torch.rand(16) + 0.5
    # ordinary activations, and small ones where eps is not negligible: an answer that leaves eps out,
    # or adds it outside the square root, passes the first case and fails the second
    cases = [(torch.randn(3, 5, 16), 1e-6), (1e-2 * torch.randn(3, 5, 16), 1e-3)]
    ok = True
    for x, eps in cases:
        out = call_or_none(fn, x, w, eps)
        if out is None:
            return not_attempted(name)
        ref = RMSNorm(16, eps)
        with torch.no_grad():
            ref.weight.copy_(w)
        ok &= close(out, ref(x))
    return report(ok, name, "divide x by the square root of (the mean of its squares over the last dim "
                  "plus eps), then multiply by weight")


def check_causal_mask(fn) -> Checked:
    """``fn(t, s)``: boolean (t, s) mask, True where the query may attend, queries the last t of s."""
    name = "causal mask"
    cases = [(4, 4), (1, 6), (3, 7)]
    answers = [call_or_none(fn, t, s) for t, s in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    ok = True
    for (t, s), a in zip(cases, answers):
        ref = causal_mask(t, s)
        ref = torch.ones(t, s, dtype=torch.bool) if ref is None else ref
        ok &= torch.is_tensor(a) and a.shape == ref.shape and torch.equal(a.bool(), ref)
    return report(ok, name, "query i sits at position s - t + i and may see keys 0 .. s - t + i")
