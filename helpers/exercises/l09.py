"""Lesson 09 exercises: block scales, the promotion fix for a limited accumulator, and the bytes of an FP8
weight with its scales. Reference solutions are in ``tests/test_exercises.py``."""

from __future__ import annotations

import math

import torch

from .. import fp8
from . import Checked, call_or_none, not_attempted, report


def check_block_scales(fn) -> Checked:
    """``fn(x (R, C), block (br, bc))`` → float32 scales (R/br, C/bc): amax / 448, 1 for a zero block."""
    name = "the block scales"
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 12, generator=gen) * torch.logspace(-2, 2, 12)
    x[0:4, 0:4] = 0.0  # an all-zero block
    cases = [(x, (4, 4)), (x, (1, 6)), (x[:, :8].contiguous(), (8, 8))]
    answers = [call_or_none(fn, *c) for c in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    want = [fp8.quantize(*c)[1] for c in cases]
    ok = all(torch.is_tensor(a) and a.shape == w.shape and torch.allclose(a.float(), w, rtol=1e-6, atol=0)
             for a, w in zip(answers, want))
    hint = ""
    if not ok:
        a, w = answers[0], want[0]
        if not torch.is_tensor(a) or a.shape != w.shape:
            hint = f"one scale per block: shape (R // br, C // bc), here {tuple(w.shape)}"
        elif a[0, 0] == 0:
            hint = "an all-zero block needs scale 1 (a scale of 0 would divide by zero when quantising)"
        elif torch.allclose(a[1:], 1 / w[1:], rtol=1e-4):
            hint = "the scale is amax / 448 (x = q · scale), not its inverse"
        elif torch.allclose(a[1:], w[1:] * 448, rtol=1e-4):
            hint = "divide the block's amax by E4M3's largest value, 448"
        else:
            hint = ("take each block's own largest magnitude: reshape to (R/br, br, C/bc, bc), amax over "
                    "dims 1 and 3")
    return report(ok, name, hint)


def check_promoted_sum(fn) -> Checked:
    """``fn(p (M, Kg) float64, bits, nc)`` → (M,) sums with an FP32 promotion every ``nc`` elements."""
    name = "the promoted accumulation"
    gen = torch.Generator().manual_seed(0)
    cases = [(torch.randn(8, 96, generator=gen).double().abs(), 8, 16),
             (torch.randn(8, 100, generator=gen).double(), 10, 32),
             (torch.full((2, 300), 1.0, dtype=torch.float64), 6, 64)]
    answers = [call_or_none(fn, *c) for c in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    want = [fp8.limited_dot(p, torch.ones_like(p), bits=bits, promote_every=nc) for p, bits, nc in cases]
    ok = all(torch.is_tensor(a) and a.shape == w.shape and torch.allclose(a.double(), w, rtol=1e-6, atol=1e-6)
             for a, w in zip(answers, want))
    hint = ""
    if not ok:
        p, bits, nc = cases[2]
        a = answers[2]
        never = fp8.limited_dot(p, torch.ones_like(p), bits=bits)
        if torch.is_tensor(a) and a.shape == never.shape and torch.allclose(a.double(), never):
            hint = "promote: every nc elements add the partial sum to the FP32 total and restart it from 0"
        elif torch.is_tensor(a) and a.shape == never.shape and torch.allclose(a.double(), p.sum(-1)):
            hint = "round the running sum to `bits` bits after every addition (fp8.round_bits)"
        else:
            hint = ("after element k (counting from 1) with k % nc == 0: total += partial (as float32), "
                    "partial = 0; at the end add what is left")
    return report(ok, name, hint)


def check_fp8_weight_bytes(fn) -> Checked:
    """``fn(R, C)`` → bytes of an (R, C) FP8 weight with one float32 scale per 128×128 block."""
    name = "the bytes of an FP8 weight"
    cases = [(128, 128), (7168, 2048), (100, 300), (129, 1)]
    answers = [call_or_none(fn, *c) for c in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    want = [R * C + 4 * math.ceil(R / 128) * math.ceil(C / 128) for R, C in cases]
    ok = all(isinstance(a, (int, float)) and a == w for a, w in zip(answers, want))
    hint = ""
    if not ok:
        if answers[1] == 7168 * 2048:
            hint = "add the scales: 4 bytes (float32) for each 128×128 block"
        elif answers[2] == 100 * 300 + 4 * (100 * 300) // (128 * 128):
            hint = "count partial blocks at the edges: ceil(R / 128) · ceil(C / 128) scales"
        else:
            hint = "one byte per element, plus 4 bytes per block, ceil(R/128) · ceil(C/128) blocks"
    return report(ok, name, hint)
