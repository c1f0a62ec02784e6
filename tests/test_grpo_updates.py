"""helpers.grpo with several updates per sampled batch: at the first update ρ = 1 and nothing clips, later
the ratio leaves 1 and the clip fires; ratio_stats and the k3 estimator by hand; the loss by hand where
ρ ≠ 1 and β > 0; the meter counts the training pass once per update and sampling and the reference once."""

import copy
import math

import pytest
import torch
from test_grpo import coin_model

from helpers.distill import ComputeMeter
from helpers.grpo import (
    group_advantages,
    grpo_loss,
    grpo_step,
    k3_kl,
    ratio_stats,
    sample_groups,
    token_logprobs,
)
from helpers.tasks.arith import Problem, rewards


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def run(updates, lr=0.02, meter=None):
    model = coin_model()
    ref = copy.deepcopy(model)
    out = grpo_step(model, ref, torch.optim.SGD(model.parameters(), lr=lr), [Problem(0, 0)] * 4, group_size=8,
                    beta=0.04, generator=torch.Generator().manual_seed(0), meter=meter, updates=updates)
    return out


def test_one_update_keeps_the_ratio_at_one_and_never_clips():
    out = run(updates=1)
    (s,) = out["per_update"]
    assert s.mean == pytest.approx(1.0, abs=1e-4) and s.std < 1e-4  # π_θ = π_old (cached vs full forward)
    assert s.clip_share == 0.0 and s.binding_share == 0.0 and out["clip_fraction"] == 0.0


def test_several_updates_move_the_ratio_and_fire_the_clip():
    out = run(updates=4)  # SGD 0.02: update 2 moves ρ inside 1 ± ε, update 3 passes it
    first, *later = out["per_update"]
    assert first.clip_share == 0.0 and first.std < 1e-4
    assert all(s.std > 1e-3 for s in later)  # the ratio has left 1
    assert max(s.clip_share for s in later) > 0 and max(s.binding_share for s in later) > 0
    assert later[0].clip_share == 0 and later[1].clip_share > 0  # it takes a few steps to leave 1 ± ε
    assert later[-1].max > 1.2 and later[-1].min < 0.8


def test_updates_one_is_one_step_on_the_sampled_batch_written_out():
    """updates=1 (the default, as the committed sweep ran): sample, reward, advantages, one step, by hand."""
    model, by_hand = coin_model(), coin_model()
    grpo_step(model, copy.deepcopy(model), torch.optim.SGD(model.parameters(), lr=0.5), [Problem(0, 0)] * 2,
              group_size=4, beta=0.04, generator=torch.Generator().manual_seed(3))
    ref = copy.deepcopy(by_hand)
    gen = torch.Generator().manual_seed(3)
    roll = sample_groups(by_hand, ["0+0="] * 2, 4, Problem(0, 0).budget, generator=gen)
    adv = group_advantages(rewards(roll.completions, [Problem(0, 0)] * 8).view(2, 4)).flatten()
    with torch.no_grad():
        ref_logp = token_logprobs(ref, roll.tokens, roll.mask)
    loss = grpo_loss(token_logprobs(by_hand, roll.tokens, roll.mask), roll.old_logprobs, ref_logp, adv,
                     roll.mask, beta=0.04).loss
    opt = torch.optim.SGD(by_hand.parameters(), lr=0.5)
    loss.backward()
    opt.step()
    for p, q in zip(model.parameters(), by_hand.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


def test_meter_counts_training_once_per_update():
    one, three = ComputeMeter(), ComputeMeter()
    run(updates=1, meter=one)
    run(updates=3, meter=three)
    assert three.forward_tokens == one.forward_tokens and three.reference_tokens == one.reference_tokens
    assert three.train_tokens == 3 * one.train_tokens


def test_loss_by_hand_with_ratio_off_one_and_kl():
    """Two sequences, ε = 0.2, β = 0.1. ρ and log(π_ref/π_θ) chosen per token; every term written out."""
    old = torch.log(torch.tensor([[0.5, 0.4], [0.3, 0.6]]))
    ratios = [[1.5, 0.7], [0.9, 1.1]]
    d = [[0.2, -0.1], [0.0, 0.3]]  # log π_ref − log π_θ
    logp = (old + torch.log(torch.tensor(ratios))).requires_grad_()
    ref = logp.detach() + torch.tensor(d)
    adv, mask = torch.tensor([1.0, -2.0]), torch.ones(2, 2)
    out = grpo_loss(logp, old, ref, adv, mask, clip_eps=0.2, beta=0.1)

    def surrogate(rho, A):
        return min(rho * A, min(max(rho, 0.8), 1.2) * A)

    def k3(x):
        return math.exp(x) - x - 1

    # seq 0 (A = 1): min(1.5, 1.2) = 1.2; min(0.7, 0.8) = 0.7
    # seq 1 (A = −2): min(−1.8, −1.8) = −1.8; min(−2.2, −2.2) = −2.2
    policy = ((surrogate(1.5, 1) + surrogate(0.7, 1)) / 2 + (surrogate(0.9, -2) + surrogate(1.1, -2)) / 2) / 2
    assert policy == pytest.approx(((1.2 + 0.7) / 2 + (-1.8 - 2.2) / 2) / 2)
    kl = ((k3(0.2) + k3(-0.1)) / 2 + (k3(0.0) + k3(0.3)) / 2) / 2
    assert out.policy.item() == pytest.approx(policy, rel=1e-5)
    assert out.kl.item() == pytest.approx(kl, rel=1e-5)
    assert out.loss.item() == pytest.approx(-(policy - 0.1 * kl), rel=1e-5)
    assert out.clip_fraction == pytest.approx(1 / 4)  # only ρ = 1.5 with A > 0 is capped


def test_ratio_stats_by_hand():
    old = torch.zeros(2, 3)
    logp = torch.log(torch.tensor([[1.0, 1.5, 0.5], [1.1, 0.7, 9.0]]))
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0]])  # the 9.0 is outside the completion
    s = ratio_stats(logp, old, torch.tensor([1.0, 1.0]), mask, clip_eps=0.2)
    rho = torch.tensor([1.0, 1.5, 0.5, 1.1, 0.7])
    assert s.clip_share == pytest.approx(3 / 5)  # 1.5, 0.5, 0.7 lie outside [0.8, 1.2]
    assert s.binding_share == pytest.approx(1 / 5)  # A > 0: only ρ above 1.2 is capped
    assert s.mean == pytest.approx(rho.mean().item()) and s.std == pytest.approx(rho.std(correction=0).item())
    assert (s.min, s.max) == (pytest.approx(0.5), pytest.approx(1.5))
    neg = ratio_stats(logp, old, torch.tensor([-1.0, -1.0]), mask, clip_eps=0.2)
    assert neg.binding_share == pytest.approx(2 / 5)  # A < 0: ρ below 0.8 is capped (0.5, 0.7)


def test_k3_is_nonnegative_zero_on_agreement_and_unbiased():
    d = torch.linspace(-3, 3, 13)
    k = k3_kl(torch.zeros(13), d)  # log π_θ = 0 here; log π_ref − log π_θ = d
    torch.testing.assert_close(k, d.exp() - d - 1)
    assert (k >= 0).all() and k[6].item() == 0.0
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.3, 0.3, 0.4])  # π_θ, π_ref
    x = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    estimate = k3_kl(p.log()[x], q.log()[x]).mean().item()
    exact = (p * (p / q).log()).sum().item()  # KL(π_θ ‖ π_ref)
    assert estimate == pytest.approx(exact, abs=0.01)


def test_bad_updates_name_the_argument():
    model = coin_model()
    with pytest.raises(ValueError, match="updates"):
        grpo_step(model, None, torch.optim.SGD(model.parameters(), lr=0.1), [Problem(0, 0)], group_size=2,
                  beta=0.0, updates=0)
