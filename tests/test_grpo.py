"""helpers.grpo: advantages, the clipped surrogate and the KL estimator against hand values, the
completion mask, sampled log-probs == recomputed ones, and one full step (direction and compute)."""

import copy
import math

import pytest
import torch
from test_arith import bigram_model
from testkit import randomise

from helpers import Transformer, preset
from helpers.distill import ComputeMeter
from helpers.grpo import (
    completion_mask,
    group_advantages,
    grpo_loss,
    grpo_step,
    sample_groups,
    token_logprobs,
)
from helpers.tasks.arith import Problem, rewards

NL = ord("\n")


def coin_model():
    """After "=" the model says "0" or "1" with equal odds (p ≈ 0.4996 each), after a digit "\\n"
    (p ≈ 0.9998): on "0+0=" a group mixes right ("0\\n") and wrong ("1\\n") answers."""
    return bigram_model({"=": {"0": 12.0, "1": 12.0}, "0": {"\n": 14.0}, "1": {"\n": 14.0}}, default={})


def test_group_advantages_by_hand():
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]]))
    # population std: group 1 mean 0.5, std 0.5; group 2 mean 0.25, std √(3/16)
    s = math.sqrt(3 / 16)
    expected = torch.tensor([[1.0, -1.0, -1.0, 1.0], [0.75 / s, -0.25 / s, -0.25 / s, -0.25 / s]])
    torch.testing.assert_close(adv, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(adv.mean(dim=1), torch.zeros(2), atol=1e-6, rtol=0)


def test_equal_rewards_carry_no_signal():
    adv = group_advantages(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.9, 0.9, 0.9], [0.0, 1.0, 0.0]]))
    assert torch.equal(adv[:3], torch.zeros(3, 3))  # exactly zero, even where float32 gives mean ≠ 0.9
    assert (adv[3] != 0).all()


@pytest.mark.parametrize("completion,expected", [
    ("132\n", 1.0), ("132", 0.0), ("0132\n", 0.0), ("132\nabc", 1.0), ("131\n", 0.0),
])
def test_reward_cases(completion, expected):
    assert rewards([completion], [Problem(47, 85)]).tolist() == [expected]


def loss_inputs(ratios, adv, mask):
    old = torch.log(torch.rand(len(ratios), len(ratios[0])) * 0.5 + 0.1)
    logp = (old + torch.log(torch.tensor(ratios))).requires_grad_()
    return logp, old, torch.tensor(adv), torch.tensor(mask)


def test_ratio_one_gives_minus_mean_advantage():
    logp, old, adv, mask = loss_inputs([[1.0] * 3] * 3, [1.0, -0.5, 2.0], [[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    out = grpo_loss(logp, old, logp.detach(), adv, mask.float(), beta=0.0)
    assert out.loss.item() == pytest.approx(-(1.0 - 0.5 + 2.0) / 3, rel=1e-6)
    assert out.clip_fraction == 0.0 and out.kl.item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("A,loss,clipped", [(1.0, -1.2, 1.0), (-1.0, 1.5, 0.0)])
def test_clipping_at_ratio_one_and_a_half(A, loss, clipped):
    """ρ = 1.5 > 1 + ε: a positive advantage is capped at 1.2·A (no gradient); a negative one is not."""
    logp, old, adv, mask = loss_inputs([[1.5, 1.5]], [A], [[1, 1]])
    out = grpo_loss(logp, old, logp.detach(), adv, mask.float(), clip_eps=0.2, beta=0.0)
    assert out.loss.item() == pytest.approx(loss, rel=1e-5)
    assert out.clip_fraction == clipped
    out.loss.backward()
    assert (logp.grad.abs().sum() == 0) == bool(clipped)


def test_per_sequence_then_per_group_mean_by_hand():
    # seq 0: |o| = 2 (third token masked, its wild ratio ignored), A = 1: surrogates 1.1, 0.9 → 1.0
    # seq 1: |o| = 3, A = −1: min(−1, −1), min(−1.3, −1.2), min(−0.7, −0.8) → (−1 − 1.3 − 0.8) / 3
    ratios = [[1.1, 0.9, 5.0], [1.0, 1.3, 0.7]]
    logp, old, adv, mask = loss_inputs(ratios, [1.0, -1.0], [[1, 1, 0], [1, 1, 1]])
    out = grpo_loss(logp, old, logp.detach(), adv, mask.float(), clip_eps=0.2, beta=0.0)
    policy = (1.0 + (-1.0 - 1.3 - 0.8) / 3) / 2
    assert out.policy.item() == pytest.approx(policy, rel=1e-5)
    assert out.loss.item() == pytest.approx(-policy, rel=1e-5)
    assert out.clip_fraction == pytest.approx(1 / 5)  # only seq 1's third token is clipped


def test_kl_estimator():
    logp, old, adv, mask = loss_inputs([[1.0, 1.0]], [0.0], [[1, 1]])
    same = grpo_loss(logp, old, logp.detach(), adv, mask.float(), beta=0.5)
    assert same.kl.item() == pytest.approx(0.0, abs=1e-7) and same.loss.item() == pytest.approx(0.0, abs=1e-7)
    d = torch.tensor([[0.5, 1.0]])  # log π_ref − log π_θ per token
    out = grpo_loss(logp, old, logp.detach() + d, adv, mask.float(), beta=0.5)
    kl = ((math.exp(0.5) - 0.5 - 1) + (math.exp(1.0) - 1.0 - 1)) / 2  # e^d − d − 1, not e^−d + d − 1
    assert out.kl.item() == pytest.approx(kl, rel=1e-5) and out.kl.item() > 0
    assert out.loss.item() == pytest.approx(0.5 * kl, rel=1e-5)  # A = 0: only β · KL


def test_completion_mask_stops_after_the_first_newline():
    new = torch.tensor([[49, NL, 53, NL], [49, 50, 51, 52], [NL, 48, NL, 48]])
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]).float()
    assert torch.equal(completion_mask(new), expected)


def test_sample_groups_rollout():
    model = randomise(Transformer(preset("test")))
    g = torch.Generator().manual_seed(0)
    r = sample_groups(model, ["12+34=", "56+78="], group_size=3, max_new_tokens=6, generator=g)
    assert r.tokens.shape == (6, 6 + r.new_tokens) and r.mask.shape == (6, r.new_tokens)
    assert r.prompt_len == 6 and r.group_size == 3
    assert all(bytes(r.tokens[i, :6].tolist()) == (b"12+34=" if i < 3 else b"56+78=") for i in range(6))
    assert torch.equal(r.mask, completion_mask(r.tokens[:, 6:]))
    assert (r.old_logprobs[r.mask == 0] == 0).all() and (r.old_logprobs[r.mask == 1] < 0).all()
    again = sample_groups(model, ["12+34=", "56+78="], 3, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.tokens, r.tokens)  # reproducible with a generator
    # the sampled (cached, no-grad) log-probs are what the full forward gives: ratio 1 at the update
    logp = token_logprobs(model, r.tokens, r.mask)
    assert logp.requires_grad
    torch.testing.assert_close(logp.detach(), r.old_logprobs, atol=1e-4, rtol=0)


def test_sample_groups_stops_when_every_row_has_answered():
    r = sample_groups(coin_model(), ["0+0="], 8, 5, generator=torch.Generator().manual_seed(0))
    assert r.new_tokens == 2 and sorted(set(r.completions)) == ["0\n", "1\n"]
    assert r.mask.sum().item() == 16
    # after "=" either "\n" at once or "0\n": rows end at different steps, the early ones are masked
    model = bigram_model({"=": {"0": 12.0, "\n": 12.0}, "0": {"\n": 14.0}}, default={})
    r = sample_groups(model, ["0+0="], 8, 5, generator=torch.Generator().manual_seed(0))
    short = torch.tensor([c == "\n" for c in r.completions])
    assert r.new_tokens == 2 and 0 < short.sum() < 8 and sorted(set(r.completions)) == ["\n", "0\n"]
    assert torch.equal(r.mask[:, 1], (~short).float())
    assert (r.old_logprobs[:, 1][short] == 0).all() and (r.old_logprobs[~short] < 0).all()


def test_temperature_is_part_of_the_policy():
    model = randomise(Transformer(preset("test")))
    r = sample_groups(model, ["1+1="], 2, 3, temperature=0.7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(token_logprobs(model, r.tokens, r.mask, temperature=0.7).detach(),
                               r.old_logprobs, atol=1e-4, rtol=0)


def test_grpo_step_moves_towards_the_rewarded_answer_and_meters_every_token():
    model = coin_model()
    ref = copy.deepcopy(model)
    prompt = torch.tensor([list(b"0+0=")])

    def p_right():
        return model(prompt)[0, -1].softmax(-1)[ord("0")].item()

    before = p_right()
    head = model.head.weight.detach().clone()
    meter = ComputeMeter()
    problems = [Problem(0, 0), Problem(0, 0), Problem(10, 0)]  # two prompt lengths: two sampling calls
    out = grpo_step(model, ref, torch.optim.SGD(model.parameters(), lr=0.5), problems, group_size=8,
                    beta=0.04, generator=torch.Generator().manual_seed(0), meter=meter)
    assert not torch.equal(model.head.weight, head)
    assert p_right() > before  # the right answer's probability went up
    rolls = out["rollouts"]
    assert [r.prompt_len for r in rolls] == [4, 5]
    assert out["reward"] == pytest.approx(sum(
        rewards(r.completions, [p] * 8 * (r.tokens.shape[0] // 8)).sum().item()
        for r, p in zip(rolls, (Problem(0, 0), Problem(10, 0)))) / 24)
    # every position but the last of every row, once for sampling, once for training, once for the ref
    by_hand = sum(r.tokens.shape[0] * (r.tokens.shape[1] - 1) for r in rolls)
    assert by_hand == 16 * (4 + 2 - 1) + 8 * (5 + 2 - 1)
    assert (meter.forward_tokens, meter.train_tokens, meter.reference_tokens) == (by_hand,) * 3
    assert meter.total == 4 * by_hand and meter.teacher_total == 0


def test_grpo_step_without_signal_leaves_the_model_unchanged():
    """An untrained model gets every answer wrong: all advantages 0, and with β = 0 nothing moves."""
    model = randomise(Transformer(preset("test")))
    before = copy.deepcopy(model.state_dict())
    out = grpo_step(model, None, torch.optim.SGD(model.parameters(), lr=1.0), [Problem(3, 4)] * 2,
                    group_size=4, beta=0.0, generator=torch.Generator().manual_seed(0))
    assert out["zero_signal"] == 1.0 and out["reward"] == 0.0
    assert (out["all_wrong"], out["all_right"]) == (1.0, 0.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_grpo_step_splits_the_groups_without_signal_into_all_wrong_and_all_right(monkeypatch):
    """Four groups of four: all right, all wrong, mixed, all wrong. zero_signal = all_wrong + all_right."""
    import helpers.grpo as g

    table = torch.tensor([1., 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0])
    monkeypatch.setattr(g, "rewards", lambda completions, problems: table[:len(completions)].clone())
    model = randomise(Transformer(preset("test")))
    out = g.grpo_step(model, None, torch.optim.SGD(model.parameters(), lr=0.0), [Problem(3, 4)] * 4,
                      group_size=4, beta=0.0, generator=torch.Generator().manual_seed(0))
    assert (out["all_wrong"], out["all_right"], out["zero_signal"]) == (0.5, 0.25, 0.75)
    assert out["reward"] == 6 / 16


@pytest.mark.parametrize("kwargs,name", [
    ({"group_size": 1}, "group_size"), ({"group_size": 0}, "group_size"),
    ({"temperature": 0.0}, "temperature"), ({"temperature": -1.0}, "temperature"),
    ({"clip_eps": 0.0}, "clip_eps"), ({"clip_eps": -0.2}, "clip_eps"),
    ({"beta": 0.1, "ref": None}, "ref_model"),
])
def test_grpo_step_bad_inputs_name_the_argument(kwargs, name):
    model = Transformer(preset("test"))
    ref = kwargs.pop("ref", model)
    settings = {"group_size": 2, **kwargs}
    with pytest.raises(ValueError, match=name):
        grpo_step(model, ref, torch.optim.SGD(model.parameters(), lr=0.1), [Problem(1, 2)], **settings)


def test_sample_groups_and_loss_bad_inputs():
    model = Transformer(preset("test"))
    with pytest.raises(ValueError, match=r"same token length, got lengths \[4, 5\]"):
        sample_groups(model, ["1+2=", "10+2="], 2, 3)
    with pytest.raises(ValueError, match="group_size"):
        sample_groups(model, ["1+2="], 1, 3)
    with pytest.raises(ValueError, match="temperature"):
        sample_groups(model, ["1+2="], 2, 3, temperature=0.0)
    z = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="clip_eps"):
        grpo_loss(z, z, z, torch.zeros(1), z, clip_eps=0.0)
    with pytest.raises(ValueError, match="Gs"):
        group_advantages(torch.zeros(3, 1))
