"""Lesson 03 figures: MLA's cache bill and the decode speed of weight absorption (``helpers.mla``).

Decode is timed for ONE attention layer, batch 1, one new token against ``CONTEXT`` cached positions,
on ``helpers.pick_device()`` in float32, for three implementations of the same function side by side:

* ours ``"absorbed"``: attends over the cached latents, never expands them;
* ours ``"latent"``: rebuilds the per-head K and V of all cached positions from the latents every step;
* Hugging Face ``DeepseekV3Attention`` (eager) with our layer's weights, which also caches the latents
  and expands them every step (transformers >= 5.15), i.e. the same algorithm as our latent path.

Both caches are filled with the same latents (computed once, not timed) and each timed call appends
one position and crops it off again, so every call sees exactly ``CONTEXT`` cached positions plus one.
The three take turns (``helpers.timing.interleaved``, 2 rounds with ``--quick``, full: 3); each
``..._ms_per_token`` figure is the best (minimum) measurement.
The configuration keeps DeepSeek-V3's per-head shapes (Dc 512, Dr 64, Dn 128, Dv 128, Dq 1536) with
fewer heads (16 instead of 128) and a smaller width, so a CPU run takes seconds.
"""

from __future__ import annotations

import torch

from ..attention import rope_tables
from ..config import ModelConfig
from ..device import pick_device
from ..interop import mla_from_hf, tiny_deepseek_hf_config
from ..kv_cache import KVCache, cache_bill, deepseek_v3_cache_bill
from ..mla import MLA
from ..model import Transformer
from ..timing import interleaved

CONTEXT = 4096
BENCH_SIZES = dict(hidden_size=2048, num_attention_heads=16, num_key_value_heads=16, q_lora_rank=1536,
                   kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                   max_position_embeddings=CONTEXT + 8, num_hidden_layers=1, first_k_dense_replace=1,
                   rope_interleave=True)


def cache_figures() -> dict[str, float]:
    """DeepSeek-V3's bill, and the measured bytes of a tiny MLA model's cache against the formula."""
    v3 = deepseek_v3_cache_bill()
    cfg = ModelConfig(dim=64, n_layers=3, n_heads=4, inter_dim=128, max_seq_len=64, attn_type="mla",
                      q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
                      v_head_dim=16)
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    B, T = 2, 40
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.randint(0, cfg.vocab_size, (B, T)), cache=cache)
    formula = B * T * cache_bill(cfg).bytes_per_token(bytes_per_element=4)
    return {
        "mla.cache_elements_per_token_per_layer": float(v3.latent),
        "mla.kv_cache_elements_per_token_per_layer": float(v3.expanded_kv),
        "mla.cache_reduction_vs_kv": v3.ratio,
        "mla.tiny_cache_bytes_measured": float(cache.nbytes()),
        "mla.tiny_cache_bytes_formula": float(formula),
    }


@torch.no_grad()
def decode_figures(quick: bool, context: int = CONTEXT) -> dict[str, float]:
    from transformers import DynamicCache
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
        DeepseekV3Attention,
        DeepseekV3RotaryEmbedding,
    )

    device = pick_device()
    torch.manual_seed(0)
    hf_cfg = tiny_deepseek_hf_config(**BENCH_SIZES)
    hf = DeepseekV3Attention(hf_cfg, layer_idx=0).to(device).eval()
    ours: MLA = mla_from_hf(hf).eval()
    rotary = DeepseekV3RotaryEmbedding(hf_cfg).to(device)
    cfg_dr = ours.rope_dim
    cos, sin = rope_tables(cfg_dr, context + 1, hf_cfg.rope_parameters["rope_theta"], device=device)

    # The history: latents of `context` random positions, shared by both caches (HF caches the same
    # two tensors, as (B, 1, S, Dc) and (B, 1, S, Dr); its rotated k_rot is in our layout already).
    history = torch.randn(1, context, hf_cfg.hidden_size, device=device)
    c_kv, k_pe = ours.latents(history, cos[:context], sin[:context])  # (1, S, Dc), (1, S, Dr)
    our_cache = KVCache(1)
    our_cache.update(0, c_kv, k_pe)
    hf_cache = DynamicCache(config=hf_cfg)
    hf_cache.update(c_kv.unsqueeze(1), k_pe.unsqueeze(1), 0)
    x = torch.randn(1, 1, hf_cfg.hidden_size, device=device)
    hf_pos = rotary(x, torch.tensor([[context]], device=device))

    def ours_step(mode: str):
        def step():
            out = ours(x, cos[context:], sin[context:], cache=our_cache, mode=mode)
            our_cache.crop(context)
            return out
        return step

    def hf_step():
        out = hf(x, hf_pos, None, cache=hf_cache)[0]
        hf_cache.crop(-1)  # drop the appended position (negative = tokens to remove)
        return out

    outs = {"absorbed": ours_step("absorbed")(), "latent": ours_step("latent")(), "hf": hf_step()}
    max_diff = max((outs[k] - outs["hf"]).abs().max().item() for k in ("absorbed", "latent"))
    fns = {"absorbed": ours_step("absorbed"), "latent": ours_step("latent"), "hf": hf_step}
    timings = interleaved(fns, rounds=2 if quick else 3, min_run_time=0.05 if quick else 0.5)
    best = {name: t.min for name, t in timings.items()}
    at = f"@{context}"
    return {
        f"mla.absorbed_ms_per_token{at}": best["absorbed"] * 1e3,
        f"mla.latent_ms_per_token{at}": best["latent"] * 1e3,
        f"mla.hf_ms_per_token{at}": best["hf"] * 1e3,
        f"mla.absorb_speedup{at}": best["latent"] / best["absorbed"],
        "mla.ours_over_hf": best["absorbed"] / best["hf"],
        "mla.latent_over_hf": best["latent"] / best["hf"],
        "mla.max_abs_diff_vs_hf": max_diff,
    }


def run(quick: bool) -> dict[str, float]:
    return {**cache_figures(), **decode_figures(quick)}
