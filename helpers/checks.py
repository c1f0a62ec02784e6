"""Small checks used by notebooks and tests: shapes and closeness with a useful message."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .validate import InputTypeError


def check_shape(t: torch.Tensor, expected: tuple, name: str = "tensor") -> torch.Tensor:
    """Raise ``ValueError`` unless ``t.shape`` matches ``expected`` (``None`` matches any size)."""
    shape = tuple(t.shape)
    ok = len(shape) == len(expected) and all(e is None or e == s for s, e in zip(shape, expected))
    if not ok:
        raise ValueError(f"{name} has shape {shape}, expected {tuple(expected)}")
    return t


def max_mean_diff(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Max and mean absolute difference (NaN if either side holds a NaN or an unmatched inf)."""
    diff = (a.detach().double() - b.detach().double()).abs()
    return diff.max().item(), diff.mean().item()


def _as_tensor(x, name: str) -> torch.Tensor:
    if torch.is_tensor(x):
        return x.detach()
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputTypeError(f"{name} must be a tensor or an array of numbers, "
                             f"got {type(x).__name__}") from err


def non_finite_problems(actual: torch.Tensor, expected: torch.Tensor) -> list[str]:
    """What makes two tensors differ before any tolerance applies: a NaN on either side, or an inf
    that the other side does not hold with the same sign. Empty when there is none."""
    problems = []
    for label, t, other in (("actual", actual, expected), ("expected", expected, actual)):
        n_nan = int(torch.isnan(t).sum())
        if n_nan:
            problems.append(f"{n_nan} NaN in {label}")
        unmatched_inf = torch.isinf(t) & (t != other)  # +inf against +inf is a match, anything else not
        n_inf = int(unmatched_inf.sum())
        if n_inf:
            problems.append(f"{n_inf} inf in {label} not matched by the same inf in the other")
    return problems


def assert_close(actual, expected, *, atol: float = 1e-5, rtol: float = 1e-5,
                 name: str = "values") -> str:
    """Like ``torch.testing.assert_close``, but the message (and the return value) names the max and
    mean absolute difference, so a notebook can print how close two implementations are.

    NaN never matches anything (not even NaN), and an inf matches only the same inf on the other side:
    a proof of equality must not pass because both sides broke the same way.
    """
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol >= 0 \
            or isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not rtol >= 0:
        raise ValueError(f"atol={atol!r} and rtol={rtol!r} must be numbers >= 0")
    actual, expected = _as_tensor(actual, "actual"), _as_tensor(expected, "expected")
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{name}: shapes differ, {tuple(actual.shape)} vs {tuple(expected.shape)}")
    a, e = actual.double(), expected.double()
    problems = non_finite_problems(a, e)
    finite = torch.isfinite(a) & torch.isfinite(e)
    diff = (a - e).abs()[finite]
    tol = (atol + rtol * e.abs())[finite]
    bad = int((diff > tol).sum())
    mx = diff.max().item() if diff.numel() else 0.0
    mean = diff.mean().item() if diff.numel() else 0.0
    if bad:
        problems.append(f"{bad} of {expected.numel()} elements differ beyond atol={atol}, rtol={rtol}")
    if problems:
        raise AssertionError(f"{name}: " + "; ".join(problems) +
                             f"; max diff {mx:.3e}, mean diff {mean:.3e} (over finite elements)")
    return f"{name} match: max diff {mx:.2e}, mean diff {mean:.2e}"


@dataclass(frozen=True)
class TokenAgreement:
    """Two greedy decodes compared where a kernel's rounding cannot decide them: see ``greedy_agreement``."""

    identical: bool
    first_difference: int | None  # the first generated position where they differ (None: nowhere)
    margin: float | None  # the top-2 logit margin there
    tol: float

    @property
    def ok(self) -> bool:
        return self.identical or (self.margin is not None and self.margin <= self.tol)

    @property
    def sentence(self) -> str:
        if self.identical:
            return "identical"
        if self.ok:
            return (f"identical up to new token {self.first_difference}, where the top two logits are "
                    f"{self.margin:.1e} apart (≤ {self.tol:g}, a near tie any kernel may break either way)")
        return (f"they differ at new token {self.first_difference}, where the top two logits are "
                f"{self.margin:.3g} apart (more than {self.tol:g}: a real difference)")


def greedy_agreement(tokens, other_tokens, step_logits, *, tol: float = 1e-4) -> TokenAgreement:
    """Compare two greedy continuations of the same prompt (``(B, n)`` new tokens each) the way two
    kernels can be held to: identical, or identical up to the first position where ``step_logits``
    (one side's ``(B, n, V)`` logits for the new tokens) put the top two choices within ``tol`` of
    each other. From such a near tie on, a different float rounding legitimately picks the other token
    and the continuations part ways; a difference where the margin is larger is a real one."""
    a, b = _as_tensor(tokens, "tokens"), _as_tensor(other_tokens, "other_tokens")
    logits = _as_tensor(step_logits, "step_logits")
    if a.shape != b.shape or a.dim() != 2 or tuple(logits.shape[:2]) != tuple(a.shape):
        raise ValueError(f"tokens {tuple(a.shape)} and other_tokens {tuple(b.shape)} must both be (B, n), "
                         f"and step_logits (B, n, V), got {tuple(logits.shape)}")
    differ = (a != b).any(0).nonzero()
    if differ.numel() == 0:
        return TokenAgreement(True, None, None, tol)
    t = int(differ[0])
    rows = (a[:, t] != b[:, t]).nonzero().flatten()
    top2 = logits[rows, t].double().topk(2, dim=-1).values  # (rows, 2)
    margin = float((top2[:, 0] - top2[:, 1]).max())
    return TokenAgreement(False, t, margin, tol)
