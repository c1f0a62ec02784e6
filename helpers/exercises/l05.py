"""Lesson 05 exercises: what each MTP depth sees and predicts, the weighted MTP loss, and what an
acceptance rate buys in speculative decoding. Reference solutions are in ``tests/test_mtp.py``."""

from __future__ import annotations

import torch

from ..mtp import depth_inputs
from . import Checked, call_or_none, not_attempted, report


def check_depth_targets(fn) -> Checked:
    """``fn(idx, targets, k)`` → (tokens depth k embeds, tokens it must predict), each (B, T-k)."""
    name = "depth-k inputs and targets"
    gen = torch.Generator().manual_seed(5)
    seq = torch.randint(0, 256, (2, 13), generator=gen)
    idx, targets = seq[:, :-1], seq[:, 1:]
    cases = [1, 2, 3]
    answers = [call_or_none(fn, idx, targets, k) for k in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    ok, hint = True, "depth k at position i embeds t_{i+k} = idx[:, i+k] and predicts t_{i+k+1}"
    for k, a in zip(cases, answers):
        want_in, want_out = depth_inputs(idx, targets, k)
        if not (isinstance(a, tuple) and len(a) == 2 and all(torch.is_tensor(t) for t in a)):
            return report(False, name, "return a tuple (tokens_in, wanted) of two tensors")
        got_in, got_out = a
        if got_in.shape == want_in.shape and got_out.shape == want_out.shape and torch.equal(got_in, got_out):
            hint = "label leak! you ask depth k for the very token it embeds; predict one further"
        ok &= (got_in.shape == want_in.shape and torch.equal(got_in, want_in)
               and got_out.shape == want_out.shape and torch.equal(got_out, want_out))
    return report(ok, name, hint)


def check_mtp_loss(fn) -> Checked:
    """``fn(depth_losses, lam)`` → the MTP loss DeepSeek-V3 adds to the main loss (Eq. 25)."""
    name = "MTP loss"
    cases = [([2.0], 0.3), ([2.0, 3.0, 4.0], 0.3), ([1.5, 2.5], 0.1)]
    answers = [call_or_none(fn, [torch.tensor(x) for x in ls], lam) for ls, lam in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    expected = [lam / len(ls) * sum(ls) for ls, lam in cases]
    ok = all(abs(float(a) - e) < 1e-5 for a, e in zip(answers, expected))
    hint = "average the depth losses (divide by D) and weight them by λ"
    if abs(float(answers[1]) - 0.3 * 9.0) < 1e-5:
        hint = "you summed the depths without dividing by D"
    return report(ok, name, hint)


def check_tokens_per_forward(fn) -> Checked:
    """``fn(acceptance)`` → tokens per main forward pass in the long run (one draft per pass)."""
    name = "tokens per forward pass"
    cases = [0.0, 0.5, 0.85, 1.0]
    answers = [call_or_none(fn, a) for a in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    ok = all(abs(float(ans) - (1 + a)) < 1e-6 for ans, a in zip(answers, cases))
    return report(ok, name, "every pass yields the main model's own token, plus the draft when accepted")


def check_predicted_speedup(fn) -> Checked:
    """``fn(acceptance, step_ms, verify_ms, draft_ms)`` → speed-up over plain cached decoding, where
    one plain step costs ``step_ms``, and one speculative round a 2-token ``verify_ms`` pass plus a
    ``draft_ms`` MTP pass."""
    name = "predicted speed-up"
    cases = [(0.8, 1.0, 1.1, 0.3), (0.0, 1.0, 1.0, 0.5), (0.9, 2.0, 2.0, 0.05)]
    answers = [call_or_none(fn, *c) for c in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    expected = [(1 + a) * s / (v + d) for a, s, v, d in cases]
    ok = all(abs(float(x) - e) < 1e-6 for x, e in zip(answers, expected))
    return report(ok, name, "time per token: plain step_ms; speculative (verify_ms + draft_ms) / (1 + a)")
