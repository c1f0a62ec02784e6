"""The recall sweep: its arms (equal-byte rivals, one base), paired initial weights across arms, its file
format, and (slow) that one committed run reproduces."""

import json

import pytest
import torch

from helpers.experiments import cache_numbers_per_token, load_sweep
from helpers.experiments import recall as rs


def test_arms_cache_what_the_issue_asks():
    n = {a: cache_numbers_per_token(c) for a, c in rs.recall_arms().items()}
    assert n == {"MHA": 128, "GQA-2": 16, "MQA": 8, "MLA Dc=6": 8, "MLA Dc=14": 16}
    base = rs.BASE
    for name, cfg in rs.recall_arms().items():  # one base: only the attention differs
        assert (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.inter_dim, cfg.max_seq_len) == (
            base.dim, base.n_layers, base.n_heads, base.inter_dim, base.max_seq_len), name


def test_arms_of_a_seed_start_from_the_same_shared_weights():
    models = {a: dict(rs.build(a, 4).named_parameters()) for a in rs.ARMS}
    mha = models["MHA"]
    for arm, params in models.items():
        for n, p in mha.items():
            if ".attn." not in n:
                assert torch.equal(p, params[n]), (arm, n)


def test_every_scored_n_fits_the_task_and_the_context():
    assert max(rs.PAIRS) <= rs.TASK.max_pairs() and rs.TASK.seq_len(max(rs.PAIRS)) <= rs.BASE.max_seq_len
    assert rs.metric(8) == "accuracy@N=8"


def test_a_tiny_run_writes_the_sweep_format(tmp_path, monkeypatch):
    monkeypatch.setattr(rs, "RECIPE", {**rs.RECIPE, "steps": 3, "batch_size": 4, "warmup": 1})
    monkeypatch.setattr(rs, "EVAL", {**rs.EVAL, "n_seqs": 8})
    per_seed = [rs.run_recall_seed(s, arms=["MHA", "MQA"]) for s in (0, 1)]
    path = rs.write_recall_sweep(per_seed, tmp_path / "recall.json")
    blob = json.loads(path.read_text())
    assert blob["meta"]["arms"]["MQA"]["cache_numbers_per_token_per_layer"] == 8
    sweep = load_sweep("recall", path)
    assert sweep.seeds == [0, 1] and sweep.arms == ["MHA", "MQA"]
    runs = sweep.runs(rs.metric(max(rs.PAIRS)))
    assert set(runs.arms) == {"MHA", "MQA"} and all(0 <= v <= 1 for v in runs.values["MHA"].values())


@pytest.mark.slow
def test_one_committed_run_reproduces():
    from testkit import assert_reproduces

    sweep = load_sweep("recall")
    got, _, _ = rs.train_arm("MQA", 0)
    assert_reproduces(sweep.reproduction("MQA", 0, got))


def _fake_sweep(tmp_path):
    """A sweep file with made-up accuracies: MQA loses more as N grows; MLA sits between."""
    import random

    rng = random.Random(0)
    per_seed = []
    for s in range(6):
        luck = rng.gauss(0, 0.05)
        runs = []
        for arm, slope in (("MHA", 0.0), ("GQA-2", 0.005), ("MQA", 0.02), ("MLA Dc=6", 0.01),
                           ("MLA Dc=14", 0.004)):
            for n in rs.PAIRS:
                runs.append({"arm": arm, "seed": s, "metric": rs.metric(n),
                             "value": min(1.0, 0.95 - slope * n + luck + rng.gauss(0, 0.005))})
        per_seed.append({"seed": s, "runs": runs, "curves": {}, "uptrain": None})
    return load_sweep("recall", rs.write_recall_sweep(per_seed, tmp_path / "recall.json"))


def test_the_lessons_readers_work_on_a_sweep(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = _fake_sweep(tmp_path)
    assert rs.pairs_of(sweep) == list(rs.PAIRS)
    table = rs.accuracy_table(sweep, ["MHA", "MQA"])
    assert "MQA" in table and "±" in table
    d = rs.differences(sweep, "MHA", "MQA")[max(rs.PAIRS)]
    assert d.excludes_zero and d.mean < 0
    assert rs.pairings(sweep, "MHA", "MQA")[max(rs.PAIRS)].correlation > 0.5  # shared luck: pairing pays
    assert "detectably below MHA's at N = " in rs.summary(sweep, "MHA", "MQA")
    assert rs.knee(sweep, "MHA") is None
    fig, (a1, a2) = plt.subplots(1, 2)
    rs.plot_accuracy(sweep, ["MHA", "MQA"], a1, chance=0.25)
    rs.plot_paired_against_n(sweep, [("MHA", "MQA"), ("MQA", "MLA Dc=6")], a2)
    plt.close(fig)
