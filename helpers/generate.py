"""Autoregressive generation, with or without the KV cache (lesson 01).

Without a cache every step runs the whole prefix through the model again: step t costs O(t), so n
new tokens cost O(n²) in total. With a cache the prompt is run once (the "prefill") and each later
step runs one token against the cached keys and values.

Context policy: no sliding window. A request whose prompt plus new tokens exceeds the model's
``max_seq_len`` raises ``ValueError`` before any work is done, naming the numbers.

The cached loop is kept lean, because per-token time on a small model is mostly framework overhead:
it runs under ``torch.inference_mode()`` (no autograd bookkeeping at all, cheaper than ``no_grad``) and,
unless the caller passes a cache, writes into a ``StaticKVCache`` pre-allocated for prompt + new tokens
(no re-concatenation of the growing history at every step); each step calls ``model.decode_step``
(no per-step input check, the head for the last position only), and under inference mode the layers
take their fused decode paths (``helpers.layers``, ``helpers.attention``), tested equal to the
readable ones. A greedy loop checks all step logits for NaN/inf once, at the end. The returned tensors
are cloned out of inference mode, so callers can use them in autograd code afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .decode_plan import DecodePlan
from .kv_cache import KVCache
from .validate import InputTypeError, check_finite_logits, check_int, check_number, check_token_ids


@dataclass
class Generation:
    tokens: torch.Tensor  # (B, T + n) prompt followed by the new tokens
    step_logits: torch.Tensor  # (B, n, V) the logits each new token was chosen from


def sample_next(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, V) logits → (B, 1) token ids. temperature 0 is greedy (argmax)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.float().softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


def check_request(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
                  top_k: int | None = None) -> None:
    """The prompt and the settings of a generation request, checked before any work is done."""
    check_token_ids(idx, model.config.vocab_size, model.device, name="prompt")
    check_int("max_new_tokens", max_new_tokens, min_value=0)
    check_number("temperature", temperature, min_value=0.0)  # 0 means greedy
    if top_k is not None:
        check_int("top_k", top_k, min_value=1)
    limit = model.config.max_seq_len
    if idx.shape[1] + max_new_tokens > limit:
        raise ValueError(f"prompt of {idx.shape[1]} tokens + max_new_tokens={max_new_tokens} exceeds "
                         f"the model's context max_seq_len={limit}; shorten one of them")


def generate(model, idx: torch.Tensor, max_new_tokens: int, *, use_cache: bool = True,
             temperature: float = 0.0, top_k: int | None = None, seed: int | None = None,
             cache=None, return_logits: bool = False, fast: bool = True):
    """Extend ``idx`` (B, T) by ``max_new_tokens`` tokens; greedy unless ``temperature > 0``.

    Returns the (B, T + n) tokens, or a ``Generation`` with the step logits if ``return_logits``.
    ``cache`` lets a caller pass its own (a ``KVCache``, ``StaticKVCache`` or a quantised one); it is
    reset first. Without one, a ``StaticKVCache`` of exactly T + n positions is used, and a model the
    flat decode step covers (``helpers.decode_plan``: MHA/GQA/MQA or absorbed MLA, dense or MoE layers,
    float32) runs through it unless ``fast=False``, which keeps the readable ``model.decode_step`` path
    (the two are tested equal).
    """
    check_request(model, idx, max_new_tokens, temperature, top_k)
    if cache is not None and not isinstance(cache, KVCache):
        raise InputTypeError(f"cache must be a KVCache (model.new_cache()), got {type(cache).__name__}")
    if seed is not None:
        check_int("seed", seed)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=idx.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            tokens, all_logits = _decode(model, idx, max_new_tokens, use_cache, temperature, top_k,
                                         generator, cache, fast)
    finally:
        model.train(was_training)
    tokens = tokens.clone()  # an ordinary tensor again (inference tensors refuse autograd)
    if not return_logits:
        return tokens
    V = model.config.vocab_size
    step_logits = torch.stack(all_logits, dim=1) if all_logits else idx.new_zeros(idx.shape[0], 0, V)
    return Generation(tokens, step_logits.clone())


def _decode(model, idx, max_new_tokens, use_cache, temperature, top_k, generator, cache, fast=False):
    """The loop itself: one forward per new token, over the new token only (cache) or the whole
    prefix (no cache, the readable reference)."""
    if not use_cache:
        tokens, all_logits = idx, []
        for step in range(max_new_tokens):
            logits = model(tokens)[:, -1]  # (B, V): the whole prefix again
            check_finite_logits(logits, step)
            nxt = sample_next(logits, temperature, top_k, generator)  # (B, 1)
            tokens = torch.cat([tokens, nxt], dim=1)  # (B, T + t)
            all_logits.append(logits)
        return tokens, all_logits
    if cache is None and fast and DecodePlan.unsupported(model) is None:
        plan = DecodePlan(model, idx.shape[0], idx.shape[1] + max_new_tokens)
        forward = lambda ids: plan.logits(plan.step(ids)[:, -1])  # noqa: E731  (B, V), the flat step
    else:
        if cache is None:
            cache = model.new_cache(static=True, max_len=idx.shape[1] + max_new_tokens)
        cache.reset()
        forward = lambda ids: model.decode_step(ids, cache)  # noqa: E731  model(ids, cache)[:, -1]
    new, all_logits, step_input = [], [], idx
    for step in range(max_new_tokens):
        logits = forward(step_input)  # (B, V)
        if temperature > 0:  # sampling would fail on NaN before a later check could name the step
            check_finite_logits(logits, step)
        step_input = sample_next(logits, temperature, top_k, generator)  # (B, 1)
        new.append(step_input)
        all_logits.append(logits)
    if temperature == 0:  # greedy: one check for all steps, naming the first bad one
        _check_all_finite(all_logits)
    return torch.cat([idx, *new], dim=1), all_logits  # (B, T + n)


def _check_all_finite(all_logits: list[torch.Tensor]) -> None:
    """``check_finite_logits`` for every step at once (one operator call instead of three per step):
    raises for the first step whose logits hold NaN or inf. Argmax simply picks a NaN, so a greedy loop
    can run on and be checked at the end; the caller gets the same error either way."""
    if not all_logits or bool(torch.isfinite(torch.stack(all_logits)).all()):
        return
    for step, logits in enumerate(all_logits):
        check_finite_logits(logits, step)
