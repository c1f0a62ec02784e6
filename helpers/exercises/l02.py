"""Lesson 02 exercises: the cache bytes per token, repeat K/V heads so MHA code runs GQA, mean-pool
K/V heads for uptraining."""

from __future__ import annotations

import torch

from ..attention import explicit_attention
from ..kv_cache import kv_elements_per_token
from ..lessons.gqa import pool_heads
from . import Checked, call_or_none, close, not_attempted, report

# (layers l, K/V heads G, head width Dh, bytes per element): Llama-3-8B in bf16, its MHA sibling
# Llama-2-7B in fp16, our small preset as MQA in fp32, an int8 cache.
CACHE_CASES = [(32, 8, 128, 2), (32, 32, 128, 2), (4, 1, 32, 4), (80, 8, 128, 1)]


def check_cache_bytes(fn) -> Checked:
    """``fn(n_layers, n_kv_heads, head_dim, bytes_per_element)`` → cache bytes per token."""
    name = "cache bytes per token"
    answers = [call_or_none(fn, *case) for case in CACHE_CASES]
    if any(a is None for a in answers):
        return not_attempted(name)
    ok = all(int(a) == kv_elements_per_token(l, g, dh) * b for a, (l, g, dh, b) in zip(answers, CACHE_CASES))
    return report(ok, name, "a token stores a key AND a value vector for each K/V head in every layer")


def check_repeat_kv(fn) -> Checked:
    """``fn(k, n_rep)``: (B, G, S, Dh) → (B, G·n_rep, S, Dh) such that plain MHA on the repeated keys
    and values gives grouped-query attention."""
    name = "repeat K/V heads"
    torch.manual_seed(0)
    B, H, G, T, Dh = 2, 6, 2, 5, 8
    q, k, v = torch.randn(B, H, T, Dh), torch.randn(B, G, T, Dh), torch.randn(B, G, T, Dh)
    k_rep, v_rep = call_or_none(fn, k, H // G), call_or_none(fn, v, H // G)
    if k_rep is None or v_rep is None:
        return not_attempted(name)
    ok = (torch.is_tensor(k_rep) and k_rep.shape == (B, H, T, Dh)
          and close(explicit_attention(q, k_rep, v_rep), explicit_attention(q, k, v)))
    return report(ok, name, "query head h reads K/V head h // (H/G): repeat each head n_rep times in "
                  "place (kv0, kv0, kv0, kv1, ...), not the whole stack (kv0, kv1, kv0, kv1, ...)")


def check_mean_pool(fn) -> Checked:
    """``fn(weight, n_from, n_to, head_dim)``: pool a K or V projection (n_from·Dh, D) into n_to heads."""
    name = "mean-pool K/V heads"
    torch.manual_seed(0)
    cases = [(6, 2, 4, 12), (4, 1, 8, 16), (4, 4, 8, 16)]
    ok = True
    for n_from, n_to, dh, d in cases:
        w = torch.randn(n_from * dh, d)
        out = call_or_none(fn, w, n_from, n_to, dh)
        if out is None:
            return not_attempted(name)
        ok &= close(out, pool_heads(w, n_from, n_to, dh, "mean"))
    return report(ok, name, "view the rows as (n_to, n_from/n_to, Dh, D) and average over the heads of "
                  "each group (dimension 1)")
