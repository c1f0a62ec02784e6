"""helpers.reproduce: a live run against its committed sweep, exactly on the sweep's torch build and
inside the seeds' prediction range on any other, always saying which check ran."""

import math
import statistics

import pytest
import torch

from helpers.experiments import attention as ex
from helpers.reproduce import build, build_meta, cpu, prediction_range, reproduction, same_build

SPREAD = [2.00, 2.10, 1.95, 2.05, 2.02]  # five committed seeds of one arm
SAME = build_meta()
OTHER = {"torch": "0.0.1+elsewhere", "cpu": cpu()}


def test_the_build_is_torch_version_with_its_local_tag_on_one_kind_of_cpu():
    assert build() == torch.__version__ and SAME == {"torch": build(), "cpu": cpu()}
    assert torch.backends.cpu.get_cpu_capability() in cpu()
    assert same_build(SAME) and not same_build(OTHER) and not same_build({})
    assert not same_build({**SAME, "torch": torch.__version__.split("+")[0] + "+another"})
    assert not same_build({**SAME, "cpu": "aarch64, Apple M9, NEON"})  # same torch, another CPU
    assert not same_build({"torch": build()})  # a sweep that does not say which CPU made it


def test_prediction_range_is_the_student_t_formula():
    low, high = prediction_range(SPREAD)
    n, m, sd = 5, statistics.fmean(SPREAD), statistics.stdev(SPREAD)
    half = 2.7764451 * sd * math.sqrt(1 + 1 / n)  # t(4, 97.5%) from a table
    assert (low, high) == pytest.approx((m - half, m + half), rel=1e-6)
    assert prediction_range([1.0, 1.0, 1.0]) == (1.0, 1.0)  # no spread: only the value itself
    with pytest.raises(ValueError, match="at least 2"):
        prediction_range([1.0])


def test_on_the_sweeps_build_only_the_exact_number_passes():
    ok = reproduction("MHA, seed 0", {"val_loss": 2.0}, {"val_loss": 2.0}, {"val_loss": SPREAD}, SAME)
    assert ok.exact and ok.ok and "exactly" in ok.sentence and ok.sentence.endswith("True")
    off = reproduction("MHA, seed 0", {"val_loss": 2.0001}, {"val_loss": 2.0}, {"val_loss": SPREAD}, SAME)
    assert off.expected_exact and not off.ok and not off.exact  # inside the spread is not enough here
    assert "exactly: False" in off.sentence and "own build" in off.sentence
    with pytest.raises(AssertionError, match="outside"):
        off.check()


def test_on_another_build_the_spread_decides_and_the_sentence_says_why():
    inside = reproduction("MHA, seed 0", {"val_loss": 2.09}, {"val_loss": 2.0}, {"val_loss": SPREAD}, OTHER)
    assert not inside.expected_exact and not inside.exact and inside.ok and inside.n_seeds == 5
    s = inside.sentence
    assert "exactly" not in s and build() in s and OTHER["torch"] in s and "5 seeds" in s
    assert s.endswith("True")
    outside = reproduction("MHA, seed 0", {"val_loss": 2.5}, {"val_loss": 2.0}, {"val_loss": SPREAD}, OTHER)
    assert not outside.ok and [c.metric for c in outside.failures] == ["val_loss"]
    # the bits may still match on another machine: then, and only then, it says "exactly"
    same_bits = reproduction("MHA, seed 0", {"val_loss": 2.0}, {"val_loss": 2.0}, {"val_loss": SPREAD}, OTHER)
    assert same_bits.ok and same_bits.exact and "exactly: True" in same_bits.sentence


def test_a_sweep_that_did_not_record_its_cpu_is_never_expected_to_repeat_bit_for_bit():
    old = {"torch": build()}  # the sweeps committed before their CPU was recorded
    rep = reproduction("x", {"val_loss": 2.09}, {"val_loss": 2.0}, {"val_loss": SPREAD}, old)
    assert not rep.expected_exact and rep.ok and "did not record" in rep.sentence


def test_counts_named_exact_must_match_on_every_build():
    got = {"val_loss": 2.05, "flops": 1.0e12 + 1e7}  # off by 1e-5 of itself
    spread = {"val_loss": SPREAD, "flops": [1e12] * 5}
    rep = reproduction("x", got, {"val_loss": 2.0, "flops": 1.0e12}, spread, OTHER, exact=("flops",))
    assert [c.metric for c in rep.failures] == ["flops"]
    rep = reproduction("x", {**got, "flops": 1.0e12}, {"val_loss": 2.0, "flops": 1.0e12},
                       {"val_loss": SPREAD, "flops": [1e12] * 5}, OTHER, exact=("flops",))
    assert rep.ok


def test_a_metric_with_no_committed_value_is_an_error():
    with pytest.raises(KeyError, match="acceptance"):
        reproduction("x", {"acceptance": 0.5}, {"val_loss": 2.0}, {"val_loss": SPREAD}, SAME)


def test_a_sweep_checks_a_live_run_against_its_own_seeds(tmp_path, monkeypatch):
    per_seed = [{"seed": s, "runs": [{"arm": "MHA", "seed": s, "metric": "val_loss", "value": v}],
                 "curves": {}, "uptrain": {"mean-pool": {"at_0": 3.0 + v, "final": v}}}
                for s, v in enumerate(SPREAD)]
    sweep = ex.load_sweep(path=ex.write_attention_sweep(per_seed, path=tmp_path / "s.json"))
    assert sweep.meta["torch"] == torch.__version__ and sweep.meta["cpu"] == cpu()  # written here
    assert sweep.reproduction("MHA", 1, {"val_loss": 2.10}).exact
    assert not sweep.reproduction("MHA", 1, {"val_loss": 2.05}).ok  # exact on this build
    assert sweep.uptrain_reproduction("mean-pool", 2, {"final": 1.95, "at_0": 4.95}).ok
    monkeypatch.setattr("helpers.reproduce.build", lambda: "9.9.9")  # as if on another torch
    rep = sweep.reproduction("MHA", 1, {"val_loss": 2.05})
    assert not rep.expected_exact and not rep.exact and rep.ok and "9.9.9" in rep.sentence
    assert not sweep.uptrain_reproduction("mean-pool", 2, {"final": 3.0}).ok


def test_parts_of_one_run_combine_into_one_verdict():
    from helpers.reproduce import combined

    a = reproduction("MHA", {"val_loss": 2.0}, {"val_loss": 2.0}, {"val_loss": SPREAD}, SAME)
    b = reproduction("GQA-2", {"val_loss": 2.1}, {"val_loss": 2.0}, {"val_loss": SPREAD}, SAME)
    both = combined("seed 0", [a, b])
    assert both.expected_exact and not both.ok and [c.metric for c in both.failures] == ["GQA-2: val_loss"]
    assert combined("seed 0", [a]).ok
    with pytest.raises(ValueError, match="at least one"):
        combined("seed 0", [])
    c = reproduction("x", {"val_loss": 2.0}, {"val_loss": 2.0}, {"val_loss": SPREAD}, OTHER)
    with pytest.raises(ValueError, match="different builds"):
        combined("seed 0", [a, c])


def test_a_scaled_run_is_not_compared_and_says_why(monkeypatch):
    from helpers.reproduce import combined

    monkeypatch.setenv("COURSE_STEPS_SCALE", "0.02")
    rep = reproduction("MHA, seed 0", {"val_loss": 4.0}, {"val_loss": 2.0}, {"val_loss": SPREAD}, SAME)
    assert rep.ok and not rep.exact and rep.checks == ()
    assert "COURSE_STEPS_SCALE=0.02" in rep.sentence and "not the sweep's run" in rep.sentence
    assert "not the sweep's run" in combined("both", [rep, rep]).sentence


def test_several_metrics_share_the_95_percent_bonferroni():
    """k metrics checked on one run: each at 1 − 5%/k, so a faithful run passes all of them together 95%
    of the time. A value between the one-metric 95% edge and the two-metric 97.5% edge passes when it is
    one of two metrics and fails alone."""
    _, high95 = prediction_range(SPREAD)
    _, high975 = prediction_range(SPREAD, 0.975)
    assert high975 > high95
    x = (high95 + high975) / 2
    alone = reproduction("run", {"a": x}, {"a": 2.0}, {"a": SPREAD}, OTHER)
    pair = reproduction("run", {"a": x, "b": 2.0}, {"a": 2.0, "b": 2.0}, {"a": SPREAD, "b": SPREAD}, OTHER)
    assert not alone.ok and pair.ok
    assert pair.checks[0].high == pytest.approx(high975)
    # metrics checked exactly everywhere do not widen the others
    counted = reproduction("run", {"a": x, "flops": 1.0}, {"a": 2.0, "flops": 1.0}, {"a": SPREAD}, OTHER,
                           exact=["flops"])
    assert not counted.ok
