"""Lesson 05 exercises: what each MTP depth sees and predicts, the weighted MTP loss, and how often
the main model would accept module 1's drafts (teacher-forced acceptance, as
``helpers.speculative.teacher_forced_acceptance`` counts it). Reference solutions are in
``tests/test_exercises.py``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

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


def _acceptance_case(seed: int):
    """Main-model and module-1 logits, and targets, built so that the right alignment, the
    same-position alignment and "the draft is right" all give different fractions."""
    gen = torch.Generator().manual_seed(seed)
    B, T, V = 3, 16, 11
    main = torch.randn(B, T, V, generator=gen)  # (B, T, V): position i scores t_{i+1}
    draft = torch.randn(B, T - 1, V, generator=gen)  # (B, T-1, V): position i scores t_{i+2}
    agree = torch.rand(B, T - 1, generator=gen) < 0.7  # where the draft copies the main model's choice at i+1
    draft[agree] += 10 * F.one_hot(main[:, 1:].argmax(-1), V).float()[agree]
    targets = torch.randint(0, V, (B, T), generator=gen)  # (B, T): t_{i+1}
    right = torch.rand(B, T, generator=gen) < 0.5  # where the main model is right
    targets[right] = main.argmax(-1)[right]
    return main, draft, targets


def _acceptance(main_logits, draft_logits) -> float:
    """Teacher-forced acceptance: module 1's guess for t_{i+2} (at position i) against the main model's
    own greedy choice for that token (at position i+1)."""
    return (draft_logits.argmax(-1) == main_logits[:, 1:].argmax(-1)).float().mean().item()


def check_acceptance(fn) -> Checked:
    """``fn(main_logits, draft_logits, targets)`` → the fraction of drafts the main model would accept:
    ``main_logits`` (B, T, V) at position i score t_{i+1}, ``draft_logits`` (B, T-1, V) from MTP module 1
    at position i score t_{i+2}, ``targets`` (B, T) are the true next tokens t_{i+1}."""
    name = "teacher-forced acceptance"
    cases = [_acceptance_case(seed) for seed in (0, 1)]
    answers = [call_or_none(fn, *case) for case in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    try:
        got = [float(a) for a in answers]
    except (TypeError, ValueError, RuntimeError):
        return report(False, name, "return one number, the fraction of accepted drafts")
    want = [_acceptance(m, d) for m, d, _ in cases]
    ok = all(abs(g - w) < 1e-6 for g, w in zip(got, want))
    hint = ("a draft is accepted when it equals the main model's greedy choice for the same token, "
            "t_{i+2}, which the main model makes at position i+1")
    main, draft, targets = cases[0]
    same_position = (draft.argmax(-1) == main[:, :-1].argmax(-1)).float().mean().item()
    correct = (draft.argmax(-1) == targets[:, 1:]).float().mean().item()
    if abs(got[0] - same_position) < 1e-6:
        hint = ("you compared the draft with the main model's choice at the same position i, which is "
                "for t_{i+1}; the draft is for t_{i+2}: shift the main model's choices by one")
    elif abs(got[0] - correct) < 1e-6:
        hint = ("that is how often the draft is right; acceptance asks whether it equals the main "
                "model's own choice, right or wrong (greedy output never changes)")
    return report(ok, name, hint)
