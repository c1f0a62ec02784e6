"""Timing, in one place (to be rebuilt on ``torch.utils.benchmark``)."""

from __future__ import annotations

import time

import torch

from .generate import generate


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decode_ms_per_token(model, prompt: torch.Tensor, new_tokens: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` wall time of ``helpers.generate`` (greedy, cache on), per new token, in ms."""
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up
        _sync(prompt.device)
        t0 = time.perf_counter()
        generate(model, prompt, new_tokens)
        _sync(prompt.device)
        best = min(best, time.perf_counter() - t0)
    return best / new_tokens * 1e3


def interleaved_best(fns: dict, rounds: int = 3) -> dict[str, float]:
    """Best wall time in seconds of each zero-argument callable, the callables taking turns round after
    round so that drifting machine load hits all of them alike (the first round also warms up)."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds + 1):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def hf_generate(hf_model, prompt: torch.Tensor, new_tokens: int, use_cache: bool = True) -> torch.Tensor:
    """transformers' greedy ``generate`` for exactly ``new_tokens`` tokens (no end-of-sequence stop)."""
    return hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, use_cache=use_cache)


def hf_decode_ms_per_token(hf_model, prompt: torch.Tensor, new_tokens: int, repeats: int = 3) -> float:
    """The same measurement for a transformers model's ``generate``."""
    best = float("inf")
    for _ in range(repeats + 1):
        _sync(prompt.device)
        t0 = time.perf_counter()
        with torch.no_grad():
            hf_generate(hf_model, prompt, new_tokens)
        _sync(prompt.device)
        best = min(best, time.perf_counter() - t0)
    return best / new_tokens * 1e3
