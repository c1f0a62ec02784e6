"""generate(): cached == uncached, seeded sampling is reproducible, bad requests fail clearly."""

import pytest
import torch

from helpers import Transformer, generate, preset
from helpers.generate import Generation, sample_next


@pytest.fixture
def model():
    return Transformer(preset("test", n_kv_heads=2)).eval()


@pytest.mark.parametrize("prompt_len,n_new,batch", [(1, 12, 1), (5, 8, 2), (17, 15, 3)])
def test_cached_equals_uncached(model, prompt_len, n_new, batch):
    idx = torch.randint(0, model.config.vocab_size, (batch, prompt_len))
    cached = generate(model, idx, n_new, use_cache=True, return_logits=True)
    plain = generate(model, idx, n_new, use_cache=False, return_logits=True)
    assert isinstance(cached, Generation)
    assert cached.tokens.shape == (batch, prompt_len + n_new)
    assert torch.equal(cached.tokens[:, :prompt_len], idx)
    assert torch.equal(cached.tokens, plain.tokens)
    assert cached.step_logits.shape == (batch, n_new, model.config.vocab_size)
    torch.testing.assert_close(cached.step_logits, plain.step_logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("static", [False, True])
def test_caller_cache_is_used_and_reset(model, static):
    idx = torch.randint(0, 256, (1, 4))
    cache = model.new_cache(static=static, max_len=32)
    a = generate(model, idx, 6, cache=cache)
    assert cache.length == 4 + 6 - 1  # the last sampled token is never fed back
    b = generate(model, idx, 6, cache=cache)  # reused: reset first, same answer
    assert torch.equal(a, b) and torch.equal(a, generate(model, idx, 6, use_cache=False))


def test_step_logits_are_the_models_logits(model):
    idx = torch.randint(0, 256, (2, 6))
    out = generate(model, idx, 5, return_logits=True)
    with torch.no_grad():
        full = model(out.tokens[:, :-1])  # (B, T + n - 1, V)
    torch.testing.assert_close(out.step_logits, full[:, 5:], atol=1e-5, rtol=1e-5)
    assert torch.equal(out.step_logits.argmax(-1), out.tokens[:, 6:])  # greedy picks the argmax


def test_sampling_reproducible_with_seed(model):
    idx = torch.randint(0, 256, (2, 3))
    a = generate(model, idx, 10, temperature=1.0, top_k=20, seed=7)
    b = generate(model, idx, 10, temperature=1.0, top_k=20, seed=7)
    c = generate(model, idx, 10, temperature=1.0, top_k=20, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the cache does not change what is sampled either
    assert torch.equal(a, generate(model, idx, 10, temperature=1.0, top_k=20, seed=7, use_cache=False))


def test_top_k_restricts_choices():
    logits = torch.tensor([[0.0, 5.0, 4.0, -1.0, 3.0]]).repeat(200, 1)
    gen = torch.Generator().manual_seed(0)
    picks = sample_next(logits, temperature=2.0, top_k=2, generator=gen)
    assert set(picks.flatten().tolist()) == {1, 2}
    assert torch.equal(sample_next(logits, 0.0), torch.full((200, 1), 1))


def test_outputs_are_ordinary_tensors(model):
    idx = torch.randint(0, 256, (1, 4))
    out = generate(model, idx, 3)
    assert not out.is_inference()
    emb = model.tok_emb(out)  # usable with autograd after generate
    emb.sum().backward()
    assert model.tok_emb.weight.grad is not None


def test_training_mode_restored(model):
    model.train()
    generate(model, torch.zeros(1, 2, dtype=torch.long), 2)
    assert model.training


@pytest.mark.parametrize("kwargs,match", [
    ({"max_new_tokens": -1}, "max_new_tokens"),
    ({"max_new_tokens": 2.5}, "max_new_tokens"),
    ({"temperature": -0.5}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": float("inf")}, "temperature"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": -3}, "top_k"),
    ({"max_new_tokens": 30}, "exceeds the model's context"),  # 4 + 30 > max_seq_len = 32
])
def test_bad_requests(model, kwargs, match):
    args = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate(model, torch.zeros(1, 4, dtype=torch.long), args.pop("max_new_tokens"), **args)


def test_bad_prompts(model):
    with pytest.raises(ValueError, match="at least one row and one position"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="must be 2-D"):
        generate(model, torch.zeros(4, dtype=torch.long), 2)


def test_exact_context_fits(model):
    n = model.config.max_seq_len - 4
    out = generate(model, torch.zeros(1, 4, dtype=torch.long), n)
    assert out.shape == (1, model.config.max_seq_len)
    assert generate(model, torch.zeros(1, 4, dtype=torch.long), 0).shape == (1, 4)


def test_greedy_generate_equals_the_readable_forward(model):
    """generate runs the fused decode paths (inference mode); its tokens and step logits equal a greedy
    loop over the readable no_grad forward without a cache."""
    from testkit import randomise

    randomise(model)
    idx = torch.randint(0, model.config.vocab_size, (2, 5))
    out = generate(model, idx, 6, return_logits=True)
    tokens = idx
    with torch.no_grad():
        for step in range(6):
            logits = model(tokens)[:, -1]
            torch.testing.assert_close(out.step_logits[:, step], logits, atol=1e-4, rtol=1e-4)
            tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out.tokens, tokens)


def test_greedy_nan_at_a_later_step_is_named(model):
    """The greedy loop checks the logits of all steps at the end; the error names the first bad step."""
    calls = {"n": 0}
    decode_step = model.decode_step

    def poisoned(idx, cache):
        logits = decode_step(idx, cache)
        calls["n"] += 1
        return logits.clone().fill_(float("nan")) if calls["n"] == 3 else logits

    model.decode_step = poisoned
    with pytest.raises(FloatingPointError, match="generation step 2 "):
        generate(model, torch.zeros(1, 3, dtype=torch.long), 5, fast=False)  # the readable loop


def test_greedy_nan_in_the_flat_plan_is_named(model):
    """The same end-of-loop check behind ``helpers.decode_plan``: a NaN weight poisons step 0."""
    with torch.no_grad():
        model.head.weight[5, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="generation step 0 "):
        generate(model, torch.zeros(1, 3, dtype=torch.long), 5)
