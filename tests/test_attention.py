"""helpers.attention: the readable and the fused path agree; G = H is plain MHA; our grouping is
PyTorch's ``enable_gqa``; RoPE keeps relative positions."""

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from helpers.attention import (
    Attention,
    apply_rope,
    causal_mask,
    explicit_attention,
    rope_tables,
    sdpa_attention,
)
from helpers.config import preset
from helpers.kv_cache import KVCache, StaticKVCache

HEADS = [(4, 4), (4, 2), (4, 1)]  # (H, G): MHA, GQA, MQA
IDS = ["mha", "gqa", "mqa"]
# (T new queries, S keys): a full sequence, a chunk after a cached prefix, one decode step
OFFSETS = [(12, 12), (5, 12), (1, 12)]


def has_enable_gqa() -> bool:
    try:
        return "enable_gqa" in inspect.signature(F.scaled_dot_product_attention).parameters
    except (TypeError, ValueError):  # a builtin without a readable signature: just try it
        q = torch.zeros(1, 2, 1, 4)
        try:
            F.scaled_dot_product_attention(q, q[:, :1], q[:, :1], enable_gqa=True)
        except TypeError:
            return False
        return True


def plain_mha(q, k, v):
    """Textbook multi-head attention, one head at a time, with the causal mask for the last T of S."""
    T, S = q.shape[2], k.shape[2]
    heads = []
    for h in range(q.shape[1]):
        scores = q[:, h] @ k[:, h].transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, T, S)
        allowed = torch.arange(S)[None, :] <= torch.arange(S - T, S)[:, None]  # (T, S)
        heads.append(scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v[:, h])  # (B, T, Dh)
    return torch.stack(heads, dim=1)  # (B, H, T, Dh)


@pytest.mark.parametrize("t,s", OFFSETS, ids=["full", "chunk", "decode"])
@pytest.mark.parametrize("h,g", HEADS, ids=IDS)
def test_explicit_equals_sdpa(h, g, t, s):
    q, k, v = torch.randn(2, h, t, 16), torch.randn(2, g, s, 16), torch.randn(2, g, s, 16)
    torch.testing.assert_close(explicit_attention(q, k, v), sdpa_attention(q, k, v), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("t,s", OFFSETS, ids=["full", "chunk", "decode"])
@pytest.mark.parametrize("h,g", HEADS, ids=IDS)
def test_grouped_equals_mha_on_repeated_heads(h, g, t, s):
    """GQA is MHA whose K/V heads come in identical runs of H/G: query head i reads K/V head i // (H/G)."""
    q, k, v = torch.randn(2, h, t, 8), torch.randn(2, g, s, 8), torch.randn(2, g, s, 8)
    k_rep, v_rep = k.repeat_interleave(h // g, dim=1), v.repeat_interleave(h // g, dim=1)  # (B, H, S, Dh)
    torch.testing.assert_close(explicit_attention(q, k, v), plain_mha(q, k_rep, v_rep), atol=1e-6, rtol=1e-5)


def test_g_equals_h_is_plain_mha_exactly():
    q, k, v = torch.randn(2, 4, 10, 8), torch.randn(2, 4, 10, 8), torch.randn(2, 4, 10, 8)
    scores = (q @ k.transpose(-1, -2) * (1 / math.sqrt(8))).masked_fill(~causal_mask(10, 10), float("-inf"))
    expected = scores.softmax(-1) @ v  # the same operations in the same order: bit-identical
    assert torch.equal(explicit_attention(q, k, v), expected)
    torch.testing.assert_close(explicit_attention(q, k, v), plain_mha(q, k, v), atol=1e-6, rtol=1e-5)


def test_model_with_g_equal_h_is_the_mha_model():
    """n_kv_heads=H builds the very same model as the default n_kv_heads=None (same weights, same logits)."""
    from helpers.model import Transformer

    idx = torch.randint(0, 256, (2, 16))
    torch.manual_seed(3)
    mha = Transformer(preset("test"))
    torch.manual_seed(3)
    g_eq_h = Transformer(preset("test", n_kv_heads=preset("test").n_heads))
    assert all(torch.equal(a, b) for a, b in zip(mha.state_dict().values(), g_eq_h.state_dict().values()))
    assert torch.equal(mha(idx), g_eq_h(idx))


@pytest.mark.skipif(not has_enable_gqa(), reason="this torch's scaled_dot_product_attention lacks enable_gqa")
@pytest.mark.parametrize("t,s", OFFSETS, ids=["full", "chunk", "decode"])
@pytest.mark.parametrize("h,g", HEADS[1:], ids=IDS[1:])
def test_ours_equals_torch_enable_gqa(h, g, t, s):
    q, k, v = torch.randn(2, h, t, 16), torch.randn(2, g, s, 16), torch.randn(2, g, s, 16)
    mask = torch.arange(s)[None, :] <= torch.arange(s - t, s)[:, None]  # (T, S): queries are the last T
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    torch.testing.assert_close(explicit_attention(q, k, v), theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("g", [4, 2, 1], ids=IDS)
def test_module_with_cache_offsets(g, static):
    """Attention over a prefix in the cache, then a chunk, then one token, equals the full sequence,
    on both paths."""
    cfg = preset("test", n_kv_heads=g)
    attn = Attention(cfg).eval()
    x = torch.randn(2, 12, cfg.dim)
    cos, sin = rope_tables(cfg.hd, cfg.max_seq_len)
    with torch.no_grad():
        full = attn(x, cos[:12], sin[:12], impl="explicit")
        torch.testing.assert_close(attn(x, cos[:12], sin[:12], impl="sdpa"), full, atol=1e-5, rtol=1e-5)
        for impl in ("explicit", "sdpa"):
            cache = StaticKVCache(1, 12) if static else KVCache(1)
            parts = [attn(x[:, a:b], cos[a:b], sin[a:b], cache=cache, impl=impl)
                     for a, b in [(0, 7), (7, 11), (11, 12)]]
            torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
            k_cached = cache.layers[0][0]
            assert k_cached.shape == (2, g, 12, cfg.hd)  # the cache holds G heads, not H


def test_attention_weights_are_causal_distributions():
    cfg = preset("test", n_kv_heads=2)
    attn = Attention(cfg)
    cos, sin = rope_tables(cfg.hd, 10)
    w = attn.attention_weights(torch.randn(2, 10, cfg.dim), cos, sin)
    assert w.shape == (2, cfg.n_heads, 10, 10)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, cfg.n_heads, 10))
    assert torch.all(w.masked_select(~causal_mask(10, 10)) == 0)


def test_rope_scores_depend_on_offset_only():
    cos, sin = rope_tables(16, 64)
    q, k = torch.randn(16), torch.randn(16)

    def score(i, j):
        return apply_rope(q, cos[i], sin[i]) @ apply_rope(k, cos[j], sin[j])

    torch.testing.assert_close(score(9, 4), score(40, 35), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(score(9, 4), score(9, 0), atol=1e-4)


@pytest.mark.parametrize("g", [4, 2, 1], ids=IDS)
def test_fused_projection_equals_readable(g):
    """project_fused (one stacked matmul, RoPE on q and k together) == project (three matmuls)."""
    from testkit import randomise

    cfg = preset("test", n_kv_heads=g)
    attn = randomise(Attention(cfg))
    x = torch.randn(2, 7, cfg.dim)
    cos, sin = rope_tables(cfg.hd, 16)
    c, s = cos[3:10], sin[3:10]
    with torch.no_grad():
        for fast, slow in zip(attn.project_fused(x, c, s), attn.project(x, c, s)):
            assert fast.shape == slow.shape
            torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("g", [4, 2, 1], ids=IDS)
def test_decode_path_with_cache_equals_readable(g):
    """Under inference_mode the layer takes the fused projection; with a cache, step by step, it gives
    what the readable path gives."""
    from testkit import randomise

    cfg = preset("test", n_kv_heads=g)
    attn = randomise(Attention(cfg))
    x = torch.randn(2, 9, cfg.dim)
    cos, sin = rope_tables(cfg.hd, 16)
    outs = {}
    for name, mode in (("readable", torch.no_grad), ("fused", torch.inference_mode)):
        cache = StaticKVCache(1, 9)
        with mode():
            outs[name] = torch.cat([attn(x[:, a:b], cos[a:b], sin[a:b], cache=cache)
                                    for a, b in [(0, 6), (6, 7), (7, 8), (8, 9)]], dim=1)
    torch.testing.assert_close(outs["fused"], outs["readable"], atol=1e-5, rtol=1e-5)
