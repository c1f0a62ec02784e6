import pytest
import torch

from helpers.checks import assert_close, check_shape


def test_check_shape():
    t = torch.zeros(2, 3, 4)
    assert check_shape(t, (2, None, 4)) is t
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        check_shape(t, (2, 3))


def test_assert_close_reports_differences():
    a = torch.zeros(10)
    msg = assert_close(a + 1e-7, a)
    assert "max diff" in msg
    with pytest.raises(AssertionError, match="max diff 1.000e-02"):
        assert_close(a + torch.tensor([1e-2] + [0.0] * 9), a)
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_close(a, torch.zeros(5))


def test_greedy_agreement_forgives_a_near_tie_and_nothing_else():
    from helpers.checks import greedy_agreement

    logits = torch.zeros(1, 4, 5)
    logits[0, :, 1] = 3.0  # token 1 clearly wins at every step ...
    logits[0, 2, 2] = 3.0 - 5e-5  # ... but step 2 is a near tie between tokens 1 and 2
    ours = torch.tensor([[1, 1, 1, 1]])
    assert greedy_agreement(ours, ours.clone(), logits).sentence == "identical"
    tie = greedy_agreement(ours, torch.tensor([[1, 1, 2, 4]]), logits, tol=1e-4)
    assert tie.ok and not tie.identical and tie.first_difference == 2 and "near tie" in tie.sentence
    real = greedy_agreement(ours, torch.tensor([[1, 3, 1, 1]]), logits, tol=1e-4)
    assert not real.ok and real.first_difference == 1 and real.margin == pytest.approx(3.0)
    assert "real difference" in real.sentence
    with pytest.raises(ValueError, match="must both be"):
        greedy_agreement(ours, ours[:, :3], logits)
