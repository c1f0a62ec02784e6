"""Lesson 08 exercises: GRPO's loss where the ratio has left 1, its group-relative advantages, and how
often a group carries no signal. Reference solutions are in ``tests/test_exercises.py``."""

from __future__ import annotations

import torch

from ..grpo import group_advantages
from . import Checked, call_or_none, not_attempted, report


def check_advantages(fn) -> Checked:
    """``fn(rewards (B, Gs))`` → (B, Gs) group-normalised advantages (population std), 0 for flat groups."""
    name = "group-relative advantages"
    cases = [torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]),
             torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]]), torch.tensor([[0.2, 0.5, 0.9]])]
    answers = [call_or_none(fn, c.clone()) for c in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    want = [group_advantages(c) for c in cases]
    ok = all(torch.is_tensor(a) and a.shape == w.shape and torch.allclose(a.float(), w, atol=1e-4)
             for a, w in zip(answers, want))
    hint = ""
    if not ok:
        a = answers[0]
        if torch.is_tensor(a) and a.shape == want[0].shape and torch.isnan(a).any():
            hint = "a group whose rewards are all equal has std 0: give it advantage 0"
        elif torch.is_tensor(answers[1]) and torch.allclose(
                answers[1].float(), (cases[1] - cases[1].mean()) / (cases[1].std() + 1e-6), atol=1e-4):
            hint = "use the population std (unbiased=False), as the lesson does"
        else:
            hint = "per row: subtract the row's mean, divide by the row's std (+1e-6)"
    return report(ok, name, hint)


def _grpo_variant(logp, old, ref, rewards, mask, eps, beta, variant=""):
    """The reference loss, or one of the wrong answers learners give (to name the mistake in a hint)."""
    if variant == "not normalised":
        adv = (rewards - rewards.mean(dim=1, keepdim=True)).flatten()
    else:
        adv = group_advantages(rewards).flatten()  # (B·Gs,)
    ratio, A = torch.exp(logp - old), adv[:, None]  # (B·Gs, n), (B·Gs, 1)
    unclipped, clipped = ratio * A, ratio.clamp(1 - eps, 1 + eps) * A
    surrogate = {"no clip": unclipped, "wrong side": torch.maximum(unclipped, clipped),
                 "no min": clipped}.get(variant, torch.minimum(unclipped, clipped))
    d = ref - logp if variant != "kl flipped" else logp - ref
    kl = d.exp() - d - 1  # k3 with r = π_ref / π_θ
    lengths = mask.sum(dim=1).clamp(min=1)

    def per_sequence(x):
        return ((x * mask).sum(dim=1) / lengths).mean()

    sign = -1 if variant == "kl sign" else 1
    return -(per_sequence(surrogate) - sign * beta * per_sequence(kl))


_GRPO_HINTS = {
    "no clip": "clip the ratio: min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A), so a token stops pushing once ρ passes "
               "1 ± ε",
    "wrong side": "take the min of the two branches, not the max: the clip only ever removes a gain",
    "no min": "keep the unclipped branch too: min(ρ·A, clip(ρ)·A); the clipped one alone rewards a ratio "
              "that moved the wrong way",
    "not normalised": "normalise the advantages within each group: (r − mean) / (std + 1e-6), population std",
    "kl sign": "the KL is a penalty: loss = −(surrogate − β·KL)",
    "kl flipped": "k3 uses r = π_ref / π_θ: KL = exp(ref − logp) − (ref − logp) − 1",
}


def check_grpo_loss(fn) -> Checked:
    """``fn(logprobs (B·Gs, n), old_logprobs, ref_logprobs, rewards (B, Gs), mask (B·Gs, n), clip_eps, beta)``
    → the scalar GRPO loss, on cases where the ratio is far from 1 (so the clip matters)."""
    name = "the GRPO loss"
    gen = torch.Generator().manual_seed(8)
    cases = []
    groups = [([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0]], 0.2, 0.1),
              ([[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]], 0.1, 0.5)]
    for rewards, eps, beta in groups:
        r = torch.tensor(rewards)
        rows, n = r.numel(), 5
        old = torch.randn(rows, n, generator=gen).abs().neg() - 0.1  # log-probs < 0
        logp = old + 0.5 * torch.randn(rows, n, generator=gen)  # ρ spread over ≈ [0.4, 2.7]
        ref = logp + 0.4 * torch.randn(rows, n, generator=gen)
        mask = (torch.arange(n)[None] < torch.randint(2, n + 1, (rows, 1), generator=gen)).float()
        cases.append((logp, old, ref, r, mask, eps, beta))
    answers = [call_or_none(fn, *(c.clone() if torch.is_tensor(c) else c for c in case)) for case in cases]
    if any(a is None for a in answers):
        return not_attempted(name)

    def close(a, want):
        return torch.is_tensor(a) and a.numel() == 1 and abs(a.item() - want.item()) < 1e-4

    ok = all(close(a, _grpo_variant(*c)) for a, c in zip(answers, cases))
    hint = ""
    if not ok:
        hint = next((h for v, h in _GRPO_HINTS.items() if all(close(a, _grpo_variant(*c, variant=v))
                                                                 for a, c in zip(answers, cases))),
                    "per token ρ = exp(logp − old), surrogate min(ρA, clip(ρ, 1 ± ε)A), KL k3; average over "
                    "each sequence's masked tokens, then over sequences; loss = −(surrogate − β·KL)")
    return report(ok, name, hint)


def check_zero_signal(fn) -> Checked:
    """``fn(p, Gs)`` → the probability that a group of Gs independent answers, each right with probability p,
    carries no signal (all right or all wrong): p^Gs + (1 − p)^Gs."""
    name = "the share of groups with no signal"
    cases = [(0.05, 8), (0.5, 4), (0.9, 8), (0.3, 16)]
    answers = [call_or_none(fn, *c) for c in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    want = [p ** g + (1 - p) ** g for p, g in cases]
    ok = all(isinstance(a, (int, float)) and abs(a - w) < 1e-9 for a, w in zip(answers, want))
    hint = ""
    if not ok:
        if all(isinstance(a, (int, float)) and abs(a - (1 - p) ** g) < 1e-9
               for a, (p, g) in zip(answers, cases)):
            hint = "a group that is all right has advantage 0 too: add p^Gs"
        else:
            hint = "the group has no signal when every answer is wrong, or every answer is right"
    return report(ok, name, hint)
