"""Lesson 06 exercises: the active-parameter bill, the RoPE layout of DeepSeek's checkpoints, and what
an acceptance rate buys. Reference solutions are in ``tests/test_capstone.py``."""

from __future__ import annotations

import torch

from ..interop import rope_deinterleave_perm
from ..lessons.capstone import CPU_CONFIG, GPU_CONFIG, deepseek_v3_config, param_count
from . import Checked, call_or_none, not_attempted, report

ACTIVE_CASES = {"the CPU capstone": CPU_CONFIG, "the GPU capstone": GPU_CONFIG,
                "DeepSeek-V3": deepseek_v3_config()}


def check_active_params(fn) -> Checked:
    """``fn(cfg)`` → parameters one token's forward pass uses, by the lesson's conventions (those of
    ``helpers.params.param_count``, which give the report's 671B and 37B): parameters only, so the routers'
    selection bias (a buffer, moved by the balancing rule and not by gradients) is not counted; the whole
    embedding table and output head, every norm, every router's E centroids and the shared experts are
    active; the MTP module is left out."""
    name = "active parameters per token"
    answers = {k: call_or_none(fn, cfg) for k, cfg in ACTIVE_CASES.items()}
    if any(a is None for a in answers.values()):
        return not_attempted(name)
    bills = {k: param_count(cfg) for k, cfg in ACTIVE_CASES.items()}
    wrong = [k for k in ACTIVE_CASES if answers[k] != bills[k].active]
    hint = ""
    if wrong:
        k = wrong[0]
        b, a, cfg = bills[k], answers[k], ACTIVE_CASES[k]
        bias = b.n_moe_layers * cfg.n_routed_experts  # one selection bias per routed expert and MoE layer
        if a == b.total:
            hint = "that is the total: a token visits only K of the E routed experts in each MoE layer"
        elif a == b.active - b.shared_experts:
            hint = "the shared experts run for every token: they are active"
        elif a == b.active + b.mtp:
            hint = "leave the MTP module out (as the report's 37B does)"
        elif a == b.active + bias:
            hint = ("you counted the routers' selection bias: by this lesson's convention it is a buffer "
                    "(the balancing rule moves it, not gradients), so it is not a parameter")
        elif a == b.active - b.router:
            hint = "every token is scored against all E router centroids of each MoE layer: they are active"
        elif a == b.active - b.n_moe_layers * b.n_active * b.expert:
            hint = "keep the K routed experts the token is sent to in each MoE layer: they are active"
        else:
            hint = (f"for {k} you said {a:,}; start from the total and remove, in each MoE layer, the "
                    "E − K experts the token does not visit")
    return report(not wrong, name, hint)


def check_rope_permutation(fn) -> Checked:
    """``fn(rope_dim)`` → a LongTensor p with ``ours = theirs[p]``: the row order that turns DeepSeek's
    interleaved RoPE pairs (x0, x1), (x2, x3), ... into our rotate-half layout."""
    name = "RoPE de-interleave permutation"
    dims = [2, 8, 64]
    answers = [call_or_none(fn, d) for d in dims]
    if any(a is None for a in answers):
        return not_attempted(name)
    ok = all(torch.is_tensor(a) and torch.equal(a.long(), rope_deinterleave_perm(d))
             for a, d in zip(answers, dims))
    hint = "the even rows first (x0, x2, ...), then the odd ones (x1, x3, ...)"
    if torch.is_tensor(answers[1]) and torch.equal(answers[1].long(), rope_deinterleave_perm(8).argsort()):
        hint = "that is the inverse (it goes from our layout to the checkpoint's)"
    return report(ok, name, hint)


def check_tokens_per_forward(fn) -> Checked:
    """``fn(acceptance)`` → expected tokens per main-model forward pass when one MTP draft is checked per
    pass and accepted with probability ``acceptance`` (long generations, prefill ignored)."""
    name = "tokens per forward pass from the acceptance rate"
    rates = [0.0, 0.5, 0.85, 1.0]
    answers = [call_or_none(fn, a) for a in rates]
    if any(a is None for a in answers):
        return not_attempted(name)
    ok = all(isinstance(a, (int, float)) and abs(a - (1 + r)) < 1e-9 for a, r in zip(answers, rates))
    return report(ok, name, "every pass yields the main model's own token; an accepted draft adds one more")
