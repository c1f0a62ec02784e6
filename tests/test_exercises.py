"""Every exercise check accepts the reference solution, rejects a wrong answer and tolerates None."""

import torch

from helpers.config import preset
from helpers.exercises import l00, solutions


def test_l00_param_count():
    cfg = preset("tiny")
    assert l00.check_param_count(solutions.l00_param_count(cfg), cfg)
    assert not l00.check_param_count(solutions.l00_param_count(cfg) - 1, cfg)
    assert not l00.check_param_count(None, cfg)


def test_l00_rmsnorm():
    assert l00.check_rmsnorm(solutions.l00_rmsnorm)
    assert not l00.check_rmsnorm(lambda x, w, eps: x * w)  # forgot to normalise

    def todo(x, w, eps):
        raise NotImplementedError

    assert not l00.check_rmsnorm(todo)


def test_l00_causal_mask():
    assert l00.check_causal_mask(solutions.l00_causal_mask)
    assert not l00.check_causal_mask(lambda t, s: torch.ones(t, s, dtype=torch.bool).tril())
