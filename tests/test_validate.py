"""helpers.validate: the checks every entry point uses (the table of bad inputs across the public API
is tests/test_bad_inputs.py; here the checks themselves)."""

import numpy as np
import pytest
import torch

from helpers.validate import (
    InputTypeError,
    check_activations,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_token_ids,
)


def test_check_int_accepts_integers_only():
    assert check_int("n", 3) == 3 and check_int("n", np.int64(3)) == 3
    for bad in (2.0, "3", True, None):
        with pytest.raises(TypeError, match="n must be an int"):
            check_int("n", bad)
    with pytest.raises(ValueError, match=r"n=0 must be positive"):
        check_int("n", 0, min_value=1)
    with pytest.raises(ValueError, match=r"Cfg\.n=9 must be <= 8"):
        check_int("n", 9, max_value=8, where="Cfg")


def test_check_number_refuses_nan_inf_and_wrong_sides():
    assert check_number("x", 1) == 1.0
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="must be finite"):
            check_number("x", bad)
    with pytest.raises(ValueError, match=r"x=0\.0 must be > 0"):
        check_number("x", 0, min_value=0, strict_min=True)
    assert check_number("x", 0, min_value=0) == 0.0
    with pytest.raises(TypeError, match="x must be a number"):
        check_number("x", "1")


def test_input_type_errors_are_also_value_errors():
    """Code that catches the course's usual ValueError catches a wrong type too."""
    with pytest.raises(ValueError):
        check_bool("flag", 1)
    assert issubclass(InputTypeError, TypeError) and issubclass(InputTypeError, ValueError)
    with pytest.raises(ValueError, match=r"mode='x' must be one of \('a', 'b'\)"):
        check_choice("mode", "x", ("a", "b"))


def test_token_ids_allow_the_ignore_index_only_where_asked():
    t = torch.tensor([[1, -100]])
    check_token_ids(t, 256, allow_ignore=True)
    with pytest.raises(ValueError, match=r"outside \[0, 256\).*-100"):
        check_token_ids(t, 256)
    with pytest.raises(ValueError, match=r"\[-6, -5, -4, -3, -2\] …"):
        check_token_ids(torch.arange(-6, 0).view(1, -1), 256)


def test_activations_under_autocast_may_differ_in_dtype():
    w = torch.zeros(4, 8)
    with pytest.raises(TypeError, match="float64"):
        check_activations(torch.zeros(1, 2, 8, dtype=torch.float64), 8, w)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        check_activations(torch.zeros(1, 2, 8, dtype=torch.bfloat16), 8, w)
