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
