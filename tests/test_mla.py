"""MLA: absorbed == latent == expanded-KV, cache contents and bytes, RoPE only on Dr (the Hugging Face
parity checks are in test_interop_deepseek.py, the exercises in test_exercises.py)."""

import pytest
import torch
from testkit import randomise

from helpers.attention import apply_rope, rope_tables
from helpers.config import preset
from helpers.generate import generate
from helpers.kv_cache import KVCache, mla_elements_per_token
from helpers.mla import (
    MLA,
    cache_bill,
    cache_table,
    deepseek_v3_cache_bill,
    mla_cache_bill,
    set_mla_mode,
)
from helpers.model import Transformer

CONFIGS = {
    "no-q-lora": preset("test", attn_type="mla"),
    "q-lora": preset("test", attn_type="mla", q_lora_rank=24),
    "wide-latent-dv": preset("test", attn_type="mla", q_lora_rank=16, kv_lora_rank=48,
                             qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=12, n_heads=2),
}


def layer_and_inputs(cfg, B=2, T=11):
    layer = randomise(MLA(cfg, 0))
    cos, sin = rope_tables(cfg.qk_rope_head_dim, cfg.max_seq_len, cfg.rope_theta)
    return layer, torch.randn(B, T, cfg.dim), cos, sin


@pytest.mark.parametrize("impl", ["sdpa", "explicit"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_absorbed_equals_latent_equals_kv(name, impl):
    cfg = CONFIGS[name].replace(attn_impl=impl)
    layer, x, cos, sin = layer_and_inputs(cfg)
    T = x.shape[1]
    latent = layer(x, cos[:T], sin[:T], mode="latent")
    for mode in ["absorbed", "kv"]:
        torch.testing.assert_close(layer(x, cos[:T], sin[:T], mode=mode), latent, atol=1e-5, rtol=1e-5)
    # and the check can fail: a different W_UK in the absorbed path changes the output
    with torch.no_grad():
        layer.wkv_b.weight[: cfg.qk_nope_head_dim] += 0.5
    assert not torch.allclose(layer(x, cos[:T], sin[:T], mode="absorbed"), latent, atol=1e-3)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_explicit_equals_sdpa(name):
    cfg = CONFIGS[name]
    layer, x, cos, sin = layer_and_inputs(cfg)
    T = x.shape[1]
    for mode in ["absorbed", "latent"]:
        fused = layer(x, cos[:T], sin[:T], mode=mode)
        layer.impl = "explicit"
        torch.testing.assert_close(layer(x, cos[:T], sin[:T], mode=mode), fused, atol=1e-5, rtol=1e-5)
        layer.impl = "sdpa"


@pytest.mark.parametrize("mode", ["absorbed", "latent", "kv"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_cached_decoding_equals_full_sequence(name, mode):
    """Prefill 4 positions, then decode 7 single steps: every step equals the uncached output."""
    cfg = CONFIGS[name]
    layer, x, cos, sin = layer_and_inputs(cfg)
    full = layer(x, cos[: x.shape[1]], sin[: x.shape[1]], mode="latent")
    cache, P = KVCache(1), 4
    steps = [layer(x[:, :P], cos[:P], sin[:P], cache=cache, mode=mode)]
    for t in range(P, x.shape[1]):
        steps.append(layer(x[:, t:t + 1], cos[t:t + 1], sin[t:t + 1], cache=cache, mode=mode))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == x.shape[1]


@pytest.mark.parametrize("mode", ["absorbed", "latent"])
@pytest.mark.parametrize("q_lora_rank", [0, 24])
def test_generate_cached_equals_uncached(mode, q_lora_rank):
    model = randomise(Transformer(preset("test", attn_type="mla", q_lora_rank=q_lora_rank)), std=0.1)
    assert set_mla_mode(model, mode) == model.config.n_layers
    prompt = torch.randint(0, model.config.vocab_size, (2, 5))
    cached = generate(model, prompt, 12, return_logits=True)
    uncached = generate(model, prompt, 12, use_cache=False, return_logits=True)
    assert torch.equal(cached.tokens, uncached.tokens)
    torch.testing.assert_close(cached.step_logits, uncached.step_logits, atol=1e-4, rtol=1e-4)


def test_gradients_agree_between_paths():
    """Training through the absorbed path gives the latent path's gradients (same function)."""
    cfg = CONFIGS["q-lora"]
    layer, x, cos, sin = layer_and_inputs(cfg)
    T = x.shape[1]
    grads = {}
    for mode in ["latent", "absorbed"]:
        layer.zero_grad()
        layer(x, cos[:T], sin[:T], mode=mode).square().sum().backward()
        grads[mode] = {n: p.grad.clone() for n, p in layer.named_parameters()}
    for n, g in grads["latent"].items():
        torch.testing.assert_close(grads["absorbed"][n], g, atol=1e-4, rtol=1e-4, msg=n)


def test_cache_stores_only_the_latent_and_the_rope_key():
    cfg = CONFIGS["q-lora"]
    layer, x, cos, sin = layer_and_inputs(cfg, B=3, T=6)
    for mode in ["absorbed", "latent"]:
        cache = KVCache(1)
        layer(x, cos[:6], sin[:6], cache=cache, mode=mode)
        c_kv, k_pe = cache.layers[0]
        assert c_kv.shape == (3, 6, cfg.kv_lora_rank) and k_pe.shape == (3, 6, cfg.qk_rope_head_dim)
    cache = KVCache(1)
    layer(x, cos[:6], sin[:6], cache=cache, mode="kv")
    k, v = cache.layers[0]
    H, Dn, Dr, Dv = cfg.n_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
    assert k.shape == (3, H, 6, Dn + Dr) and v.shape == (3, H, 6, Dv)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode", ["absorbed", "latent", "kv"])
def test_measured_cache_bytes_equal_formula(mode, dtype):
    cfg = preset("test", attn_type="mla", q_lora_rank=16, n_layers=3)
    model = Transformer(cfg).to(dtype)
    set_mla_mode(model, mode)
    B, T = 2, 9
    cache = model.new_cache()
    model(torch.randint(0, cfg.vocab_size, (B, T)), cache=cache)
    model(torch.randint(0, cfg.vocab_size, (B, 1)), cache=cache)
    bill = cache_bill(cfg)
    per_token = bill.bytes_per_token(torch.finfo(dtype).bits // 8, mode=mode)
    assert cache.nbytes() == B * (T + 1) * per_token
    if mode != "kv":  # the latent cache agrees with lesson 01's formula
        assert bill.latent * cfg.n_layers == mla_elements_per_token(cfg.n_layers, cfg.kv_lora_rank,
                                                                     cfg.qk_rope_head_dim)


def test_rope_touches_only_the_rope_part():
    cfg = CONFIGS["q-lora"]
    layer, x, cos, sin = layer_and_inputs(cfg, T=8)
    shift = 13
    c0, k0 = layer.latents(x, cos[:8], sin[:8])
    c1, k1 = layer.latents(x, cos[shift:shift + 8], sin[shift:shift + 8])
    assert torch.equal(c0, c1)  # the latent carries no position
    assert not torch.allclose(k0, k1)  # the RoPE key does
    raw = layer.wkv_a(x)[..., cfg.kv_lora_rank:]
    torch.testing.assert_close(k1, apply_rope(raw, cos[shift:shift + 8], sin[shift:shift + 8]))
    q0, p0 = layer.queries(x, cos[:8], sin[:8])
    q1, p1 = layer.queries(x, cos[shift:shift + 8], sin[shift:shift + 8])
    assert torch.equal(q0, q1) and not torch.allclose(p0, p1)
    # scores depend on relative positions only: shifting every position leaves the output unchanged
    for mode in ["absorbed", "latent"]:
        torch.testing.assert_close(layer(x, cos[shift:shift + 8], sin[shift:shift + 8], mode=mode),
                                   layer(x, cos[:8], sin[:8], mode=mode), atol=1e-5, rtol=1e-4)


def test_deepseek_v3_cache_bill():
    bill = deepseek_v3_cache_bill()
    assert bill.latent == 512 + 64 == 576
    assert bill.expanded_kv == 128 * (128 + 64) + 128 * 128 == 40_960
    assert bill.n_layers == 61
    assert bill.bytes_per_token(2) == 576 * 61 * 2


def test_table1_and_the_v2_gqa_equivalence():
    H, Dh, G = 16, 64, 4
    rows = {r.method: r for r in cache_table(H, Dh, G, kv_lora_rank=4 * Dh, qk_rope_head_dim=Dh // 2)}
    assert rows["MHA"].elements == 2 * H * Dh and rows["GQA"].elements == 2 * G * Dh
    assert rows["MQA"].elements == 2 * Dh
    assert rows["MLA"].elements == 4.5 * Dh  # DeepSeek-V2's choice Dc = 4·Dh, Dr = Dh/2
    assert rows["MLA"].gqa_groups_equivalent == 2.25  # "like GQA with 2.25 groups"
    assert rows["MHA"].gqa_groups_equivalent == H


def test_invalid_ranks_and_inputs_raise():
    for bad in [dict(kv_lora_rank=0), dict(q_lora_rank=-1), dict(qk_rope_head_dim=3),
                dict(v_head_dim=0), dict(qk_nope_head_dim=-2)]:
        with pytest.raises(ValueError, match=next(iter(bad))):
            preset("test", attn_type="mla", **bad)
    with pytest.raises(ValueError, match="qk_rope_head_dim=0"):
        MLA(preset("test", attn_type="mla", qk_rope_head_dim=0))
    with pytest.raises(ValueError, match="mode='fast'"):
        MLA(preset("test", attn_type="mla"), mode="fast")
    layer, x, cos, sin = layer_and_inputs(CONFIGS["no-q-lora"], T=5)
    with pytest.raises(ValueError, match="must have shape \\(B, T, D=32\\)"):
        layer(x[..., :16], cos[:5], sin[:5])
    with pytest.raises(ValueError, match="cos must have shape \\(T=5, 8\\)"):
        layer(x, cos[:4], sin[:4])
    with pytest.raises(ValueError, match="kv_lora_rank=0"):
        mla_cache_bill(1, 4, 0, 16, 8, 16)
    with pytest.raises(ValueError, match="n_groups=0"):
        cache_table(4, 16, 0, 32, 8)


def test_the_former_mode_name_naive_is_refused_with_the_map():
    """The course's old "naive" meant the opposite of DeepSeek's attn_impl="naive": every entry point
    refuses it and says where it went."""
    cfg = CONFIGS["no-q-lora"]
    layer, x, cos, sin = layer_and_inputs(cfg, T=5)
    model = Transformer(cfg)
    calls = [lambda: MLA(cfg, mode="naive"), lambda: layer(x, cos[:5], sin[:5], mode="naive"),
             lambda: set_mla_mode(model, "naive"), lambda: cache_bill(cfg).bytes_per_token(2, mode="naive")]
    for call in calls:
        with pytest.raises(ValueError, match='renamed "latent"') as err:
            call()
        msg = str(err.value)
        for pair in ['"kv" = DeepSeek attn_impl="naive"', '"latent" = latent cached',
                     '"absorbed" = DeepSeek attn_impl="absorb"']:
            assert pair in msg


def explicit_mla(layer: MLA, x, cos, sin, scale: float) -> torch.Tensor:
    """MLA written out from the weights (no q_lora), causal softmax attention at the given ``scale``."""
    B, T, _ = x.shape
    H, Dn, Dr, Dv, Dc = layer.n_heads, layer.nope_dim, layer.rope_dim, layer.v_dim, layer.kv_lora_rank
    q = (x @ layer.wq.weight.T).view(B, T, H, Dn + Dr).transpose(1, 2)  # (B, H, T, Dn + Dr)
    q_nope, q_pe = q[..., :Dn], apply_rope(q[..., Dn:], cos, sin)
    kv_a = x @ layer.wkv_a.weight.T  # (B, T, Dc + Dr)
    c_kv, k_pe = layer.kv_norm(kv_a[..., :Dc]), apply_rope(kv_a[..., Dc:], cos, sin)  # (B, T, Dc), (B, T, Dr)
    kv = (c_kv @ layer.wkv_b.weight.T).view(B, T, H, Dn + Dv).transpose(1, 2)  # (B, H, T, Dn + Dv)
    k_nope, v = kv[..., :Dn], kv[..., Dn:]
    scores = (q_nope @ k_nope.transpose(-1, -2) + q_pe @ k_pe.unsqueeze(1).transpose(-1, -2)) * scale
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    out = scores.masked_fill(future, float("-inf")).softmax(-1) @ v  # (B, H, T, Dv)
    return out.transpose(1, 2).reshape(B, T, H * Dv) @ layer.wo.weight.T  # (B, T, D)


@pytest.mark.parametrize("impl", ["sdpa", "explicit"])
def test_softmax_scale_is_one_over_sqrt_of_nope_plus_rope(impl):
    """DeepSeek-V2 Eq. 18: the scores are divided by sqrt(Dn + Dr), the width of a whole query head,
    not by sqrt(Dn), sqrt(Dv) or the latent's width. Sizes chosen so every candidate differs."""
    cfg = preset("test", attn_type="mla", attn_impl=impl, kv_lora_rank=32, qk_nope_head_dim=16,
                 qk_rope_head_dim=8, v_head_dim=12)
    layer, x, cos, sin = layer_and_inputs(cfg, T=9)
    Dn, Dr = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim
    assert layer.softmax_scale == pytest.approx((Dn + Dr) ** -0.5)
    with torch.no_grad():
        want = explicit_mla(layer, x, cos[:9], sin[:9], scale=(Dn + Dr) ** -0.5)
        for mode in ["absorbed", "latent", "kv"]:
            torch.testing.assert_close(layer(x, cos[:9], sin[:9], mode=mode), want, atol=1e-5, rtol=1e-5)
        # the check has teeth: any other candidate scale gives a visibly different output
        for wrong in [Dn, cfg.v_head_dim, cfg.kv_lora_rank + Dr]:
            assert not torch.allclose(explicit_mla(layer, x, cos[:9], sin[:9], scale=wrong ** -0.5), want,
                                      atol=1e-3)
