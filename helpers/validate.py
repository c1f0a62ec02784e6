"""Input checks shared by every public entry point, so a bad input fails where it enters, with an error
that names the argument, the value it got and the rule it breaks (never an ``IndexError`` from deep
inside torch). This module imports nothing from the course, so every other module can use it.

* ``check_int`` / ``check_number`` / ``check_bool`` / ``check_choice``: configuration values;
* ``check_token_ids``: a ``(B, T)`` integer tensor of ids in ``[0, V)`` on the model's device;
* ``check_activations``: a ``(B, T, D)`` float tensor with the module's width, dtype and device;
* ``check_finite_logits``: generation stops instead of sampling from NaN.
"""

from __future__ import annotations

import math
import numbers

import torch


class InputTypeError(TypeError, ValueError):
    """A value of the wrong type (``2.5`` for a size, ``'64'`` for a width). It is a ``TypeError``, and
    also a ``ValueError`` so that code catching the course's usual ``ValueError`` catches it too."""


def _describe(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_int(name: str, value, *, min_value: int | None = None, max_value: int | None = None,
              where: str = "") -> int:
    """``value`` must be a real ``int`` (not a bool, a float such as 2.0, or a string) within bounds."""
    prefix = f"{where}{'.' if where else ''}{name}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputTypeError(f"{prefix} must be an int, got {_describe(value)}")
    value = int(value)
    if min_value is not None and value < min_value:
        rule = "positive" if min_value == 1 else f">= {min_value}"
        raise ValueError(f"{prefix}={value} must be {rule}")
    if max_value is not None and value > max_value:
        raise ValueError(f"{prefix}={value} must be <= {max_value}")
    return value


def check_number(name: str, value, *, min_value: float | None = None, max_value: float | None = None,
                 strict_min: bool = False, where: str = "") -> float:
    """``value`` must be a finite real number (an int or a float, not a bool or a string) in bounds;
    ``strict_min`` makes the lower bound exclusive (``> min_value``)."""
    prefix = f"{where}{'.' if where else ''}{name}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{prefix} must be a number, got {_describe(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{prefix}={value} must be finite")
    if min_value is not None and (value <= min_value if strict_min else value < min_value):
        raise ValueError(f"{prefix}={value} must be {'>' if strict_min else '>='} {min_value}")
    if max_value is not None and value > max_value:
        raise ValueError(f"{prefix}={value} must be <= {max_value}")
    return value


def check_bool(name: str, value, *, where: str = "") -> bool:
    if not isinstance(value, bool):
        raise InputTypeError(f"{where}{'.' if where else ''}{name} must be True or False, "
                             f"got {_describe(value)}")
    return value


def check_choice(name: str, value, choices: tuple, *, where: str = ""):
    if value not in choices:
        raise ValueError(f"{where}{'.' if where else ''}{name}={value!r} must be one of {choices}")
    return value


def check_token_ids(idx, vocab_size: int, device: torch.device | None = None, *, name: str = "idx",
                    allow_ignore: bool = False) -> None:
    """``idx`` must be a 2-D integer tensor ``(B, T)`` with ``B, T >= 1``, every id in ``[0, V)``
    (``allow_ignore`` also admits -100, the ignored target), on ``device``."""
    if not torch.is_tensor(idx):
        raise InputTypeError(f"{name} must be a torch tensor of token ids (B, T), got {type(idx).__name__}")
    if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
        raise InputTypeError(f"{name} must hold integer token ids (torch.long), got dtype {idx.dtype}")
    if idx.ndim != 2:
        raise ValueError(f"{name} must be 2-D (B, T), got shape {tuple(idx.shape)}; "
                         "add a batch dimension with idx.unsqueeze(0)")
    if idx.shape[0] < 1 or idx.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one position, got shape {tuple(idx.shape)}")
    if device is not None and idx.device != torch.device(device):
        raise ValueError(f"{name} is on {idx.device} but the model is on {device}; move it with "
                         f"{name}.to(model.device)")
    valid = (idx >= 0) & (idx < vocab_size)
    if allow_ignore:
        valid |= idx == -100
    if not bool(valid.all()):
        bad = sorted(set(idx[~valid].tolist()))
        raise ValueError(f"{name} holds token ids outside [0, {vocab_size}) (the vocabulary size): "
                         f"{bad[:5]}{' …' if len(bad) > 5 else ''}")


def check_activations(x, width: int, weight: torch.Tensor, *, name: str = "x") -> None:
    """``x`` must be a ``(B, T, width)`` float tensor with the dtype and device of the module's
    ``weight`` (a float64 input to a float32 module would otherwise fail inside a matmul)."""
    if not torch.is_tensor(x):
        raise InputTypeError(f"{name} must be a torch tensor (B, T, D), got {type(x).__name__}")
    if x.ndim != 3 or x.shape[-1] != width or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have shape (B, T, D={width}) with B, T >= 1, got {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise InputTypeError(f"{name} must be a float tensor, got dtype {x.dtype}")
    if x.device != weight.device:
        raise ValueError(f"{name} is on {x.device} but the module's weights are on {weight.device}")
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise InputTypeError(f"{name} has dtype {x.dtype} but the module's weights are {weight.dtype}; "
                             f"convert one of them (x.to({weight.dtype}) or module.to({x.dtype}))")


def check_rope_tables(cos, sin, t: int, width: int) -> None:
    """The RoPE tables handed to an attention module: each ``(T, width)`` for the T positions."""
    for label, table in (("cos", cos), ("sin", sin)):
        if not torch.is_tensor(table) or tuple(table.shape) != (t, width):
            shape = tuple(table.shape) if torch.is_tensor(table) else type(table).__name__
            raise ValueError(f"RoPE table {label} must have shape (T={t}, {width}) for these positions, "
                             f"got {shape}; slice the model's rope_cos/rope_sin at the positions")


def check_finite_logits(logits: torch.Tensor, step: int) -> None:
    """Generation stops here rather than picking the index of a NaN and carrying on."""
    if not bool(torch.isfinite(logits).all()):
        n_nan = int(torch.isnan(logits).sum())
        n_inf = int(torch.isinf(logits).sum())
        raise FloatingPointError(f"the model produced non-finite logits at generation step {step} "
                                 f"({n_nan} NaN, {n_inf} inf); its weights or inputs have overflowed "
                                 "or hold NaN, so no token can be chosen")
