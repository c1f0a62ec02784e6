"""helpers.lessons.gqa: grouping, mean-pool conversion (Ainslie et al. §2.1), Hugging Face Llama parity with
fewer K/V heads, attention maps and the bench module (the measured cache: test_kv_cache.py)."""

import math

import matplotlib
import pytest
import torch

from helpers.config import ModelConfig, preset
from helpers.interop import from_hf, llama_to_hf, tiny_llama
from helpers.kv_cache import kv_elements_per_token
from helpers.lessons.gqa import (
    attention_maps,
    draw_grouping,
    kv_head_of,
    pool_heads,
    to_gqa,
    within_group_tv,
)
from helpers.model import Transformer

matplotlib.use("Agg")

H = preset("test").n_heads  # 4


def trained_like(cfg: ModelConfig) -> Transformer:
    """A model with weights far from their init (so that pooling really averages different heads)."""
    model = Transformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


# --- Hugging Face parity --------------------------------------------------------------------------
@pytest.mark.parametrize("g", [H, H // 2, 1], ids=["G=H", "G=H/2", "G=1"])
def test_llama_with_fewer_kv_heads_matches_hf(g):
    cfg = preset("test", n_kv_heads=g)
    hf = tiny_llama(cfg, seed=4)
    assert hf.config.num_key_value_heads == g < hf.config.num_attention_heads or g == H
    ours = from_hf(hf)
    assert ours.config.kv_heads == g
    assert ours.layers[0].attn.wk.weight.shape == (g * cfg.hd, cfg.dim)
    idx = torch.randint(0, cfg.vocab_size, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), hf(idx).logits, atol=1e-5, rtol=1e-5)


def test_grouping_order_matches_hf_repeat_kv():
    from transformers.models.llama.modeling_llama import repeat_kv

    k = torch.randn(2, 3, 5, 4)  # (B, G, S, Dh)
    repeated = repeat_kv(k, 2)  # (B, H, S, Dh) as Hugging Face feeds it to every query head
    for h, g in enumerate(kv_head_of(6, 3)):
        assert torch.equal(repeated[:, h], k[:, g])
    assert kv_head_of(6, 6) == list(range(6)) and kv_head_of(6, 1) == [0] * 6


# --- errors ---------------------------------------------------------------------------------------
def test_indivisible_heads_raise_clear_errors():
    with pytest.raises(ValueError, match="n_heads=4 is not divisible by n_kv_heads=3"):
        ModelConfig(dim=32, n_heads=4, n_kv_heads=3)
    model = Transformer(preset("test"))
    with pytest.raises(ValueError, match="n_heads=4 is not divisible by n_kv_heads=3"):
        to_gqa(model, 3)
    with pytest.raises(ValueError, match="must be positive"):
        to_gqa(model, 0)
    with pytest.raises(ValueError, match="not divisible"):
        kv_head_of(6, 4)


def test_to_gqa_refuses_what_it_cannot_pool():
    gqa2 = Transformer(preset("test", n_kv_heads=2))
    with pytest.raises(ValueError, match="2 K/V heads; they cannot be pooled into n_kv_heads=4"):
        to_gqa(gqa2, 4)  # pooling cannot create heads
    with pytest.raises(ValueError, match="helpers Transformer"):
        to_gqa(torch.nn.Linear(4, 4), 1)
    with pytest.raises(ValueError, match="attn_type='mla'"):
        to_gqa(Transformer(preset("test", attn_type="mla")), 2)
    with pytest.raises(ValueError, match="method"):
        to_gqa(Transformer(preset("test")), 2, method="median")


# --- mean-pool conversion -------------------------------------------------------------------------
def test_to_gqa_identity_for_g_equal_h():
    model = trained_like(preset("test"))
    same = to_gqa(model, H)
    assert same is not model and same.config.kv_heads == H
    for (name, a), b in zip(model.state_dict().items(), same.state_dict().values()):
        assert torch.equal(a, b), name
    idx = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        assert torch.equal(same(idx), model(idx))


@pytest.mark.parametrize("g", [H // 2, 1], ids=["G=H/2", "G=1"])
def test_to_gqa_is_the_hand_computed_mean(g):
    cfg = preset("test")
    model = trained_like(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    new = to_gqa(model, g)
    Dh, D, per = cfg.hd, cfg.dim, H // g
    assert new.config == cfg.replace(n_kv_heads=g)
    for i, layer in enumerate(new.layers):
        for proj in ("wk", "wv"):
            w_new = getattr(layer.attn, proj).weight
            w_old = before[f"layers.{i}.{'attn'}.{proj}.weight"]
            assert w_new.shape == (g * Dh, D)
            for group in range(g):
                heads = [w_old[h * Dh:(h + 1) * Dh] for h in range(group * per, (group + 1) * per)]
                torch.testing.assert_close(w_new[group * Dh:(group + 1) * Dh], sum(heads) / per)
    new_state = new.state_dict()
    for name, tensor in before.items():  # everything else copied unchanged; the source untouched
        assert torch.equal(model.state_dict()[name], tensor), name
        if ".wk." not in name and ".wv." not in name:
            assert torch.equal(new_state[name], tensor), name


def test_pooling_weights_pools_the_rotated_keys():
    """RoPE rotates every head by the same angles, so the pooled model's keys are the mean of the
    original keys of each group, at every position."""
    cfg = preset("test")
    model = trained_like(cfg)
    new = to_gqa(model, 2)
    x = torch.randn(2, 10, cfg.dim)
    cos, sin = model.rope_cos[:10], model.rope_sin[:10]
    with torch.no_grad():
        _, k_old, v_old = model.layers[0].attn.project(x, cos, sin)  # (B, H, T, Dh)
        _, k_new, v_new = new.layers[0].attn.project(x, cos, sin)  # (B, 2, T, Dh)
    torch.testing.assert_close(k_new, k_old.view(2, 2, 2, 10, cfg.hd).mean(2), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(v_new, v_old.view(2, 2, 2, 10, cfg.hd).mean(2), atol=1e-6, rtol=1e-5)


def test_pooling_in_stages_equals_pooling_at_once():
    model = trained_like(preset("test"))
    idx = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(to_gqa(to_gqa(model, 2), 1)(idx), to_gqa(model, 1)(idx))


def test_first_head_pooling_and_changed_function():
    model = trained_like(preset("test"))
    first = to_gqa(model, 2, method="first")
    w = model.layers[1].attn.wk.weight
    Dh = model.config.hd
    expected = torch.cat([w[0:Dh], w[2 * Dh:3 * Dh]])  # heads 0 and 2 lead groups 0 and 1
    assert torch.equal(first.layers[1].attn.wk.weight, expected)
    idx = torch.randint(0, 256, (1, 12))
    with torch.no_grad():  # fewer K/V heads is a different function unless the heads were equal
        assert not torch.allclose(to_gqa(model, 2)(idx), model(idx), atol=1e-4)


def test_pool_heads_checks_its_input():
    with pytest.raises(ValueError, match="expected \\(32, D\\)"):
        pool_heads(torch.randn(30, 8), 4, 2, 8)
    with pytest.raises(ValueError, match="it must divide 4"):
        pool_heads(torch.randn(32, 8), 4, 3, 8)


# --- attention maps and cache ---------------------------------------------------------------------
@pytest.mark.parametrize("g", [H, 2], ids=["mha", "gqa"])
def test_attention_maps_match_hf_output_attentions(g):
    model = trained_like(preset("test", n_kv_heads=g))
    hf = llama_to_hf(model)
    idx = torch.randint(0, 256, (2, 14))
    maps = attention_maps(model, idx)
    assert maps.weights.shape == (model.config.n_layers, 2, H, 14, 14)
    with torch.no_grad():
        theirs = hf(idx, output_attentions=True).attentions  # per layer (B, H, T, T)
    torch.testing.assert_close(maps.weights, torch.stack(theirs), atol=1e-6, rtol=1e-5)
    assert maps.group(0, 1).shape == (H // g, 14, 14)
    assert torch.equal(maps.group(1, 0, n_kv_heads=1), maps.weights[1, 0])


def test_within_group_tv_bounds():
    w = torch.rand(2, 4, 6, 6).softmax(-1)
    assert within_group_tv(w, 4) == 0.0  # one head per group: nothing to compare
    same = w[:, :1].expand(2, 4, 6, 6)
    assert within_group_tv(same, 2) == pytest.approx(0.0, abs=1e-7)
    one_hot = torch.zeros(1, 2, 3, 4)
    one_hot[0, 0, :, 0] = 1
    one_hot[0, 1, :, 1] = 1
    assert within_group_tv(one_hot, 1) == pytest.approx(1.0)
    assert 0 < within_group_tv(w, 1) < 1


def test_draw_grouping_draws_every_head_and_link():
    import matplotlib.pyplot as plt

    ax = draw_grouping(8, 2)
    assert len(ax.patches) == 8 + 2  # 8 query boxes, 2 K/V boxes
    assert len(ax.lines) == 8  # one link per query head
    assert "GQA" in ax.get_title()
    plt.close(ax.figure)


# --- the benchmark module -------------------------------------------------------------------------
def test_bench_prepare_and_decode_small_context():
    from helpers.bench import gqa as bench

    setups = [bench.prepare(g, context=24, dim=32, n_heads=4, n_layers=1, inter_dim=64) for g in (4, 1)]
    for s in setups:
        assert s.cache.length == 24
        assert s.cache.nbytes() / s.cache.length == kv_elements_per_token(1, s.n_kv_heads, 8) * 4
    ms = bench.decode_ms(setups, rounds=1, steps=2)
    assert set(ms) == {4, 1} and all(math.isfinite(t) and t > 0 for t in ms.values())
    assert all(s.cache.length == 24 for s in setups)  # every timed step was cropped away again


@pytest.mark.slow
def test_bench_run_quick_names_and_cache_figures():
    from helpers.bench import gqa as bench

    res = bench.run(quick=True)
    cfg = preset("small")
    for g in bench.KV_HEADS:
        assert res[f"gqa.cache_bytes_per_token[G={g}]"] == kv_elements_per_token(cfg.n_layers, g, cfg.hd) * 4
        assert res[f"gqa.decode_ms_per_token@4096[G={g}]"] > 0
    assert set(res) >= {f"gqa.decode_speedup@4096[G={g}]" for g in bench.KV_HEADS[1:]}
