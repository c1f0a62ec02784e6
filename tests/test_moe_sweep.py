"""Lesson 04's committed MoE sweep: its design (one base, one knob per arm, equal active parameters for the
shared-expert pair), its measures on hand-made tables, and (slow) that one arm re-run here reproduces the
committed numbers."""

import math

import pytest
import torch
from testkit import assert_reproduces

from helpers import load_corpus
from helpers.experiments import load_sweep
from helpers.experiments import moe as ms


def test_arms_differ_only_in_router_and_balance():
    arms = ms.moe_arms()
    for name, cfg in arms.items():
        assert (cfg.dim, cfg.n_layers, cfg.n_routed_experts, cfg.moe_inter_dim) == (
            ms.BASE.dim, ms.BASE.n_layers, ms.BASE.n_routed_experts, ms.BASE.moe_inter_dim), name
        assert cfg.score_func == name.split()[0]
        method = ms.method_of(name)
        want = {"none": "none", "aux": "aux", "seq-aux": "seq_aux", "loss-free": "loss_free",
                "shared": "loss_free", "capacity": "none"}[method]
        assert cfg.balance == want, name
        knob = ms.knob_of(name)
        if method in ("aux", "seq-aux"):
            assert cfg.aux_loss_alpha == knob
        elif method == "loss-free":
            assert cfg.bias_update_speed == knob
        # only the capacity arms drop tokens, and they differ from "softmax none" in that alone
        assert cfg.capacity_factor == (knob if method == "capacity" else 0.0), name
        if method == "capacity":
            assert cfg == arms["softmax none"].replace(capacity_factor=knob)
    # Wang et al.'s α and values large enough to hurt are both in the sweep
    assert {0.001, 1.0} <= set(ms.ALPHAS)


def test_shared_expert_pair_has_equal_active_width_and_a_router_that_learns():
    k3, shared = ms.moe_arms()["sigmoid K=3"], ms.moe_arms()["sigmoid K=2+shared"]
    active = [c.moe_inter_dim * (c.n_activated_experts + c.n_shared_experts) for c in (k3, shared)]
    assert active[0] == active[1]
    # K >= 2 with renormalised gates: the gates are not all exactly 1, so the router gets a gradient
    assert min(k3.n_activated_experts, shared.n_activated_experts) >= 2


def test_mutual_information_and_total_variation_on_known_tables():
    independent = torch.tensor([[10, 10], [30, 30]])
    assert ms.mutual_information(independent) == pytest.approx(0.0, abs=1e-12)
    diagonal = torch.tensor([[50, 0], [0, 50]])  # the expert says which class: 1 bit
    assert ms.mutual_information(diagonal) == pytest.approx(1.0)
    assert ms.total_variation(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])) == pytest.approx(1.0)
    assert ms.total_variation(torch.tensor([[2.0, 2.0]]), torch.tensor([[1.0, 1.0]])) == pytest.approx(0.0)


def test_byte_classes_cover_every_byte_once():
    table = ms.class_of_byte()
    assert table.shape == (256,) and table.min() >= 0
    total = sum(len(set(m)) for m in ms.BYTE_CLASSES.values())
    assert total == 256  # disjoint and complete


def test_step_cost_and_its_bad_inputs():
    assert ms.step_cost(0.0) == 1.0 and ms.step_cost(1.85) == pytest.approx(2.85)
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="MaxVio"):
            ms.step_cost(bad)


def test_committed_sweep_has_every_arm_on_every_seed():
    sweep = load_sweep("moe")
    assert set(sweep.arms) == set(ms.moe_arms())
    for arm in sweep.arms:
        assert sweep.seeds_of(arm) == list(ms.SEEDS), arm
    assert sweep.meta["recipe"] == ms.RECIPE and sweep.meta["eval"] == ms.EVAL


def test_capacity_arms_were_added_as_an_extension_with_their_own_build():
    sweep = load_sweep("moe")
    added = [a for a in sweep.arms if ms.method_of(a) == "capacity"]
    assert added == [ms.arm_name("softmax", "capacity", c) for c in ms.CAPACITY_FACTORS]
    ext = sweep.meta["extensions"][0]
    assert ext["arms"] == added and ext["seeds"] == list(ms.SEEDS) and "cpu" in ext
    for arm in added:  # they dropped something, and only they record it
        assert all(0 < sweep.value(arm, s, "dropped") < 1 for s in ms.SEEDS)
    assert "dropped" not in {r["metric"] for r in sweep.records if r["arm"] == "softmax none"}


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["softmax aux α=0.1", "sigmoid K=2+shared", "softmax capacity c=1.25"])
def test_one_arm_reproduces_the_committed_numbers(arm):
    corpus = load_corpus()
    model, _ = ms.train_moe_arm(ms.moe_arms()[arm], 1, corpus)
    got = ms.measure_moe(model, corpus)
    assert_reproduces(load_sweep("moe").reproduction(arm, 1, got))


def test_the_paired_price_figure_draws_every_balancing_arm_against_none():
    import matplotlib.pyplot as plt

    sweep = load_sweep("moe")
    fig = ms.plot_paired_frontier(sweep, "softmax")
    ax = fig.axes[0]
    diffs = ms.paired_against_none(sweep, "softmax")
    assert len([line for line in ax.lines if line.get_gid() == "interval"]) == len(diffs) > 0
    assert ax.get_xscale() == "log" and any(tuple(line.get_ydata()) == (0.0, 0.0) for line in ax.lines)
    assert all(ms.method_of(a) not in ("capacity", "shared", "none") for a in diffs)
    nearest = ms.matched_aux_arms(sweep, "softmax loss-free γ=0.01", 2)
    assert len(nearest) == 2 and all(ms.method_of(a) == "aux" for a in nearest)
    plt.close("all")
