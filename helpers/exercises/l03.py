"""Lesson 03 exercises: the MLA cache per token, absorbing W_UV on the value path, folding W_UV into
the output projection. Reference solutions are in ``tests/test_mla.py``."""

from __future__ import annotations

import torch

from ..attention import rope_tables
from ..config import ModelConfig
from ..mla import MLA, mla_cache_bill
from . import Checked, call_or_none, close, not_attempted, report

# (layers l, heads H, Dc, Dn, Dr, Dv, bytes per element): DeepSeek-V3 in bf16, DeepSeek-V2-Lite-like
# sizes in fp8, our tiny MLA in fp32.
CACHE_CASES = [(61, 128, 512, 128, 64, 128, 2), (27, 16, 512, 128, 64, 128, 1), (3, 6, 32, 16, 8, 16, 4)]


def check_mla_cache_bytes(fn) -> Checked:
    """``fn(n_layers, n_heads, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim,
    bytes_per_element)`` → bytes the absorbed MLA cache holds per token (whole model)."""
    name = "MLA cache bytes per token"
    answers = [call_or_none(fn, *case) for case in CACHE_CASES]
    if any(a is None for a in answers):
        return not_attempted(name)
    expected = [mla_cache_bill(*case[:6]).bytes_per_token(case[6]) for case in CACHE_CASES]
    ok = all(isinstance(a, (int, float)) and a == e for a, e in zip(answers, expected))
    hint = "the cache keeps the latent c_kv AND the shared RoPE key k_pe, once per layer (not per head)"
    if answers[0] == 61 * 512 * 2:
        hint = "you forgot the RoPE key k_pe (Dr elements per layer)"
    elif answers[0] == 61 * 128 * (128 + 64 + 128) * 2:
        hint = "that is the expanded per-head K and V; MLA caches only what comes before W_UKV"
    return report(ok, name, hint)


def _layer_and_attention(seed: int = 0):
    """A random MLA layer and, for a sequence, its attention weights and cached latents."""
    torch.manual_seed(seed)
    cfg = ModelConfig(dim=32, n_layers=1, n_heads=4, inter_dim=64, max_seq_len=16, attn_type="mla",
                      kv_lora_rank=24, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=12)
    layer = MLA(cfg)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(2, 7, cfg.dim)
    cos, sin = rope_tables(cfg.qk_rope_head_dim, 7)
    with torch.no_grad():
        q_nope, q_pe = layer.queries(x, cos, sin)
        c_kv, k_pe = layer.latents(x, cos, sin)
        k, v = layer.expand(c_kv, k_pe)
        scores = torch.cat([q_nope, q_pe], -1) @ k.transpose(-1, -2) * layer.softmax_scale
        weights = scores.masked_fill(torch.ones(7, 7).triu(1).bool(), float("-inf")).softmax(-1)
    return layer, x, cos, sin, weights, c_kv, v


def check_value_absorption(fn) -> Checked:
    """``fn(weights, c_kv, wkv_b, n_heads, qk_nope_head_dim, v_head_dim)`` → per-head outputs
    (B, H, T, Dv) equal to ``weights @ V`` — without building V for the cached positions: take the
    weighted sum of the latents first, then apply W_UV once.

    Checked on a decode step (one new query against S cached latents) for the value AND for the work
    done (``torch.utils.flop_counter.FlopCounterMode``): re-expanding V for the S cached positions alone
    costs 2·B·S·H·Dv·Dc FLOPs, more than the whole absorbed path, so a correct but non-absorbed answer
    fails with a hint."""
    from torch.utils.flop_counter import FlopCounterMode

    name = "value-path absorption"
    layer, _, _, _, weights, c_kv, v = _layer_and_attention()
    step = weights[:, :, -1:].contiguous()  # (B, H, 1, S): the last position's query, a decode step
    args = (step, c_kv, layer.wkv_b.weight.detach(), layer.n_heads, layer.nope_dim, layer.v_dim)
    counter = FlopCounterMode(display=False)
    with counter:
        out = call_or_none(fn, *args)
    if out is None:
        return not_attempted(name)
    if not close(out, step @ v, atol=1e-4):
        return report(False, name,
                      "W_UV is rows Dn: Dn+Dv of each head's block of wkv_b (view it as (H, Dn+Dv, Dc)); "
                      "o_lat = weights @ c_kv is (B, H, T, Dc); then multiply by W_UVᵀ per head")
    B, S = c_kv.shape[:2]
    expand = 2 * B * S * layer.n_heads * layer.v_dim * layer.kv_lora_rank  # building V for S positions
    return report(counter.get_total_flops() < expand, name,
                  f"right values, but {counter.get_total_flops():,} FLOPs: building V for the {S} cached "
                  f"positions alone costs {expand:,}. Weight the latents first (weights @ c_kv), then "
                  "apply W_UV once per head")


def check_output_fold(fn) -> Checked:
    """``fn(wkv_b, wo, n_heads, qk_nope_head_dim, v_head_dim)`` → a (D, H·Dc) matrix W such that
    ``o_lat.transpose(1, 2).reshape(B, T, H·Dc) @ W.T`` equals the layer's output: W_UV folded into
    W_O, so the per-head values never exist at all."""
    name = "fold W_UV into W_O"
    layer, x, cos, sin, weights, c_kv, _ = _layer_and_attention(1)
    W = call_or_none(fn, layer.wkv_b.weight.detach(), layer.wo.weight.detach(), layer.n_heads,
                     layer.nope_dim, layer.v_dim)
    if W is None:
        return not_attempted(name)
    B, T = x.shape[:2]
    with torch.no_grad():
        o_lat = weights @ c_kv.unsqueeze(1)  # (B, H, T, Dc)
        expected = layer(x, cos, sin, mode="latent")
        ok = (torch.is_tensor(W) and W.shape == (layer.dim, layer.n_heads * layer.kv_lora_rank)
              and close(o_lat.transpose(1, 2).reshape(B, T, -1) @ W.T, expected, atol=1e-4))
    return report(ok, name, "wo.weight is (D, H·Dv): view it as (D, H, Dv) and contract its Dv with "
                  "W_UV (H, Dv, Dc) for each head, giving (D, H, Dc)")
