"""Lesson 07's committed sweep: the task is what it claims (the second half repeats the first), the stages
train what they claim (the warm-up moves only the indexers), the file holds every arm on every seed, and
(slow) one seed's arm re-run here reproduces the committed numbers exactly."""

import pytest
import torch
from testkit import assert_reproduces

from helpers import load_corpus
from helpers.dsa import dsa_layers, indexer_parameters
from helpers.experiments import dsa as dsw
from helpers.experiments import load_sweep


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


def test_repeat_batch_second_half_repeats_the_first(corpus):
    x, y = dsw.repeat_batch(corpus, "train", 3, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (3, dsw.SEQ_LEN)
    seq = torch.cat([x, y[:, -1:]], dim=1)  # (B, 2·HALF)
    assert torch.equal(seq[:, :dsw.HALF], seq[:, dsw.HALF:])
    # every copy-half target sits exactly HALF positions back in the input
    assert torch.equal(y[:, dsw.HALF - 1:], x[:, :dsw.HALF])


def test_arm_k_and_arms():
    assert dsw.arm_k("dense") == dsw.DENSE_K >= dsw.SEQ_LEN
    assert [dsw.arm_k(f"k={k}") for k in dsw.KS] == list(dsw.KS)
    assert dsw.arm_k("k=4, no warm-up") == 4
    with pytest.raises(ValueError, match="arm"):
        dsw.arm_k("k=5")


def test_measure_restores_the_layers_and_reads_k(corpus):
    model = dsw.new_dsa_model(0)
    before = [(m.index_topk, m.phase) for m in dsa_layers(model)]
    dense, sparse = dsw.measure(model, corpus, dsw.DENSE_K), dsw.measure(model, corpus, 2)
    assert [(m.index_topk, m.phase) for m in dsa_layers(model)] == before
    assert dense["copy_loss"] != sparse["copy_loss"]  # k = 2 reads less than the dense layer
    n_text, n_copy = dsw.HALF - 1, dsw.SEQ_LEN - (dsw.HALF - 1)
    whole = (dense["text_loss"] * n_text + dense["copy_loss"] * n_copy) / dsw.SEQ_LEN
    assert dense["val_loss"] == pytest.approx(whole, rel=1e-5)


def test_warm_up_moves_only_the_indexers(corpus, monkeypatch):
    monkeypatch.setitem(dsw.RECIPE, "warmup_steps", 3)
    monkeypatch.setitem(dsw.RECIPE, "recall_every", 3)
    model = dsw.new_dsa_model(0)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    curve = dsw.warm_up(model, corpus, 0)
    indexer = {id(p) for p in indexer_parameters(model)}
    for name, p in model.named_parameters():
        moved = not torch.equal(p, start[name])
        assert moved == (id(p) in indexer), name
    assert curve["step"] == [0, 3] and len(curve["kl"]) == 3
    assert all(p.requires_grad for p in model.parameters())


def test_committed_sweep_has_every_arm_on_every_seed():
    sweep = load_sweep("dsa")
    assert sweep.arms == ["indexer", *dsw.ARMS]
    for arm in sweep.arms:
        assert sweep.seeds_of(arm) == list(dsw.SEEDS), arm
    assert sweep.meta["recipe"] == dsw.RECIPE and sweep.meta["eval"] == dsw.EVAL
    for s in dsw.SEEDS:  # the warm-up raised the indexer's recall on every seed
        curve = sweep.curves[s]["warmup"]["recall_mass"]
        assert curve[-1] > curve[0]


@pytest.mark.slow
def test_one_seed_reproduces_the_committed_numbers(corpus):
    got = dsw.run_dsa_seed(1, corpus, arms=["k=4"])
    sweep = load_sweep("dsa")
    by_arm: dict[str, dict[str, float]] = {}
    for rec in got["runs"]:
        if rec["metric"] != "train_seconds":  # a time, not a result
            by_arm.setdefault(rec["arm"], {})[rec["metric"]] = rec["value"]
    assert set(by_arm) == {"indexer", "k=4"}
    for arm, numbers in by_arm.items():
        assert_reproduces(sweep.reproduction(arm, 1, numbers))
