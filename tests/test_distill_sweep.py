"""Lesson 08's committed sweep: the arms hold the student's compute equal as they claim, the file holds
every arm on every seed, and (slow) one arm re-run here reproduces the committed numbers exactly."""

import pytest
import torch
from testkit import assert_reproduces

from helpers import load_corpus
from helpers.config import ModelConfig
from helpers.experiments import distill as dsw
from helpers.experiments import load_sweep
from helpers.model import Transformer


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


@pytest.fixture
def tiny_recipes(monkeypatch):
    monkeypatch.setitem(dsw.LM_RECIPE, "steps", 3)
    monkeypatch.setitem(dsw.RL_RECIPE, "base_steps", 3)
    monkeypatch.setitem(dsw.RL_RECIPE, "grpo_steps", 4)
    monkeypatch.setitem(dsw.RL_RECIPE, "checkpoints", 2)
    monkeypatch.setitem(dsw.RL_RECIPE, "test_problems", 10)
    monkeypatch.setitem(dsw.EVAL, "iters", 1)
    torch.manual_seed(0)
    return Transformer(ModelConfig(dim=32, n_layers=1, n_heads=4, inter_dim=64, max_seq_len=128)).eval()


def test_lm_arms_process_the_same_student_tokens(corpus, tiny_recipes):
    teacher = tiny_recipes
    res = {arm: dsw.train_lm_arm(arm, 0, corpus, teacher) for arm in dsw.LM_ARMS}
    r = dsw.LM_RECIPE
    want = 3 * r["steps"] * r["batch_size"] * r["seq_len"]  # training tokens cost 3 token-passes
    assert {a: v["student_compute"] for a, v in res.items()} == {a: want for a in dsw.LM_ARMS}
    assert res["data only"]["teacher_compute"] == 0
    assert res["logit KD"]["teacher_compute"] == r["steps"] * r["batch_size"] * r["seq_len"]
    assert res["sequence KD"]["teacher_compute"] > 0
    for arm, v in res.items():  # each learning curve starts untrained and ends at the arm's final figures
        curve = v["curve"]
        assert curve["compute"][0] == 0 and curve["compute"][-1] == v["student_compute"], arm
        assert curve["val_loss"][-1] == v["val_loss"] and len(curve["val_loss"]) == len(curve["compute"])
        assert curve["compute"] == sorted(curve["compute"]) and len(curve["compute"]) == r["steps"] + 1


def test_rl_arms_stop_at_grpos_compute(tiny_recipes):
    out = dsw.run_rl_arms(0, tiny_recipes)
    grpo, sft = out["GRPO"], out["SFT on the teacher's answers"]
    assert sft["student_compute"] <= grpo["student_compute"]
    assert grpo["curve"]["compute"][0] == 0 and len(grpo["curve"]["compute"]) == 3
    assert sft["teacher_compute"] > 0 and grpo["reference_compute"] > 0
    for arm in (grpo, sft):  # each curve ends where the arm ended: its final compute and accuracy
        assert arm["curve"]["compute"][-1] == arm["student_compute"]
        assert arm["curve"]["accuracy"][-1] == arm["accuracy"]


def test_committed_sweep_has_every_arm_on_every_seed():
    sweep = load_sweep("distill")
    for arm in (*dsw.LM_ARMS, "base", *dsw.RL_ARMS):
        assert sweep.seeds_of(arm) == list(dsw.SEEDS), arm
    assert sweep.meta["lm_recipe"] == dsw.LM_RECIPE and sweep.meta["rl_recipe"] == dsw.RL_RECIPE
    for seed in dsw.SEEDS:  # the LM arms' learning curves: the same compute grid, ending at the final loss
        grid = sweep.curves[seed]["data only"]["compute"]
        assert len(grid) == dsw.LM_RECIPE["checkpoints"] + 1
        for arm in dsw.LM_ARMS:
            curve = sweep.curves[seed][arm]
            assert curve["compute"] == grid
            assert curve["val_loss"][-1] == sweep.value(arm, seed, "val_loss")


@pytest.mark.slow
def test_one_arm_reproduces_the_committed_numbers(corpus):
    from helpers.lessons.teacher import load_teacher

    got = dsw.train_lm_arm("data only", 1, corpus, load_teacher(device="cpu"))
    numbers = {m: got[m] for m in ("val_loss", "student_compute", "teacher_compute")}
    # FLOP counts are arithmetic on shapes: equal on every build; the loss is trained
    assert_reproduces(load_sweep("distill").reproduction("data only", 1, numbers,
                                                         exact=("student_compute", "teacher_compute")))
