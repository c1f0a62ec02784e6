"""Lesson 01 exercises: a cache size by hand, the cache's ``update`` method, per-token int8 quantisation.
(Reference solutions: ``tests/test_kv_cache.py``.)"""

from __future__ import annotations

import torch

from ..config import preset
from ..generate import generate
from ..kv_quant import quantize
from ..lessons.cache_calc import cache_bytes
from ..model import Transformer
from . import Checked, call_or_none, not_attempted, report

# Llama-3-70B (80 layers, G = 8 K/V heads of Dh = 128), 32,768 tokens of context, batch 4, fp16.
SIZE_CASE = dict(model="Llama-3-70B", variant="GQA", context_len=32_768, batch_size=4, dtype="fp16")


def check_cache_size(answer: int | None) -> Checked:
    """Bytes of Llama-3-70B's KV cache at a 32,768-token context, batch 4, fp16."""
    name = "Llama-3-70B cache size"
    if answer is None:
        return not_attempted(name)
    expected = cache_bytes(**SIZE_CASE)
    hint = "per token: 2 (K and V) · layers · K/V heads · head width · bytes, then × tokens × batch"
    if answer * 2 == expected:
        hint = "exactly half: did you count the keys but not the values?"
    elif answer == expected * 8:
        hint = ("8x too much: Llama-3-70B caches G = 8 K/V heads, not its 64 query heads (or did you "
                "count bits instead of bytes?)")
    return report(int(answer) == expected, name, hint)


def check_cache_update(cache_cls) -> Checked:
    """``cache_cls(n_layers)``: a ``KVCache`` subclass whose ``update(layer_idx, k, v)`` stores the new
    positions in ``self.layers[layer_idx]`` and returns the full history."""
    name = "KV cache update"
    torch.manual_seed(0)
    cache = cache_cls(2)
    k1, v1, k2, v2 = (torch.randn(1, 2, t, 4) for t in (3, 3, 1, 1))
    first = call_or_none(cache.update, 0, k1, v1)
    if first is None:
        return not_attempted(name)
    second = cache.update(0, k2, v2)
    ok = (isinstance(second, tuple) and len(second) == 2 and torch.equal(second[0], torch.cat([k1, k2], 2))
          and torch.equal(second[1], torch.cat([v1, v2], 2)) and cache.length == 4)
    if ok:  # a real model with it generates what the uncached reference generates
        model = Transformer(preset("test")).eval()
        idx = torch.randint(0, 256, (2, 5))
        ok = torch.equal(generate(model, idx, 6, cache=cache_cls(model.config.n_layers)),
                         generate(model, idx, 6, use_cache=False))
    return report(ok, name, "concatenate the old and new tensors on the sequence dim (-2), keep the "
                  "result in self.layers[layer_idx] and return it; the first update has nothing to join")


def check_quantize_per_token(fn) -> Checked:
    """``fn(x)`` for x (..., S, Dh) → (q, scale): int8 q of x's shape and scale (..., S, 1) with
    q · scale ≈ x, symmetric, max |q| = 127."""
    name = "int8 per-token quantisation"
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 8) * torch.rand(2, 3, 5, 1) * 4
    out = call_or_none(fn, x)
    if out is None:
        return not_attempted(name)
    ref = quantize(x, "token")
    ok = (isinstance(out, tuple) and len(out) == 2 and torch.is_tensor(out[0]) and out[0].dtype == torch.int8
          and out[0].shape == x.shape and torch.is_tensor(out[1]) and out[1].shape == ref.scale.shape
          and torch.allclose(out[1], ref.scale) and (out[0] - ref.q).abs().max().item() <= 1
          and ((out[0].float() * out[1] - x).abs() <= out[1] / 2 * (1 + 1e-5)).all().item())
    return report(ok, name, "scale = max|x| over the last dim (keepdim) / 127; q = round(x / scale) "
                  "clamped to ±127, as int8")

