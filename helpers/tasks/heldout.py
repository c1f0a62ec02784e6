"""Problems held out for real: a fixed set of addition problems that no training stage of lesson 08 sees.

Two-digit addition has only 100 × 100 = 10,000 problems. A student fine-tuned on 64,000 random ones has
seen nearly every one of them, so "accuracy on 300 random test problems" measures recall as much as
addition. Here a fixed set of (a, b) pairs is set aside once (``held_out_problems``: ``N_HELD_OUT``
distinct pairs, drawn by their own generator, ``HELD_OUT_SEED``), and every training stage draws its
problems through ``sample_training_problems``, which never returns one of them. The set is closed under
swapping the operands: if (a, b) is held out, so is (b, a), so a model cannot answer a held-out problem
by having learnt its mirror image (a + b = b + a).

Accuracy on ``held_out_problems()`` is *held-out accuracy*. Accuracy on problems drawn like the training
ones (``in_distribution_problems``) is *in-distribution accuracy*: those problems may well have been
trained on, and the two side by side show how much of a score is recall.

Which stages honour the split: the base student and both arms of ``helpers.experiments.distill`` when called
with ``held_out=True``, and every stage of ``helpers.experiments.rl_base``: its scratchpad teacher, its bases
and its three arms (``sample_training_problems`` in every one of them; ``tests/test_rl_base.py`` spies on
them). The shipped teacher of lesson 08's first race (``scripts/train_teacher.py``) was trained before the
split existed and has seen practically every two-digit problem (128,000 random draws); its held-out score is
recall, which is why the base-strength sweep trains a teacher of its own.
"""

from __future__ import annotations

import torch

from ..validate import InputTypeError, check_int
from .arith import MAX_DIGITS, Problem, sample_problems

N_HELD_OUT = 300  # distinct held-out pairs before closing under swap (≈ 6% of the 10,000 two-digit problems)
HELD_OUT_SEED = 2029
HELD_OUT_DIGITS = 2
_CACHE: dict = {}


def held_out_problems(n: int = N_HELD_OUT, digits: int = HELD_OUT_DIGITS,
                      seed: int = HELD_OUT_SEED) -> list[Problem]:
    """``n`` distinct problems, in a fixed order, that the training samplers exclude (with their mirrors)."""
    n = check_int("n", n, min_value=1)
    digits = check_int("digits", digits, min_value=1, max_value=MAX_DIGITS)
    if n > (10 ** digits) ** 2 // 4:
        raise ValueError(f"n={n} would hold out more than a quarter of the {(10 ** digits) ** 2} problems "
                         f"with digits={digits}; hold out fewer")
    key = (n, digits, seed)
    if key not in _CACHE:
        gen = torch.Generator().manual_seed(seed)
        seen: set[tuple[int, int]] = set()
        out: list[Problem] = []
        while len(out) < n:
            for p in sample_problems(n, digits, gen):
                if (p.a, p.b) not in seen and len(out) < n:
                    seen |= {(p.a, p.b), (p.b, p.a)}
                    out.append(p)
        _CACHE[key] = (out, frozenset(seen))
    return list(_CACHE[key][0])


def held_out_pairs(n: int = N_HELD_OUT, digits: int = HELD_OUT_DIGITS,
                   seed: int = HELD_OUT_SEED) -> frozenset:
    """Every excluded (a, b): the held-out problems and their mirrors (b, a)."""
    held_out_problems(n, digits, seed)
    return _CACHE[(n, digits, seed)][1]


def is_held_out(problem: Problem) -> bool:
    if not isinstance(problem, Problem):
        raise InputTypeError(f"problem must be a Problem, got {type(problem).__name__}")
    return (problem.a, problem.b) in held_out_pairs()


def sample_training_problems(n: int, digits: int = HELD_OUT_DIGITS,
                             generator: torch.Generator | None = None) -> list[Problem]:
    """``n`` problems drawn like ``arith.sample_problems`` (both operands uniform), rejecting held-out
    pairs: the uniform distribution over the problems that remain. Reproducible with a ``generator``."""
    n = check_int("n", n, min_value=0)
    excluded = held_out_pairs() if digits == HELD_OUT_DIGITS else frozenset()
    out: list[Problem] = []
    while len(out) < n:
        out += [p for p in sample_problems(n - len(out), digits, generator) if (p.a, p.b) not in excluded]
    return out


def in_distribution_problems(n: int = N_HELD_OUT, digits: int = HELD_OUT_DIGITS,
                             seed: int = 99) -> list[Problem]:
    """``n`` problems drawn as the training stages draw theirs (held-out pairs excluded): a test of what
    training could have seen. Seed 99 is the committed sweep's test seed."""
    return sample_training_problems(n, digits, torch.Generator().manual_seed(seed))
