"""helpers.distill: the KD loss against a hand computation and its limits (α = 0, α = 1, T², ignored
positions, a frozen teacher), and the compute meter's token-passes."""

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import Transformer, generate, preset
from helpers.distill import ComputeMeter, generation_passes, kd_loss, soften

STUDENT = [[1.0, 2.0, 0.0], [0.5, -1.0, 2.0]]  # 2 positions × V = 3
TEACHER = [[2.0, 0.0, 1.0], [0.0, 0.0, 3.0]]
TARGETS = [2, 0]


def softmax(row, T=1.0):
    e = [math.exp(z / T) for z in row]
    return [x / sum(e) for x in e]


def hand_kd(T, alpha):
    """The loss by hand, in plain Python: mean over positions of KL(p_t^T ‖ p_s^T) and of −log p_s[y]."""
    kl = sum(sum(pt * math.log(pt / ps) for pt, ps in zip(softmax(t, T), softmax(s, T)))
             for s, t in zip(STUDENT, TEACHER)) / 2
    ce = sum(-math.log(softmax(s)[y]) for s, y in zip(STUDENT, TARGETS)) / 2
    return alpha * T * T * kl + (1 - alpha) * ce, kl, ce


def tensors():
    return torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(TARGETS)


@pytest.mark.parametrize("T,alpha", [(2.0, 0.5), (1.0, 0.3), (4.0, 0.9)])
def test_kd_loss_matches_the_hand_computation(T, alpha):
    s, t, y = tensors()
    out = kd_loss(s, t, y, temperature=T, alpha=alpha)
    loss, kl, ce = hand_kd(T, alpha)
    assert out.loss.item() == pytest.approx(loss, rel=1e-6)
    assert out.kl.item() == pytest.approx(kl, rel=1e-6)
    assert out.ce.item() == pytest.approx(ce, rel=1e-6)


def test_alpha_limits():
    s, t, y = tensors()
    hard = kd_loss(s, t, y, temperature=3.0, alpha=0.0)
    assert hard.loss.item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-6)
    soft = kd_loss(s, t, y, temperature=3.0, alpha=1.0)
    assert soft.loss.item() == pytest.approx(9.0 * soft.kl.item(), rel=1e-6)  # T² · KL, no CE


def test_t_squared_keeps_the_gradient_scale():
    """Without T² the soft gradient falls like 1/T²; with it, doubling a large T barely changes it."""
    torch.manual_seed(0)
    teacher = torch.randn(16, 32)
    y = torch.randint(0, 32, (16,))
    norms = {}
    for T in (8.0, 16.0):
        s = torch.randn(16, 32, generator=torch.Generator().manual_seed(1)).requires_grad_()
        out = kd_loss(s, teacher, y, temperature=T, alpha=1.0)
        scaled, raw = (torch.autograd.grad(x, s, retain_graph=True)[0] for x in (out.loss, out.kl))
        norms[T], norms[T, "raw"] = scaled.norm().item(), raw.norm().item()  # T² · KL and KL alone
    assert norms[16.0] / norms[8.0] == pytest.approx(1.0, abs=0.1)
    assert norms[16.0, "raw"] / norms[8.0, "raw"] == pytest.approx(0.25, abs=0.03)


def test_identical_logits_have_zero_kl():
    s = torch.randn(2, 5, 7)
    out = kd_loss(s, s.clone(), torch.randint(0, 7, (2, 5)), temperature=2.0, alpha=0.5)
    assert abs(out.kl.item()) < 1e-7
    assert out.loss.item() == pytest.approx(0.5 * out.ce.item(), rel=1e-6)


def test_ignored_positions_do_not_count():
    s, t = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    y = torch.tensor([[-100, 1, 2, -100], [-100, -100, 5, 0]])
    base = kd_loss(s, t, y)
    s2, t2 = s.clone(), t.clone()
    s2[y == -100] = 50 * torch.randn_like(s2[y == -100])  # change only ignored positions
    t2[y == -100] = -50.0
    again = kd_loss(s2, t2, y)
    assert again.loss.item() == pytest.approx(base.loss.item(), rel=1e-6)
    keep = y != -100
    flat = kd_loss(s[keep], t[keep], y[keep])  # the kept positions alone, as (N, V)
    assert flat.loss.item() == pytest.approx(base.loss.item(), rel=1e-6)
    with pytest.raises(ValueError, match="every target is"):
        kd_loss(s, t, torch.full((2, 4), -100))


def test_no_gradient_reaches_the_teacher():
    s = torch.randn(3, 5, requires_grad=True)
    t = torch.randn(3, 5, requires_grad=True)
    kd_loss(s, t, torch.tensor([0, 1, 2]), alpha=1.0).loss.backward()
    assert t.grad is None and s.grad is not None and s.grad.abs().sum() > 0


def test_soften():
    z = torch.tensor([[3.0, 1.0, 0.0]])
    assert soften(z, 1.0).sum().item() == pytest.approx(1.0)
    assert torch.allclose(soften(z, 2.0), torch.tensor([softmax([3.0, 1.0, 0.0], 2.0)]))
    assert soften(z, 10.0).max() < soften(z, 1.0).max()  # a higher T flattens


@pytest.mark.parametrize("kwargs,name", [({"temperature": 0.0}, "temperature"),
                                         ({"temperature": -1.0}, "temperature"),
                                         ({"alpha": 1.5}, "alpha"), ({"alpha": -0.1}, "alpha")])
def test_bad_settings_name_the_argument(kwargs, name):
    s, t, y = tensors()
    with pytest.raises(ValueError, match=name):
        kd_loss(s, t, y, **kwargs)


def test_shape_mismatch():
    s, t, y = tensors()
    with pytest.raises(ValueError, match="teacher_logits"):
        kd_loss(s, t[:, :2], y)
    with pytest.raises(ValueError, match="targets"):
        kd_loss(s, t, y[:1])


def test_compute_meter_counts_token_passes():
    m = ComputeMeter()
    m.forward(10)
    assert m.total == 10
    m.train(4)
    assert m.total == 10 + 3 * 4
    m.forward(1)
    m.train(1)
    assert (m.forward_tokens, m.train_tokens, m.total) == (11, 5, 26)
    m.teacher_forward(7)
    m.teacher_generate(5)
    m.reference_forward(9)
    assert (m.teacher_total, m.reference_total, m.total) == (12, 9, 26)  # kept apart from the student's
    assert ComputeMeter.flops(m.total, 1000) == 2 * 1000 * 26
    with pytest.raises(ValueError, match="tokens"):
        m.train(-1)


@pytest.mark.parametrize("T,n", [(5, 1), (4, 6)])
def test_generation_passes_are_what_the_cache_sees(T, n):
    """With the KV cache every position but the last goes through the model once: the cache ends
    holding exactly the positions that were run."""
    model = Transformer(preset("test")).eval()
    cache = model.new_cache()
    generate(model, torch.randint(0, 256, (2, T)), n, cache=cache)
    assert generation_passes(2, T, n) == 2 * cache.length == 2 * (T + n - 1)
    assert generation_passes(3, T, 0) == 0
