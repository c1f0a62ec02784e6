"""Lessons 05 and 06's committed sweeps: the arms compare what they claim to (same recipe, matched
active parameters), the files hold every arm on every seed, and (slow) one arm re-run here reproduces the
committed numbers exactly."""

import pytest
from testkit import assert_reproduces

from helpers import load_corpus
from helpers.experiments import load_sweep
from helpers.experiments import models as ms
from helpers.params import param_count


def test_mtp_arms_differ_only_in_the_mtp_module():
    plain, mtp = ms.mtp_arms().values()
    assert mtp.replace(mtp_depth=0) == plain and mtp.mtp_depth == 1


def test_capstone_baseline_has_the_capstones_active_parameters():
    base, ours = ms.capstone_arms().values()
    assert abs(param_count(base).total / param_count(ours).active - 1) < 0.01
    from helpers.lessons.capstone import plan_for

    cpu = plan_for("cpu")  # unset COURSE_* variables: the lesson's CPU plan is the sweep's recipe
    assert {k: getattr(cpu, k) for k in ms.CAPSTONE_RECIPE} == ms.CAPSTONE_RECIPE


@pytest.mark.parametrize("name", ["mtp", "capstone"])
def test_committed_sweep_has_every_arm_on_every_seed(name):
    sweep = load_sweep(name)
    assert sweep.arms == list(ms.ARMS[name]())
    for arm in sweep.arms:
        assert sweep.seeds_of(arm) == list(ms.SEEDS), arm
    assert sweep.meta["recipe"] == ms.RECIPES[name] and sweep.meta["eval"] == ms.EVAL
    assert sweep.meta["threads"] == ms.THREADS  # the live re-runs train on the sweep's thread count


@pytest.mark.slow
def test_one_arm_reproduces_the_committed_numbers():
    corpus = load_corpus()
    model, _ = ms.train_run("mtp", "MTP (D=1)", 1, corpus)
    got = ms.measure_model(model, corpus)
    assert set(got) >= {"val_loss", "val_docs", "val_code", "acceptance"}
    assert_reproduces(load_sweep("mtp").reproduction("MTP (D=1)", 1, got))
