"""Small checks used by notebooks and tests: shapes and closeness with a useful message."""

from __future__ import annotations

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
