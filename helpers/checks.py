"""Small checks used by notebooks and tests: shapes and closeness with a useful message."""

from __future__ import annotations

import torch


def check_shape(t: torch.Tensor, expected: tuple, name: str = "tensor") -> torch.Tensor:
    """Raise ``ValueError`` unless ``t.shape`` matches ``expected`` (``None`` matches any size)."""
    shape = tuple(t.shape)
    ok = len(shape) == len(expected) and all(e is None or e == s for s, e in zip(shape, expected))
    if not ok:
        raise ValueError(f"{name} has shape {shape}, expected {tuple(expected)}")
    return t


def max_mean_diff(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    diff = (a.detach().double() - b.detach().double()).abs()
    return diff.max().item(), diff.mean().item()


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float = 1e-5,
                 rtol: float = 1e-5, name: str = "values") -> str:
    """Like ``torch.testing.assert_close``, but the message (and the return value) names the max and
    mean absolute difference, so a notebook can print how close two implementations are."""
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{name}: shapes differ, {tuple(actual.shape)} vs {tuple(expected.shape)}")
    mx, mean = max_mean_diff(actual, expected)
    tol = atol + rtol * expected.detach().double().abs()
    bad = ((actual.detach().double() - expected.detach().double()).abs() > tol).sum().item()
    if bad:
        raise AssertionError(f"{name}: {bad} of {expected.numel()} elements differ beyond "
                             f"atol={atol}, rtol={rtol}; max diff {mx:.3e}, mean diff {mean:.3e}")
    return f"{name} match: max diff {mx:.2e}, mean diff {mean:.2e}"
