"""The KV cache: update/length/crop/reset, static == dynamic, measured bytes == the formula."""

import pytest
import torch

from helpers import KVCache, StaticKVCache, Transformer, preset
from helpers.kv_cache import (
    config_cache_bytes_per_token,
    kv_elements_per_token,
    measured_cache_bytes_per_token,
    mla_elements_per_token,
)
from helpers.lessons.capstone import CPU_CONFIG


def kv(b=2, g=2, t=3, d=8):
    return torch.randn(b, g, t, d), torch.randn(b, g, t, d)


@pytest.mark.parametrize("make", [lambda: KVCache(2), lambda: StaticKVCache(2, max_len=16)])
def test_update_appends_and_returns_history(make):
    cache = make()
    k1, v1 = kv(t=3)
    k2, v2 = kv(t=1)
    assert cache.length == 0
    out = cache.update(0, k1, v1)
    assert torch.equal(out[0], k1) and torch.equal(out[1], v1)
    k, v = cache.update(0, k2, v2)
    assert k.shape == (2, 2, 4, 8)
    assert torch.equal(k, torch.cat([k1, k2], dim=2)) and torch.equal(v, torch.cat([v1, v2], dim=2))
    assert cache.length == 4
    assert cache.layer_length(1) == 0


@pytest.mark.parametrize("make", [lambda: KVCache(1), lambda: StaticKVCache(1, max_len=16)])
def test_crop_and_reset(make):
    cache = make()
    k1, v1 = kv(t=5)
    cache.update(0, k1, v1)
    cache.crop(2)
    assert cache.length == 2
    k2, v2 = kv(t=1)
    k, v = cache.update(0, k2, v2)  # the cropped positions are really gone
    assert torch.equal(k, torch.cat([k1[:, :, :2], k2], dim=2))
    assert torch.equal(v, torch.cat([v1[:, :, :2], v2], dim=2))
    with pytest.raises(ValueError, match="crop length"):
        cache.crop(4)
    with pytest.raises(ValueError, match="crop length"):
        cache.crop(-1)
    cache.reset()
    assert cache.length == 0 and cache.nbytes() == 0


def test_static_cache_errors_and_reuse():
    with pytest.raises(ValueError, match="max_len"):
        StaticKVCache(2, max_len=0)
    with pytest.raises(ValueError, match="n_layers"):
        KVCache(0)
    cache = StaticKVCache(1, max_len=4)
    cache.update(0, *kv(t=3))
    with pytest.raises(ValueError, match="overflow"):
        cache.update(0, *kv(t=2))
    with pytest.raises(IndexError):
        cache.update(1, *kv(t=1))
    # after a reset, a request with another batch size gets fresh buffers (no silent broadcasting)
    cache.reset()
    k, v = kv(b=1, t=2)
    out = cache.update(0, k, v)
    assert torch.equal(out[0], k) and out[0].shape[0] == 1


def test_static_cache_filled_under_inference_mode_is_usable_outside():
    cache = StaticKVCache(1, max_len=8)
    with torch.inference_mode():
        cache.update(0, *kv(t=2))
    k, v = kv(t=1)
    out = cache.update(0, k, v)
    assert out[0].shape[2] == 3 and torch.equal(out[0][:, :, 2:], k)


@pytest.mark.parametrize("changes", [{}, {"n_kv_heads": 2}, {"n_kv_heads": 1},
                                     {"n_layers": 3, "head_dim": 6}])
@pytest.mark.parametrize("static", [False, True])
def test_static_equals_dynamic_and_bytes_equal_formula(changes, static):
    torch.manual_seed(0)
    cfg = preset("test", **changes)
    model = Transformer(cfg).eval()
    idx = torch.randint(0, cfg.vocab_size, (2, 10))
    cache = model.new_cache(static=static, max_len=16)
    ref = model.new_cache()
    with torch.no_grad():
        a = model(idx[:, :7], cache=cache)
        b = model(idx[:, :7], cache=ref)
        for t in range(7, 10):
            a = torch.cat([a, model(idx[:, t:t + 1], cache=cache)], dim=1)
            b = torch.cat([b, model(idx[:, t:t + 1], cache=ref)], dim=1)
    # A static cache hands attention a strided view of its buffer, where the fused kernel may add in
    # another order: equal to float32 rounding (seen: 4e-8 with head_dim=6), not always bit-equal.
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert cache.length == 10
    per_token = kv_elements_per_token(cfg.n_layers, cfg.kv_heads, cfg.hd)
    assert per_token == 2 * cfg.n_layers * cfg.kv_heads * cfg.hd
    assert cache.nbytes() == per_token * 10 * 2 * 4  # tokens × batch × float32 bytes
    if static:
        assert cache.allocated_nbytes() == per_token * 16 * 2 * 4


def test_bytes_follow_dtype():
    cache = KVCache(3)
    for layer in range(3):
        cache.update(layer, *(t.to(torch.bfloat16) for t in kv(b=1, g=4, t=5, d=16)))
    assert cache.nbytes() == kv_elements_per_token(3, 4, 16) * 5 * 2


def test_mla_elements_per_token():
    assert mla_elements_per_token(61, 512, 64) == 61 * 576
    cache = KVCache(2)  # the cache also holds MLA's (c_kv, k_pe) pairs
    for layer in range(2):
        cache.update(layer, torch.randn(1, 7, 32), torch.randn(1, 7, 8))
    assert cache.length == 7
    assert cache.nbytes() == mla_elements_per_token(2, 32, 8) * 7 * 4


# --- the cache bill: the formula from a configuration equals the measurement --------------------
@pytest.mark.parametrize("g", [4, 2, 1])
@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
def test_cache_bytes_per_token_is_the_formula(g, static):
    cfg = preset("test", n_kv_heads=g)
    measured = measured_cache_bytes_per_token(Transformer(cfg), n_tokens=10, static=static)
    assert measured == kv_elements_per_token(cfg.n_layers, g, cfg.hd) * 4  # float32
    half = measured_cache_bytes_per_token(Transformer(cfg).to(torch.bfloat16), n_tokens=10)
    assert half == measured / 2


def test_cache_bytes_formula_equals_measured():
    for cfg in [CPU_CONFIG.replace(max_seq_len=64), preset("tiny", max_seq_len=64)]:
        assert measured_cache_bytes_per_token(Transformer(cfg)) == config_cache_bytes_per_token(cfg)
    assert config_cache_bytes_per_token(CPU_CONFIG) * 4 < config_cache_bytes_per_token(preset("tiny"))


@pytest.mark.parametrize("cls", [KVCache, StaticKVCache])
def test_repeated_shapes_skip_the_checks_but_a_change_is_still_caught(cls):
    """After an update passes the checks, the next one with the very same shapes takes a shortcut; a
    different batch or width must still raise, and reset() forgets what was accepted."""
    cache = cls(2) if cls is KVCache else cls(2, 16)
    k = torch.randn(2, 3, 4, 8)
    cache.update(0, k, k)
    step = torch.randn(2, 3, 1, 8)
    cache.update(0, step, step)
    cache.update(0, step, step)  # the shortcut
    assert cache.layer_length(0) == 6
    with pytest.raises(ValueError, match="cache.reset"):
        cache.update(0, step[:1], step[:1])  # batch 1 after batch 2
    with pytest.raises(ValueError, match="cache.reset"):
        cache.update(0, step[..., :4], step[..., :4])  # another width
    cache.reset()
    cache.update(0, step[:1], step[:1])  # a new sequence may change the batch
    assert cache.layer_length(0) == 1


# --- the one cache bill: every former home's figure, from kv_cache ------------------------------------
def test_every_former_home_of_the_bill_hands_out_kv_cache_functions():
    import helpers.decode_cost as decode_cost
    import helpers.mla as mla
    from helpers import kv_cache

    for name in ("cache_bill", "cache_table", "mla_cache_bill", "deepseek_v3_cache_bill", "MLACacheBill",
                 "CacheRow", "MODES", "check_mla_mode"):
        assert getattr(mla, name) is getattr(kv_cache, name), name
    assert decode_cost.cache_bill is kv_cache.cache_bill


@pytest.mark.parametrize("sizes", [(1, 4, 32, 16, 8, 16), (3, 128, 512, 128, 64, 128), (2, 6, 24, 16, 8, 12)])
def test_mla_cache_bill_equals_the_old_formula(sizes):
    from helpers.kv_cache import mla_cache_bill

    n_layers, H, Dc, Dn, Dr, Dv = sizes
    bill = mla_cache_bill(*sizes)
    assert (bill.latent, bill.expanded_kv, bill.n_layers) == (Dc + Dr, H * (Dn + Dr) + H * Dv, n_layers)


def test_the_published_calculator_equals_the_old_formula():
    """lessons.cache_calc's per-layer figures, now from kv_cache's formulas, for every model and variant."""
    from helpers.lessons import cache_calc as cc
    from helpers.published import PUBLISHED

    def old(m, variant):  # cache_calc.elements_per_token_per_layer as written before (6b32d79)
        g = cc.variant_kv_heads(m, variant)
        if g is None:
            dc, dr = (m.kv_lora_rank, m.qk_rope_head_dim) if m.uses_mla else (4 * m.head_dim, m.head_dim // 2)
            return dc + dr
        width = (m.qk_nope_head_dim + m.qk_rope_head_dim) + m.v_head_dim if m.uses_mla else 2 * m.head_dim
        return g * width

    for name in PUBLISHED:
        for variant in cc.VARIANTS:
            assert cc.elements_per_token_per_layer(name, variant) == old(cc.get_published(name), variant)
    v3 = cc.get_published("DeepSeek-V3")
    assert cc.elements_per_token_per_layer(v3, "MLA") == 576
    assert cc.elements_per_token_per_layer(v3, "MHA") == 40960
