"""int8 KV cache: round-trip error <= half a step, bytes saved, generate works with it."""

import pytest
import torch

from helpers import KVCache, Transformer, generate, preset
from helpers.kv_quant import (
    QuantizedKVCache,
    attention_error,
    capture_qkv,
    prediction_error,
    quant_error,
    quantize,
)


@pytest.mark.parametrize("axis,group", [("token", None), ("channel", None), ("channel", 4)])
@pytest.mark.parametrize("bits", [8, 4])
def test_round_trip_error_bounded_by_half_step(axis, group, bits):
    x = torch.randn(2, 3, 16, 8) * torch.logspace(-2, 1, 8)  # channels of very different sizes
    qt = quantize(x, axis, group, bits)
    assert qt.q.dtype == torch.int8 and qt.q.shape == x.shape
    assert qt.q.abs().max().item() <= 2 ** (bits - 1) - 1
    err = (qt.dequantize() - x).abs()
    assert (err <= qt.step() / 2 * (1 + 1e-5)).all()
    assert quant_error(x, axis, group, bits).max_over_half_step <= 1 + 1e-5
    # the largest element of every block is stored exactly at ±qmax
    assert (qt.q.abs() == 2 ** (bits - 1) - 1).any()


def test_scale_shapes_and_exact_values():
    x = torch.randn(1, 2, 8, 4)
    assert quantize(x, "token").scale.shape == (1, 2, 8, 1)
    assert quantize(x, "channel", 4).scale.shape == (1, 2, 2, 1, 4)
    ints = torch.randint(-127, 128, (1, 1, 6, 4)).float()
    ints[..., 0, :] = 127.0  # absmax 127 in every channel: scale 1, the round trip is exact
    assert torch.equal(quantize(ints, "channel").dequantize(), ints)
    zeros = torch.zeros(1, 1, 4, 4)
    assert torch.equal(quantize(zeros, "token").dequantize(), zeros)


def test_quantize_errors():
    with pytest.raises(ValueError, match="axis"):
        quantize(torch.randn(2, 4), "row")
    with pytest.raises(ValueError, match="group_size"):
        quantize(torch.randn(1, 6, 4), "channel", 4)
    with pytest.raises(ValueError, match="bits"):
        quantize(torch.randn(1, 6, 4), "token", bits=16)
    with pytest.raises(ValueError, match="floating"):
        quantize(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="key_axis"):
        QuantizedKVCache(2, key_axis="head")


def test_more_bits_less_error():
    x = torch.randn(1, 2, 32, 16)
    errs = [quant_error(x, "token", bits=b).rel_rms for b in (3, 4, 6, 8)]
    assert errs == sorted(errs, reverse=True)


def test_per_channel_keys_win_with_outlier_channels():
    k = torch.randn(1, 2, 64, 16)
    k[..., 3] *= 40.0  # one outlier channel at every position, as real keys have
    q, v = torch.randn(1, 4, 64, 16), torch.randn(1, 2, 64, 16)
    per_channel = attention_error(q, k, v, key_axis="channel", value_axis=None)
    per_token = attention_error(q, k, v, key_axis="token", value_axis=None)
    assert per_channel < per_token
    assert quant_error(k, "channel").rel_rms < quant_error(k, "token").rel_rms


def test_cache_update_matches_quantised_history_and_counts_bytes():
    B, G, Dh, R = 2, 2, 8, 4
    cache = QuantizedKVCache(1, group_size=R)
    ks, vs = [], []
    for t in [5, 1, 1, 3]:  # a prefill, then decode steps
        k, v = torch.randn(B, G, t, Dh), torch.randn(B, G, t, Dh)
        ks.append(k)
        vs.append(v)
        full_k, full_v = cache.update(0, k, v)
    K, V = torch.cat(ks, 2), torch.cat(vs, 2)  # 10 positions: 2 full key groups + 2 residual keys
    assert cache.length == 10 and full_k.shape == K.shape and full_v.shape == V.shape
    torch.testing.assert_close(full_k[:, :, :8], quantize(K[:, :, :8], "channel", R).dequantize())
    assert torch.equal(full_k[:, :, 8:], K[:, :, 8:])  # the residual stays exact
    torch.testing.assert_close(full_v, quantize(V, "token").dequantize())
    # int8 payload, one fp32 scale per channel per key group, one per value token, float residual
    expected = B * G * 8 * Dh + B * G * 2 * Dh * 4 + B * G * 2 * Dh * 4 + B * G * 10 * Dh + B * G * 10 * 4
    assert cache.nbytes() == expected
    float_bytes = KVCache(1).update(0, K, V)[0].numel() * 4 * 2
    assert cache.nbytes() < float_bytes / 2  # ~4x less for long sequences; scales + residual cost here


def test_cache_crop_and_reset():
    cache = QuantizedKVCache(1, group_size=4)
    cache.update(0, torch.randn(1, 1, 9, 4), torch.randn(1, 1, 9, 4))
    before = cache.dequantized(0)
    cache.crop(6)
    after = cache.dequantized(0)
    assert cache.length == 6
    torch.testing.assert_close(after[0], before[0][:, :, :6])
    torch.testing.assert_close(after[1], before[1][:, :, :6])
    with pytest.raises(ValueError, match="crop"):
        cache.crop(7)
    with pytest.raises(ValueError, match=r"\(k, v\)"):
        cache.update(0, torch.randn(1, 1, 1, 4))
    cache.reset()
    assert cache.length == 0 and cache.nbytes() == 0


def test_generate_with_quantised_cache():
    model = Transformer(preset("test", n_kv_heads=2)).eval()
    idx = torch.randint(0, 256, (2, 5))
    exact = generate(model, idx, 12, return_logits=True)
    cache = QuantizedKVCache(model.config.n_layers, group_size=4)
    q8 = generate(model, idx, 12, cache=cache, return_logits=True)
    assert q8.tokens.shape == exact.tokens.shape and cache.length == 5 + 12 - 1
    scale = exact.step_logits.abs().max()
    d8 = (q8.step_logits - exact.step_logits).abs().max() / scale
    q3 = generate(model, idx, 12, cache=QuantizedKVCache(2, group_size=4, bits=3), return_logits=True)
    d3 = (q3.step_logits - exact.step_logits).abs().max() / scale
    assert 0 < d8 < 0.05 and d8 < d3  # int8 moves the logits a little; 3 bits moves them more


def test_prediction_error_and_capture():
    model = Transformer(preset("test")).eval()
    tokens = torch.randint(0, 256, (2, 20))
    exact = prediction_error(model, tokens, KVCache(2), prompt_len=8)  # a float cache: no error
    assert exact.positions == 2 * 13 and exact.top1_agreement == 1.0 and exact.max_kl < 1e-6
    q = prediction_error(model, tokens, QuantizedKVCache(2, group_size=4, bits=4), prompt_len=8)
    assert q.mean_kl > exact.mean_kl and q.max_logit_diff > exact.max_logit_diff
    with pytest.raises(ValueError, match="prompt_len"):
        prediction_error(model, tokens, KVCache(2), prompt_len=20)
    qkv = capture_qkv(model, tokens)
    assert len(qkv) == 2 and qkv[0][0].shape == (2, 4, 20, 8) and qkv[0][1].shape == (2, 4, 20, 8)
    assert attention_error(*qkv[0], key_axis=None, value_axis=None) == 0.0
