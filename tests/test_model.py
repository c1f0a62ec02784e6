import pytest
import torch
from testkit import randomise

from helpers.config import preset
from helpers.model import Transformer


def test_shapes_and_output_object():
    cfg = preset("test")
    model = Transformer(cfg)
    idx = torch.randint(0, cfg.vocab_size, (2, 10))
    out = model.run(idx, targets=idx)
    assert out.logits.shape == (2, 10, cfg.vocab_size)
    assert out.hidden.shape == (2, 10, cfg.dim)
    assert out.loss.ndim == 0 and torch.equal(out.loss, out.main_loss + out.aux_loss)
    assert torch.equal(model(idx), out.logits)


@pytest.mark.parametrize("n_kv_heads", [None, 2, 1])
def test_sdpa_equals_explicit(n_kv_heads):
    """With randomised weights, so attention is far from uniform and a wrong mask or scale shows."""
    cfg = preset("test", n_kv_heads=n_kv_heads)
    model = randomise(Transformer(cfg))
    explicit = Transformer(cfg.replace(attn_impl="explicit")).eval()
    explicit.load_state_dict(model.state_dict())
    idx = torch.randint(0, cfg.vocab_size, (2, 12))
    weights = model.layers[0].attn.attention_weights(model.tok_emb(idx), model.rope_cos[:12],
                                                     model.rope_sin[:12])
    assert weights.max() > 0.5  # some query attends sharply: the comparison below can see a wrong path
    torch.testing.assert_close(model(idx), explicit(idx), atol=1e-4, rtol=1e-4)


def test_causality():
    cfg = preset("test")
    model = Transformer(cfg)
    idx = torch.randint(0, cfg.vocab_size, (1, 12))
    changed = idx.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % cfg.vocab_size
    torch.testing.assert_close(model(idx)[:, :8], model(changed)[:, :8])
    assert not torch.allclose(model(idx)[:, 8:], model(changed)[:, 8:])


def test_tied_and_untied_heads():
    tied = Transformer(preset("test", tie_embeddings=True))
    untied = Transformer(preset("test"))
    assert tied.head.weight is tied.tok_emb.weight
    assert untied.head.weight is not untied.tok_emb.weight
    cfg = untied.config
    assert untied.num_params() - tied.num_params() == cfg.vocab_size * cfg.dim


def test_parameter_count_matches_formula():
    cfg = preset("test", n_kv_heads=2)
    D, L, V, F = cfg.dim, cfg.n_layers, cfg.vocab_size, cfg.inter_dim
    Dh, H, G = cfg.hd, cfg.n_heads, cfg.kv_heads
    per_layer = D * H * Dh * 2 + D * G * Dh * 2 + 3 * D * F + 2 * D
    assert Transformer(cfg).num_params() == V * D * 2 + L * per_layer + D


def test_context_overflow_is_a_clear_error():
    cfg = preset("test")
    model = Transformer(cfg)
    with pytest.raises(ValueError, match=f"max_seq_len={cfg.max_seq_len}"):
        model(torch.zeros(1, cfg.max_seq_len + 1, dtype=torch.long))


@pytest.mark.parametrize("attn_type", ["mha", "mla"])
def test_decode_step_equals_last_logits_of_the_readable_forward(attn_type):
    """decode_step under inference_mode (fused layers, head on the last position only) gives the
    logits the readable no_grad forward gives, at the prefill and at every later step."""
    cfg = preset("test", n_kv_heads=2, attn_type=attn_type)
    model = randomise(Transformer(cfg))
    idx = torch.randint(0, cfg.vocab_size, (2, 9))
    with torch.no_grad():
        expected = model(idx)  # (B, T, V) the readable path, no cache
    cache = model.new_cache(static=True, max_len=9)
    with torch.inference_mode():
        got = [model.decode_step(idx[:, :6], cache)] + [model.decode_step(idx[:, t:t + 1], cache)
                                                         for t in range(6, 9)]
    for t, logits in zip([5, 6, 7, 8], got):
        torch.testing.assert_close(logits, expected[:, t], atol=1e-4, rtol=1e-4)


def test_decode_step_refuses_to_overflow_the_context():
    cfg = preset("test", max_seq_len=8)
    model = Transformer(cfg).eval()
    cache = model.new_cache()
    with torch.inference_mode():
        model.decode_step(torch.zeros(1, 8, dtype=torch.long), cache)
        with pytest.raises(ValueError, match="exceeds max_seq_len=8"):
            model.decode_step(torch.zeros(1, 1, dtype=torch.long), cache)


@pytest.mark.parametrize("attn_type, static", [("mha", False), ("mha", True), ("mla", False)])
def test_model_fed_token_by_token_through_a_cache_equals_one_uncached_call(attn_type, static):
    """The readable forward, ``model(x, cache=...)``, one position at a time from the first: every
    position's logits equal one uncached call's. A cached RoPE position off by one (the offset the
    cache hands to the rotation) breaks this at every step after the first."""
    cfg = preset("test", n_kv_heads=2, attn_type=attn_type)
    model = randomise(Transformer(cfg))
    idx = torch.randint(0, cfg.vocab_size, (2, 12))
    cache = model.new_cache(static=True, max_len=12) if static else model.new_cache()
    with torch.no_grad():
        whole = model(idx)  # (B, T, V)
        stepped = torch.cat([model(idx[:, t:t + 1], cache=cache) for t in range(12)], dim=1)
    torch.testing.assert_close(stepped, whole, atol=1e-4, rtol=1e-4)
    assert (stepped[:, 1:] - whole[:, 1:]).abs().max() < 1e-4
