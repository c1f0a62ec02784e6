"""Lesson 08's committed sweep: the arms hold the student's compute equal as they claim, the file holds
every arm on every seed, and (slow) one arm re-run here reproduces the committed numbers exactly."""

import pytest
import torch
from testkit import assert_reproduces

from helpers import load_corpus
from helpers.config import ModelConfig
from helpers.experiments import distill as dsw
from helpers.experiments import load_sweep
from helpers.lessons.teacher import load_teacher
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
    # the controls, added later (--extend) on the same seeds: the equal-FLOPs arm ran the steps the shipped
    # teacher's size gives, and the sampled arms processed data only's tokens with one teacher pass each
    for arm in dsw.LM_CONTROL_ARMS:
        assert sweep.seeds_of(arm) == list(dsw.SEEDS), arm
    r = dsw.LM_RECIPE
    tokens = r["batch_size"] * r["seq_len"]
    steps = dsw.equal_flops_steps(load_teacher(device="cpu"))
    for seed in dsw.SEEDS:
        assert sweep.value(dsw.EQUAL_FLOPS_ARM, seed, "student_compute") == 3 * steps * tokens
        for arm in dsw.SAMPLED_ARMS:
            assert sweep.value(arm, seed, "student_compute") == 3 * r["steps"] * tokens
            assert sweep.value(arm, seed, "teacher_compute") == r["steps"] * tokens


@pytest.mark.slow
def test_one_arm_reproduces_the_committed_numbers(corpus):
    got = dsw.train_lm_arm("data only", 1, corpus, load_teacher(device="cpu"))
    numbers = {m: got[m] for m in ("val_loss", "student_compute", "teacher_compute")}
    # FLOP counts are arithmetic on shapes: equal on every build; the loss is trained
    assert_reproduces(load_sweep("distill").reproduction("data only", 1, numbers,
                                                         exact=("student_compute", "teacher_compute")))


class _RecordingCorpus:
    """The corpus, recording every training batch an arm draws (to check that arms share their batches)."""

    def __init__(self, corpus):
        self.corpus, self.train_x = corpus, []

    def get_batch(self, split, *args, **kwargs):
        b = self.corpus.get_batch(split, *args, **kwargs)
        if split == "train":
            self.train_x.append(b.x.clone())
        return b


def test_equal_flops_steps_by_hand(tiny_recipes):
    teacher = tiny_recipes
    n_s, n_t = 381_600, sum(p.numel() for p in teacher.parameters())  # the tiny preset
    assert dsw.n_params(Transformer(dsw.STUDENT)) == n_s
    steps = dsw.equal_flops_steps(teacher, 300)
    # data only's FLOPs at `steps` reach logit KD's total at 300 steps, and one step fewer would not
    kd_total = 300 * (3 * 2 * n_s + 2 * n_t)
    assert steps * 3 * 2 * n_s >= kd_total > (steps - 1) * 3 * 2 * n_s
    assert dsw.equal_flops_steps(teacher) == dsw.equal_flops_steps(teacher, dsw.LM_RECIPE["steps"])
    state = torch.random.get_rng_state()
    dsw.equal_flops_steps(teacher)
    assert torch.equal(state, torch.random.get_rng_state())  # it draws nothing from the global stream


def test_sampled_kd_loss_by_hand():
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[0, 0], [1, 4], [2, 2], [3, 1], [4, 4], [0, 3]])  # (B·T, k=2)
    logp = logits.log_softmax(-1).flatten(0, 1)
    by_hand = -sum(logp[i, j] for i in range(6) for j in targets[i].tolist()) / 12
    assert dsw.sampled_kd_loss(logits, targets).item() == pytest.approx(by_hand.item(), rel=1e-6)
    one = targets[:, :1]  # one sample per position is plain cross-entropy against it
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), one[:, 0])
    assert dsw.sampled_kd_loss(logits, one).item() == pytest.approx(ce.item(), rel=1e-6)


def test_sampled_targets_follow_the_teacher():
    t_logits = torch.log(torch.tensor([[[0.7, 0.2, 0.1, 0.0]]]) + 1e-12)  # (1, 1, V=4)
    draws = dsw.sampled_targets(t_logits, 20_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws.flatten(), minlength=4) / 20_000
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1, 0.0]), atol=0.015)


def test_control_arms_pair_with_data_only(corpus, tiny_recipes):
    """The sampled-KD arms train on data only's own batches (only the targets differ), and the equal-FLOPs
    arm starts with them and runs on to logit KD's total FLOPs."""
    teacher = tiny_recipes
    drawn, res = {}, {}
    for arm in ("data only", *dsw.LM_CONTROL_ARMS):
        rec = _RecordingCorpus(corpus)
        res[arm] = dsw.train_lm_arm(arm, 0, rec, teacher)
        drawn[arm] = rec.train_x
    r = dsw.LM_RECIPE
    for arm in dsw.SAMPLED_ARMS:
        assert len(drawn[arm]) == r["steps"]
        assert all(torch.equal(a, b) for a, b in zip(drawn[arm], drawn["data only"]))
        assert res[arm]["teacher_compute"] == r["steps"] * r["batch_size"] * r["seq_len"]
        assert res[arm]["student_compute"] == res["data only"]["student_compute"]
        assert res[arm]["val_loss"] != res["data only"]["val_loss"]  # the targets differ
    long = drawn[dsw.EQUAL_FLOPS_ARM]
    assert len(long) == dsw.equal_flops_steps(teacher) > r["steps"]
    assert all(torch.equal(a, b) for a, b in zip(long, drawn["data only"]))
    assert res[dsw.EQUAL_FLOPS_ARM]["teacher_compute"] == 0
    assert res[dsw.EQUAL_FLOPS_ARM]["student_compute"] == 3 * len(long) * r["batch_size"] * r["seq_len"]


def test_distill_heldout_is_registered_and_writes_what_the_lesson_reads(tiny_recipes, tmp_path):
    from helpers.experiments.registry import SWEEPS

    entry = SWEEPS["distill_heldout"]
    out = entry.run_seed(0, None)
    arms = {r["arm"] for r in out["runs"]}
    assert arms == {"base", *dsw.RL_ARMS} and set(out["curves"]) == set(dsw.RL_ARMS)
    for arm in arms:  # held-out and in-distribution accuracy for every arm, the base included
        metrics = {r["metric"] for r in out["runs"] if r["arm"] == arm}
        assert {"accuracy", "in_distribution_accuracy"} <= metrics, arm
    sweep = load_sweep("distill_heldout", entry.write([out], tmp_path / "h.json"))
    assert sweep.meta["held_out"]["closed_under_swap"] and sweep.meta["rl_recipe"] == dsw.RL_RECIPE
    committed = load_sweep("distill_heldout")  # the committed file has the shape the writer writes
    assert set(committed.meta) >= set(sweep.meta) - {"made_by"}
