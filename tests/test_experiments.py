"""The committed attention sweep: its design (equal-byte rivals), its file format, and (slow) that one
arm of it and its uptraining re-run here reproduce the committed numbers."""

import json

import pytest
import torch
from testkit import assert_reproduces

from helpers import load_corpus, preset
from helpers.compare import PairedRuns
from helpers.experiments import attention as ex
from helpers.experiments import sweep as sw
from helpers.model import Transformer
from helpers.reproduce import build_meta


def test_mla_arms_cache_exactly_as_much_as_their_rivals():
    arms = ex.attention_arms()
    n = {a: ex.cache_numbers_per_token(c) for a, c in arms.items()}
    assert n["MHA"] == 2 * 6 * 16 and n["GQA-2"] == 64 and n["MQA"] == 32
    assert n["MLA Dc=24"] == n["MQA"] and n["MLA Dc=56"] == n["GQA-2"] and n["MLA Dc=4"] < n["MQA"]
    base = preset("tiny")
    for name, cfg in arms.items():  # one recipe, one base: only the attention differs
        assert (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.inter_dim) == (base.dim, base.n_layers,
                                                                          base.n_heads, base.inter_dim), name


def test_cache_numbers_match_the_measured_cache():
    from helpers.kv_cache import measured_cache_bytes_per_token
    from helpers.mla import set_mla_mode

    for name, cfg in ex.attention_arms(preset("test")).items():
        model = Transformer(cfg)
        if cfg.attn_type == "mla":
            set_mla_mode(model, "absorbed")  # inference caches the latent
        want = ex.cache_numbers_per_token(cfg) * cfg.n_layers * 4  # float32
        assert measured_cache_bytes_per_token(model) == want, name


def test_copy_probe_sees_a_model_that_copies():
    """A stand-in 'model' that predicts the repeat perfectly (it looks back L+1 positions) has a large
    copy gain; the probe's numbers are the loss on the first copy and on the repeat."""
    class Copier(torch.nn.Module):
        device = torch.device("cpu")

        def forward(self, x):  # (n, T) -> (n, T, 256): position t >= L predicts x[t - L] (the first copy)
            L = 48
            logits = torch.zeros(*x.shape, 256)
            logits[:, L:].scatter_(2, x[:, :x.shape[1] - L].unsqueeze(-1), 30.0)
            return logits

    first, repeat = ex.copy_probe(Copier())
    assert repeat < 1e-6 and first == pytest.approx(torch.log(torch.tensor(256.0)).item(), rel=1e-4)


def fake_seed(seed: int) -> dict:
    runs = [{"arm": a, "seed": seed, "metric": "val_loss", "value": 2.0 + 0.01 * i + 0.001 * seed}
            for i, a in enumerate(["MHA", "MQA"])]
    up = {arm: {"at_0": 3.0 + i, "final": 2.0 + i / 10, "curve_step": [0, 5], "curve": [3.0 + i, 2.5]}
          for i, arm in enumerate(["MHA + same steps", "mean-pool", "first-head"])}
    return {"seed": seed, "runs": runs, "curves": {"MHA": {"step": [50], "val_loss": [2.0]}}, "uptrain": up}


def test_a_written_sweep_loads_back_as_paired_runs(tmp_path):
    path = ex.write_attention_sweep([fake_seed(1), fake_seed(0)], path=tmp_path / "s.json")
    sweep = ex.load_sweep(path=path)
    assert sweep.seeds == [0, 1] and sweep.arms == ["MHA", "MQA"]
    runs = sweep.runs("val_loss")
    assert isinstance(runs, PairedRuns) and runs.difference("MHA", "MQA").mean == pytest.approx(0.01)
    assert sweep.value("MQA", 1) == pytest.approx(2.011)
    assert sweep.uptrain_runs("at_0").difference("mean-pool", "first-head").mean == pytest.approx(1.0)
    assert json.loads(path.read_text())["meta"]["threads"] == ex.THREADS
    with pytest.raises(KeyError, match="no metric"):
        sweep.runs("copy_gain")
    with pytest.raises(FileNotFoundError, match="scripts/sweep.py"):
        ex.load_sweep(path=tmp_path / "missing.json")


def test_entries_for_one_seed_merge_and_a_repeat_is_refused(tmp_path):
    extra = fake_seed(0)
    extra["runs"] = [dict(r, arm="MLA Dc=4") for r in extra["runs"][:1]]
    extra["uptrain"] = None
    sweep = ex.load_sweep(path=ex.write_attention_sweep([fake_seed(0), fake_seed(1), extra],
                                              path=tmp_path / "s.json"))
    assert sweep.seeds_of("MLA Dc=4") == [0] and sweep.seeds_of("MHA") == [0, 1]
    assert sweep.runs("val_loss", ["MHA", "MQA"]).seeds == [0, 1]  # the seeds both arms have
    assert sweep.runs("val_loss", ["MHA", "MLA Dc=4"]).seeds == [0]
    with pytest.raises(ValueError, match="two results"):
        ex.write_attention_sweep([fake_seed(0), fake_seed(0)], path=tmp_path / "t.json")


def test_an_extension_adds_new_arms_and_records_their_own_build(tmp_path):
    path = ex.write_sweep("attention", [fake_seed(0), fake_seed(1)], path=tmp_path / "s.json",
                          meta={"recipe": {}, "torch": "2.0.0+old"})
    old_curves = ex.load_sweep(path=path).curves
    later = [{"seed": s, "runs": [{"arm": "GQA-2", "seed": s, "metric": "val_loss", "value": 2.5 + s}],
              "curves": {"GQA-2": {"step": [0, 1], "val_loss": [5.0, 2.5 + s]}}, "uptrain": None}
             for s in (0, 1)]
    sw.extend_sweep("attention", later, "a test", path=path)
    sweep = ex.load_sweep(path=path)
    assert sweep.arms == ["MHA", "MQA", "GQA-2"] and sweep.value("GQA-2", 1) == 3.5
    for s in (0, 1):  # the new arm's curve is kept, beside the seed's committed ones, which are unchanged
        assert sweep.curves[s]["GQA-2"] == {"step": [0, 1], "val_loss": [5.0, 2.5 + s]}
        assert {k: v for k, v in sweep.curves[s].items() if k != "GQA-2"} == old_curves[s]
    assert sweep.meta["torch"] == "2.0.0+old"  # the sweep's own build stays
    ext = sweep.meta["extensions"][0]
    assert ext["arms"] == ["GQA-2"] and ext["seeds"] == [0, 1] and ext["made_by"] == "a test"
    assert sweep.build_of("GQA-2") is ext and sweep.build_of("MHA") is sweep.meta
    assert ext["torch"] == build_meta()["torch"]
    # the extension's arm is checked against its own build: here that is this machine, so bit for bit
    assert sweep.reproduction("GQA-2", 0, {"val_loss": 2.5}).expected_exact
    assert not sweep.reproduction("MHA", 0, {"val_loss": 2.0}).expected_exact
    with pytest.raises(ValueError, match="already has arms"):
        sw.extend_sweep("attention", later, "again", path=path)


def test_the_committed_sweep_is_complete_and_paired():
    sweep = ex.load_sweep("attention")
    assert sweep.arms == list(ex.attention_arms())
    for arm in sweep.arms:  # every arm on the same ten seeds: no verdict of lessons 02/03 drops a seed
        assert sweep.seeds_of(arm) == sorted(ex.SEEDS + ex.EXTRA_SEEDS), arm
    assert sweep.meta["recipe"] == ex.RECIPE and sweep.meta["eval"] == ex.EVAL
    assert sweep.meta["init"] == ex.INIT  # made with paired initial weights (train_arm's)
    assert not sweep.runs("val_loss").left_out
    for metric in ("val_loss", "copy_gain"):
        assert set(sweep.runs(metric).values) == set(sweep.arms)
    assert sorted(sweep.uptrain_records) == sorted(ex.SEEDS + ex.EXTRA_SEEDS)


def test_train_arm_starts_every_arm_from_paired_initial_weights(monkeypatch):
    """Two arms that differ only in attention start with every parameter they share identical (the
    global random stream would shift every module built after a narrower ``wk``), whatever the global
    seed was before; different seeds start apart."""
    starts = {}

    def capture(model, corpus, **kw):  # stands in for training: record the initial weights, train nothing
        starts[(model.config.n_kv_heads, kw["seed"])] = {k: v.clone() for k, v in model.state_dict().items()}

    monkeypatch.setattr(ex, "train", capture)
    arms = ex.attention_arms(preset("test"))
    torch.manual_seed(123)
    ex.train_arm(arms["MHA"], 0, corpus=None)
    torch.manual_seed(456)  # a different global state: must not matter
    ex.train_arm(arms["MQA"], 0, corpus=None)
    ex.train_arm(arms["MHA"], 1, corpus=None)
    mha, mqa, other = starts[(None, 0)], starts[(1, 0)], starts[(None, 1)]
    shared = [k for k in mqa if k in mha and mha[k].shape == mqa[k].shape]
    differs = [k for k in mqa if k not in shared]
    assert differs and all(".wk." in k or ".wv." in k for k in differs), differs
    for k in shared:
        assert torch.equal(mha[k], mqa[k]), k
    assert not torch.equal(mha["tok_emb.weight"], other["tok_emb.weight"])
    ex.train_arm(arms["MHA"], 0, corpus=None, perturb=ex.nudge_one_weight(1e-3))  # one weight, nothing else
    nudged = starts[(None, 0)]
    moved = {k: (nudged[k] != mha[k]).nonzero().tolist() for k in mha if not torch.equal(nudged[k], mha[k])}
    assert moved == {ex.NUDGED: [[0, 0]]}
    assert abs(nudged[ex.NUDGED][0, 0] - mha[ex.NUDGED][0, 0] - 1e-3) < 1e-6
    ex.train_arm(arms["MHA"], 0, corpus=None, perturb=ex.redraw_kv(7))  # K/V from seed 7, nothing else
    redrawn = starts[(None, 0)]
    changed = sorted(k for k in mha if not torch.equal(redrawn[k], mha[k]))
    assert changed == sorted(k for k in mha if k.endswith((".wk.weight", ".wv.weight")))
    assert torch.equal(redrawn["layers.0.attn.wk.weight"], other_seed_kv(arms["MHA"], 7))


def other_seed_kv(cfg, seed):
    from helpers.experiments.paired_init import paired_init
    return paired_init(Transformer(cfg), seed).state_dict()["layers.0.attn.wk.weight"]


def test_chaos_runs_pair_each_seed_with_its_perturbed_rerun(tmp_path):
    path = tmp_path / "chaos.jsonl"
    nudge, kv = ex.CONTROLS["nudge"][0], ex.CONTROLS["kv"][0]
    rows = [{"arm": "MHA", "seed": 0, "control": nudge, "val_loss_sweep": 2.0, "val_loss_perturbed": 9.0},
            {"arm": "MHA", "seed": 1, "control": nudge, "val_loss_sweep": 2.1, "val_loss_perturbed": 2.2},
            {"arm": "MHA", "seed": 0, "control": nudge, "val_loss_sweep": 2.0, "val_loss_perturbed": 2.05},
            {"arm": "MHA", "seed": 0, "control": kv, "val_loss_sweep": 2.0, "val_loss_perturbed": 2.5},
            {"arm": "MQA", "seed": 0, "control": nudge, "val_loss_sweep": 3.0, "val_loss_perturbed": 3.0}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    runs = ex.chaos_runs(path)  # the re-run of seed 0 replaces its first line; other controls/arms ignored
    assert runs.arms == ["MHA", f"MHA, {nudge}"] and runs.seeds == [0, 1]
    assert runs.difference(*runs.arms).per_seed == pytest.approx((0.05, 0.1))
    assert ex.chaos_runs(path, "kv").difference("MHA", f"MHA, {kv}").per_seed == pytest.approx((0.5,))
    with pytest.raises(ValueError, match="no rows"):
        ex.chaos_runs(path, arm="GQA-2")
    with pytest.raises(ValueError):
        ex.chaos_runs(path, "nonsense")


def test_the_committed_chaos_controls_match_the_sweep():
    """Each perturbed run sits beside the committed sweep's value for its seed (the unperturbed run), and
    every perturbation reached the training (a weight no token uses would leave the runs bit-identical)."""
    sweep = ex.load_sweep("attention")
    for control in ex.CONTROLS:
        runs = ex.chaos_runs(control=control)
        assert runs.seeds == sorted(ex.SEEDS + ex.EXTRA_SEEDS), control
        for s in runs.seeds:
            assert runs.values["MHA"][s] == sweep.value("MHA", s)
        assert all(d != 0 for d in runs.difference(*runs.arms).per_seed), control


@pytest.mark.slow
def test_one_arm_and_its_uptraining_reproduce_the_committed_sweep():
    """Training is bit-deterministic for a fixed seed, recipe, thread count and torch build: MQA and
    MLA Dc=24 on seed 0 and seed 0's uptraining land on the committed numbers on the sweep's build, and
    inside the seeds' spread on another (``helpers.reproduce``; re-make the sweep if the recipe changes:
    ``python scripts/sweep.py attention``)."""
    sweep, corpus, arms = ex.load_sweep("attention"), load_corpus(), ex.attention_arms()
    for arm in ("MQA", "MLA Dc=24"):
        model, _ = ex.train_arm(arms[arm], 0, corpus)
        got = ex.measure(model, corpus)
        assert_reproduces(sweep.reproduction(arm, 0, {m: got[m] for m in ("val_loss", "copy_gain")}))
    mha, _ = ex.train_arm(arms["MHA"], 0, corpus)
    up = ex.uptrain(mha, 0, corpus)
    for arm in sweep.uptrain_records[0]:
        assert_reproduces(sweep.uptrain_reproduction(arm, 0, {k: up[arm][k] for k in ("at_0", "final")}))
