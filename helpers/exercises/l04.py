"""Lesson 04 exercises: the Switch balance loss's f and P by hand, the aux-loss-free bias update, and
MaxVio. Reference solutions are in ``tests/test_moe.py``."""

from __future__ import annotations

import torch

from ..moe import loss_free_update, max_vio, switch_aux_loss
from . import Checked, call_or_none, not_attempted, report


def _routing_case(seed: int, N: int = 12, E: int = 6, K: int = 2):
    gen = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(N, E, generator=gen), dim=-1)  # (N, E)
    indices = probs.topk(K, dim=-1).indices  # (N, K)
    return probs, indices


def check_f_and_P(fn) -> Checked:
    """``fn(probs (N, E), indices (N, K))`` → ``(f, P)``, each (E,): f_i = share of the N·K routed
    assignments that went to expert i (hard counts), P_i = mean router probability of expert i; then
    ``α·E·Σ f_i P_i`` must be the Switch loss."""
    name = "f_i and P_i"
    cases = [_routing_case(s, K=k) for s, k in [(0, 2), (1, 1), (2, 3)]]
    answers = [call_or_none(fn, p, i) for p, i in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    ok, hint = True, "f counts hard assignments (bincount of indices / (N·K)); P averages probs over tokens"
    for (probs, indices), a in zip(cases, answers):
        if not (isinstance(a, tuple) and len(a) == 2 and all(torch.is_tensor(t) for t in a)):
            return report(False, name, "return a tuple (f, P) of two (E,) tensors")
        f, P = (t.double() for t in a)
        E = probs.shape[1]
        want_f = torch.bincount(indices.flatten(), minlength=E).double() / indices.numel()
        want_P = probs.double().mean(0)
        if f.shape == want_f.shape and torch.allclose(f, probs.double().mean(0)):
            hint = "f must come from the hard choices (indices), not from the probabilities"
        elif f.shape == want_f.shape and torch.allclose(f * indices.shape[1], want_f * indices.shape[1] ** 2):
            hint = "divide the counts by N·K (all assignments), not by N"
        good = (f.shape == want_f.shape and P.shape == want_P.shape and torch.allclose(f, want_f)
                and torch.allclose(P, want_P, atol=1e-6))
        if good:  # and they rebuild the library's loss
            good = torch.allclose(0.01 * E * (f * P).sum(), switch_aux_loss(probs, indices, 0.01).double(),
                                  atol=1e-7)
        ok &= bool(good)
    return report(ok, name, hint)


def check_bias_update(fn) -> Checked:
    """``fn(bias (E,), load (E,), gamma)`` → the new bias after one aux-loss-free step."""
    name = "bias update"
    cases = [(torch.zeros(4), torch.tensor([10.0, 2.0, 4.0, 4.0]), 0.001),
             (torch.tensor([0.1, -0.2, 0.0, 0.05, 0.0, 0.0]),
              torch.tensor([3.0, 3.0, 9.0, 0.0, 3.0, 0.0]), 0.01),
             (torch.tensor([0.5, 0.5]), torch.tensor([7.0, 7.0]), 0.1)]
    answers = [call_or_none(fn, b.clone(), l.clone(), g) for b, l, g in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    wants = [loss_free_update(b, l, g) for b, l, g in cases]
    ok = all(torch.is_tensor(a) and a.shape == w.shape and torch.allclose(a.float(), w, atol=1e-7)
             for a, w in zip(answers, wants))
    hint = "b_i + γ·sign(mean load − load_i): overloaded experts go down, underloaded ones up"
    flipped = [2 * b - w for (b, _, _), w in zip(cases, wants)]
    if all(torch.is_tensor(a) and a.shape == f.shape and torch.allclose(a.float(), f, atol=1e-7)
           for a, f in zip(answers, flipped)):
        hint = "the sign is backwards: an expert with more than the mean load must lose bias"
    return report(ok, name, hint)


def check_max_vio(fn) -> Checked:
    """``fn(counts (E,))`` → MaxVio = (max load − mean load) / mean load, as a float."""
    name = "MaxVio"
    cases = [torch.tensor([4, 4, 4, 4]), torch.tensor([8, 0, 0, 0]), torch.tensor([5, 1, 3, 3, 0, 6])]
    answers = [call_or_none(fn, c) for c in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    ok = all(abs(float(a) - max_vio(c).item()) < 1e-6 for a, c in zip(answers, cases))
    return report(ok, name, "(max − mean) / mean of the loads; 0 means perfectly balanced")
