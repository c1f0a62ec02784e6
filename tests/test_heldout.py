"""helpers.tasks.heldout: the held-out problems are fixed, distinct and closed under swap; no training sampler
ever returns one (many batches drawn); and every stage of lesson 08's RL experiment, run with
held_out=True, trains on none of them (with held_out=False the same spy does find some: the test can fail)."""

import pytest
import torch

from helpers import grpo as grpo_module
from helpers.config import ModelConfig
from helpers.experiments import distill as dsw
from helpers.model import Transformer
from helpers.tasks import arith, heldout


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def test_held_out_set_is_fixed_distinct_and_closed_under_swap():
    a, b = heldout.held_out_problems(), heldout.held_out_problems()
    assert a == b and len(a) == heldout.N_HELD_OUT
    assert len({(p.a, p.b) for p in a}) == len(a)
    pairs = heldout.held_out_pairs()
    assert all((p.b, p.a) in pairs and (p.a, p.b) in pairs for p in a)
    assert all(heldout.is_held_out(p) for p in a)


def test_training_sampler_never_returns_a_held_out_pair():
    gen = torch.Generator().manual_seed(1)
    drawn = [p for _ in range(50) for p in heldout.sample_training_problems(64, 2, gen)]  # 3,200 problems
    assert len(drawn) == 3200 and not any(heldout.is_held_out(p) for p in drawn)
    assert len({(p.a, p.b) for p in drawn}) > 2000  # still spread over the rest of the space
    unfiltered = arith.sample_problems(3200, 2, torch.Generator().manual_seed(1))
    assert sum(heldout.is_held_out(p) for p in unfiltered) > 50  # ≈ 6% of draws would have been held out


def test_in_distribution_test_is_disjoint_from_held_out():
    assert not any(heldout.is_held_out(p) for p in heldout.in_distribution_problems())


@pytest.mark.parametrize("held_out", [True, False])
def test_every_stage_of_the_rl_experiment_avoids_the_held_out_set(monkeypatch, held_out):
    monkeypatch.setitem(dsw.RL_RECIPE, "base_steps", 4)
    monkeypatch.setitem(dsw.RL_RECIPE, "grpo_steps", 4)
    monkeypatch.setitem(dsw.RL_RECIPE, "checkpoints", 2)
    monkeypatch.setitem(dsw.RL_RECIPE, "test_problems", 10)
    seen = {"sft": [], "grpo": []}  # sft_batch trains the base and the SFT arm; grpo_step the GRPO arm
    sft_batch, grpo_step = arith.sft_batch, dsw.grpo_step

    def spy_sft(problems, *args, **kwargs):
        seen["sft"] += list(problems)
        return sft_batch(problems, *args, **kwargs)

    def spy_grpo(model, ref, opt, problems, *args, **kwargs):
        seen["grpo"] += list(problems)
        return grpo_step(model, ref, opt, problems, *args, **kwargs)

    monkeypatch.setattr(arith, "sft_batch", spy_sft)
    monkeypatch.setattr(dsw, "grpo_step", spy_grpo)
    teacher = Transformer(ModelConfig(dim=32, n_layers=1, n_heads=4, inter_dim=64, max_seq_len=128)).eval()
    out = dsw.run_rl_arms(0, teacher, held_out=held_out)
    base_and_sft, rl = seen["sft"], seen["grpo"]
    assert len(base_and_sft) >= 4 * dsw.RL_RECIPE["sft_batch"]
    assert len(rl) == 4 * dsw.RL_RECIPE["grpo_prompts"]
    hits = sum(heldout.is_held_out(p) for p in base_and_sft + rl)
    if held_out:
        assert hits == 0
        assert 0 <= out["base_in_distribution_accuracy"] <= 1
        assert "in_distribution_accuracy" in out["GRPO"]
    else:
        assert hits > 0  # the committed sweep's sampler does draw held-out problems
    assert grpo_module.grpo_step is grpo_step  # the spy was local to the sweep module
