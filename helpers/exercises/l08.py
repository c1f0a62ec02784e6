"""Lesson 08 exercises: the distillation loss, GRPO's group-relative advantages, and the compute of one
GRPO step. Reference solutions are in ``tests/test_exercises.py``."""

from __future__ import annotations

import torch

from ..distill import kd_loss
from ..grpo import group_advantages
from . import Checked, call_or_none, not_attempted, report


def check_kd_loss(fn) -> Checked:
    """``fn(student_logits (N, V), teacher_logits (N, V), targets (N,), tau, alpha)`` → scalar tensor."""
    name = "the distillation loss"
    gen = torch.Generator().manual_seed(0)
    cases = [(torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen),
              torch.randint(0, 7, (5,), generator=gen), tau, alpha) for tau, alpha in [(2.0, 0.5), (1.0, 0.3),
                                                                                       (4.0, 0.9)]]
    answers = [call_or_none(fn, *c) for c in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    want = [kd_loss(*c).loss for c in cases]
    ok = all(torch.is_tensor(a) and a.numel() == 1 and abs(a.item() - w.item()) < 1e-4
             for a, w in zip(answers, want))
    hint = ""
    if not ok:
        s, t, y, tau, alpha = cases[0]
        res = kd_loss(s, t, y, tau, alpha)
        a = answers[0].item() if torch.is_tensor(answers[0]) and answers[0].numel() == 1 else None
        if a is not None and abs(a - (alpha * res.kl + (1 - alpha) * res.ce).item()) < 1e-4:
            hint = "multiply the KL term by τ²: softening shrinks its gradient by 1/τ²"
        elif a is not None and abs(a - (alpha * tau ** 2 * res.kl).item()) < 1e-4:
            hint = "add the hard-label term (1 − α)·CE(student logits, targets), without the temperature"
        else:
            hint = ("KL(p_t ‖ p_s) = Σ p_t (log p_t − log p_s), both at temperature τ, averaged over the N "
                    "rows")
    return report(ok, name, hint)


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


def check_grpo_step_compute(fn) -> Checked:
    """``fn(P, Gs, T, n)`` → token-passes of one GRPO step: generation P·Gs·(T + n − 1) plus training
    3·P·Gs·(T + n − 1)."""
    name = "the compute of one GRPO step"
    cases = [(16, 8, 6, 4), (1, 2, 3, 1), (4, 4, 7, 5)]
    answers = [call_or_none(fn, *c) for c in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    want = [4 * P * G * (T + n - 1) for P, G, T, n in cases]
    ok = all(isinstance(a, (int, float)) and a == w for a, w in zip(answers, want))
    hint = ""
    if not ok:
        P, G, T, n = cases[0]
        if answers[0] == 3 * P * G * (T + n - 1):
            hint = "sampling the completions costs forward passes too: P·Gs·(T + n − 1) more"
        elif answers[0] == P * G * (T + n - 1):
            hint = "the training pass over the same positions costs 3 token-passes each (forward + backward)"
        else:
            hint = ("P·Gs completions, each T + n − 1 positions, once forward (sampling) and once "
                    "forward + backward")
    return report(ok, name, hint)
