"""helpers.experiments.rl_base: no stage (the teacher, the bases, every arm) sees a held-out pair, asserted
with a spy (and with the split switched off the same spy finds some: the test can fail); the arms stop at
GRPO's student compute; the compute bill by hand on a small case; the sweep's records."""

import pytest
import torch

from helpers.config import ModelConfig
from helpers.distill import generation_passes
from helpers.experiments import rl_base as rb
from helpers.model import Transformer
from helpers.tasks import arith, heldout, scratchpad

SMALL = dict(sft_batch=8, grpo_steps=4, grpo_prompts=4, group_size=4, checkpoints=2, in_dist_problems=10)


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


@pytest.fixture
def small(monkeypatch):
    for key, value in SMALL.items():
        monkeypatch.setitem(rb.RECIPE, key, value)
    monkeypatch.setitem(rb.TEACHER_RECIPE, "batch", 8)
    monkeypatch.setitem(rb.TEACHER_RECIPE, "steps", 40)
    few = _first_held_out()
    monkeypatch.setattr(heldout, "held_out_problems", lambda *args, **kwargs: list(few))
    rb._TEACHERS.clear()
    yield
    rb._TEACHERS.clear()


def _first_held_out():
    return heldout.held_out_problems()[:12]


def _tiny_teacher():
    return Transformer(ModelConfig(dim=32, n_layers=1, n_heads=4, inter_dim=64, max_seq_len=64)).eval()


@pytest.mark.parametrize("split", [True, False])
def test_no_stage_sees_a_held_out_pair(monkeypatch, small, split):
    seen = []
    sft_batch = arith.sft_batch
    sampler = heldout.sample_training_problems if split else \
        (lambda n, digits=2, generator=None: arith.sample_problems(n, digits, generator))

    def spy_sft(problems, *args, **kwargs):  # the teacher, the bases and both SFT arms train through it
        seen.extend(problems)
        return sft_batch(problems, *args, **kwargs)

    grpo_step = rb.grpo_step

    def spy_grpo(model, ref, opt, problems, *args, **kwargs):
        seen.extend(problems)
        return grpo_step(model, ref, opt, problems, *args, **kwargs)

    monkeypatch.setattr(heldout, "sample_training_problems", sampler)
    monkeypatch.setattr(arith, "sft_batch", spy_sft)
    monkeypatch.setattr(rb, "grpo_step", spy_grpo)
    monkeypatch.setattr(rb, "BASE_BUDGETS", (3, 6))
    teacher = rb.train_procedure_teacher()
    n_teacher = len(seen)
    assert n_teacher == 40 * 8
    out = rb.run_rl_base_seed(0)
    stages = {r["arm"] for r in out["runs"]}
    assert stages == {rb.arm_name(a, b) for a in ("base", *rb.ARMS) for b in (3, 6)}
    hits = sum(heldout.is_held_out(p) for p in seen)
    assert len(seen) > n_teacher + 6 * 8 + 2 * 4 * 4 + 4 * 8  # teacher, bases, GRPO, at least 4 SFT steps
    if split:
        assert hits == 0
    else:
        assert hits > 0
    assert teacher is rb.train_procedure_teacher()  # cached: trained once per process


def test_sft_arms_stop_at_grpos_compute_and_bill_by_hand(monkeypatch, small):
    drawn = []
    sampler = heldout.sample_training_problems

    def spy(n, digits=2, generator=None):
        drawn.append(sampler(n, digits, generator))
        return drawn[-1]

    monkeypatch.setattr(heldout, "sample_training_problems", spy)
    base = rb.nested_bases(0, (2,))[2]
    test = _first_held_out()
    drawn.clear()
    marks = [150.0, 330.0]
    labels = rb.run_sft("labels", base, 0, 1e-3, marks, test, test)
    # by hand: a row is prompt + answer + "\n" less its last byte; a step costs 3 passes per token
    steps = [3 * sum(len(p.prompt) + len(p.answer) for p in batch) for batch in drawn]
    assert labels["student_compute"] == sum(steps[:-1]) <= 330 < sum(steps)  # the last batch was refused
    assert labels["teacher_compute"] == 0 and len(labels["curve"]["compute"]) == 3
    drawn.clear()
    teacher = _tiny_teacher()
    distil = rb.run_sft("distil", base, 0, 1e-3, [3000.0, 6000.0], test, test, teacher)
    used = drawn[:-1]
    # the teacher writes max(budget) new tokens for every prompt-length group: B · (T + n − 1) each
    by_hand = sum(generation_passes(len(g), t, max(scratchpad.budget(p) for p in batch))
                  for batch in used for t, g in _groups(batch).items())
    assert distil["teacher_compute"] == by_hand > 0
    assert 0 < distil["student_compute"] <= 6000


def _groups(batch):
    out = {}
    for p in batch:
        out.setdefault(len(p.prompt), []).append(p)
    return out


def test_grpo_budget_does_not_depend_on_the_learning_rate(small):
    base = rb.nested_bases(1, (2,))[2]
    test = _first_held_out()
    a = rb.run_grpo(base, 1, 1e-4, test, test)
    b = rb.run_grpo(base, 1, 1e-2, test, test)
    assert a["student_compute"] == b["student_compute"] > 0  # an untrained base never stops early
    assert a["curve"]["compute"][1:] == b["curve"]["compute"][1:] == rb.grpo_marks(1)
    assert len(a["curve"]["zero_signal"]) == SMALL["grpo_steps"]
    assert all(0 <= z <= 1 for z in a["curve"]["zero_signal"])
    # an untrained base gets every answer wrong: every group is without signal, and all of them all-wrong
    assert a["curve"]["all_wrong"] == a["curve"]["zero_signal"] == [1.0] * SMALL["grpo_steps"]
    assert a["curve"]["all_right"] == [0.0] * SMALL["grpo_steps"]
    assert (a["zero_signal_mean"], a["all_wrong_mean"], a["all_right_mean"]) == (1.0, 1.0, 0.0)


def test_grpo_marks_bound_a_base_that_stops_early(monkeypatch, small):
    from helpers import grpo as grpo_module

    real = grpo_module.sample_groups

    def short(model, prompts, group_size, max_new_tokens, *args, **kwargs):  # as if every row ended early
        return real(model, prompts, group_size, max(1, max_new_tokens - 2), *args, **kwargs)

    monkeypatch.setattr(grpo_module, "sample_groups", short)
    base = rb.nested_bases(1, (2,))[2]
    test = _first_held_out()
    got = rb.run_grpo(base, 1, 1e-4, test, test)["curve"]["compute"][1:]
    assert all(g < m for g, m in zip(got, rb.grpo_marks(1)))


def test_nested_bases_are_snapshots_of_one_run(small):
    two = rb.nested_bases(0, (2, 5))
    five = rb.nested_bases(0, (5,))[5]
    for p, q in zip(two[5].parameters(), five.parameters()):
        assert torch.equal(p, q)
    assert any(not torch.equal(p, q) for p, q in zip(two[2].parameters(), five.parameters()))
    with pytest.raises(ValueError):
        rb.nested_bases(0, (0,))


def test_arm_checks():
    with pytest.raises(ValueError):
        rb.run_sft("distil", _tiny_teacher(), 0, 1e-3, [10.0], [], [])
    assert rb.arm_name("GRPO", 250) == "GRPO @250"


def test_accuracy_pp_and_zero_signal_read_a_sweep(tmp_path):
    from helpers.experiments.sweep import load_sweep, write_sweep

    per_seed = []
    for s in (0, 1, 2):
        runs = [{"arm": rb.arm_name(a, 10), "seed": s, "metric": "accuracy", "value": v}
                for a, v in (("base", 0.1 * s), ("GRPO", 0.1 * s + 0.05), ("distil", 0.5), ("labels", 0.25))]
        curves = {rb.arm_name("GRPO", 10): {"compute": [0.0, 1.0], "accuracy": [0.0, 0.1],
                                            "zero_signal": [1.0, 0.5 * s], "all_wrong": [1.0, 0.0],
                                            "all_right": [0.0, 0.5 * s]}}
        per_seed.append({"seed": s, "runs": runs, "curves": curves, "uptrain": None})
    sweep = load_sweep("rl_base", write_sweep("rl_base", per_seed, tmp_path / "x.json", meta={}))
    pp = rb.accuracy_pp(sweep, 10)
    assert pp.arms == ["base", "GRPO", "distil", "labels"]
    assert pp.values["GRPO"] == pytest.approx({0: 5.0, 1: 15.0, 2: 25.0})
    d = pp.difference("base", "GRPO")
    assert d.mean == pytest.approx(5.0) and d.half_width == pytest.approx(0.0, abs=1e-9)
    assert rb.zero_signal_curves(sweep, 10) == {0: [1.0, 0.0], 1: [1.0, 0.5], 2: [1.0, 1.0]}
    assert rb.zero_signal_curves(sweep, 10, "all_right") == {0: [0.0, 0.0], 1: [0.0, 0.5], 2: [0.0, 1.0]}
    with pytest.raises(ValueError):
        rb.zero_signal_curves(sweep, 10, "some")


def test_the_committed_pilot_has_the_teacher_the_sweep_uses():
    rows = {r["steps"]: r for r in rb.pilot_rows("teacher")}
    assert rb.TEACHER_RECIPE["steps"] in rows
    assert set(rows[rb.TEACHER_RECIPE["steps"]]) >= {"exact_scratch", "final_right", "params"}
    assert rb.pilot_rows("no such pilot") == []


def test_the_committed_sweep_has_every_arm_and_splits_grpos_silent_groups():
    from helpers.experiments import load_sweep
    from helpers.experiments.sweep import SEEDS

    sweep = load_sweep("rl_base")
    want = {rb.arm_name(a, b) for b in rb.BASE_BUDGETS for a in ("base", *rb.ARMS)}
    assert set(sweep.arms) == want
    for arm in want:
        assert sweep.seeds_of(arm) == list(SEEDS), arm
    assert sweep.meta["recipe"] == rb.RECIPE and sweep.meta["lr"] == rb.LR
    assert sweep.meta["base_budgets"] == list(rb.BASE_BUDGETS)
    for s in sweep.seeds:
        for b in rb.BASE_BUDGETS:
            c = sweep.curves[s][rb.arm_name("GRPO", b)]
            z, w, r = c["zero_signal"], c["all_wrong"], c["all_right"]
            assert len(z) == len(w) == len(r) == rb.RECIPE["grpo_steps"]
            # rewards are 0 or 1: a group without signal is all wrong or all right, never anything else
            assert all(abs(zi - wi - ri) < 1e-12 for zi, wi, ri in zip(z, w, r))
            assert sweep.value(rb.arm_name("GRPO", b), s, "all_wrong_mean") == pytest.approx(
                sum(w) / len(w))
            for arm in ("distil", "labels"):  # the SFT arms stop at GRPO's budget (an upper bound of it)
                assert sweep.value(rb.arm_name(arm, b), s, "student_compute") <= rb.grpo_marks(s)[-1]
