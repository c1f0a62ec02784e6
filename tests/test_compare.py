"""helpers.compare: paired differences over seeds, t intervals, and verdicts that say "better"/"worse"
only where the interval excludes zero. Synthetic data only (no training), seeded generators."""

import json
import math
import re
import statistics

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from helpers import compare
from helpers.compare import (
    PairedRuns,
    difference,
    plot_difference_curve,
    plot_differences,
    plot_paired,
    run_paired,
)
from helpers.viz.style import PALETTE

JUDGING = re.compile(r"\b(better|worse|beats?)\b", re.I)


def simulate(n_experiments, n_seeds, true_diff, *, seed_sd=0.2, pair_sd=0.05, gen_seed=0):
    """(experiments, 2, seeds): arm a and arm b share a per-seed offset (init + data order) of spread
    ``seed_sd``; b is ``true_diff`` higher on average, with independent noise ``pair_sd`` per run."""
    g = torch.Generator().manual_seed(gen_seed)
    shared = seed_sd * torch.randn(n_experiments, 1, n_seeds, generator=g, dtype=torch.float64)
    noise = pair_sd * torch.randn(n_experiments, 2, n_seeds, generator=g, dtype=torch.float64)
    return 2.0 + shared + noise + torch.tensor([0.0, true_diff], dtype=torch.float64).view(1, 2, 1)


def all_differences(x):
    return [difference(row[0].tolist(), row[1].tolist(), names=("A", "B")) for row in x]


@pytest.mark.parametrize("df, confidence, expected", [
    (1, 0.95, 12.706), (2, 0.95, 4.303), (4, 0.95, 2.776), (9, 0.95, 2.262), (10, 0.95, 2.228),
    (29, 0.95, 2.045), (30, 0.95, 2.042), (4, 0.99, 4.604), (4, 0.90, 2.132), (1, 0.99, 63.657)])
def test_t_critical_matches_the_tables(df, confidence, expected):
    assert compare.t_critical(df, confidence) == pytest.approx(expected, abs=1e-3)


def test_t_critical_tends_to_the_normal():
    normal = statistics.NormalDist().inv_cdf(0.975)  # 1.95996
    assert compare.t_critical(1000) == pytest.approx(normal, abs=3e-3)
    assert compare.t_critical(1000) > compare.t_critical(1001) > normal
    values = [compare.t_critical(df) for df in range(1, 40)]
    assert values == sorted(values, reverse=True)


def test_interval_covers_the_truth_at_the_stated_rate():
    true_diff = 0.03
    diffs = all_differences(simulate(2000, 5, true_diff))
    coverage = sum(d.low <= true_diff <= d.high for d in diffs) / len(diffs)
    assert 0.93 <= coverage <= 0.97
    d = diffs[0]  # the pieces agree with a direct computation
    per_seed = list(d.per_seed)
    assert d.mean == pytest.approx(statistics.mean(per_seed))
    assert d.stderr == pytest.approx(statistics.stdev(per_seed) / math.sqrt(5))
    assert d.high - d.mean == pytest.approx(2.776 * d.stderr, rel=1e-3)


def test_pure_noise_reads_as_no_detectable_difference():
    diffs = all_differences(simulate(2000, 5, 0.0, gen_seed=1))
    verdicts = [d.verdict() for d in diffs]
    quiet = [v for d, v in zip(diffs, verdicts) if not d.excludes_zero]
    assert 0.93 <= len(quiet) / len(diffs) <= 0.97
    assert all(v.startswith("no detectable difference in validation loss at this scale") for v in quiet)
    assert not any(JUDGING.search(v) for v in quiet)
    # the words appear exactly where the interval excludes zero (the ~5% false alarms of a 95% interval)
    assert all(bool(JUDGING.search(v)) == d.excludes_zero for d, v in zip(diffs, verdicts))


def test_a_clear_effect_names_its_direction():
    x = simulate(1, 5, 0.2)[0]
    d = difference(x[0].tolist(), x[1].tolist(), names=("MHA", "GQA-2"))
    assert d.excludes_zero and d.low > 0
    v = d.verdict()
    assert v.startswith("GQA-2 is worse than MHA: its validation loss is higher by 0.2")
    assert "nats (95% interval over 5 paired seeds)" in v
    assert "better" in d.verdict(lower_is_better=False)  # e.g. accuracy: higher is better
    neutral = d.verdict("tokens/s", unit="", lower_is_better=None)
    assert neutral.startswith("GQA-2's tokens/s is higher than MHA's by") and not JUDGING.search(neutral)
    flipped = difference(x[1].tolist(), x[0].tolist(), names=("GQA-2", "MHA"))
    assert flipped.verdict().startswith("MHA is better than GQA-2: its validation loss is lower by")
    assert flipped.mean == pytest.approx(-d.mean)


def test_verdict_formats_the_interval():
    d = difference([1.0, 2.0, 3.0], [1.01, 2.03, 2.99], names=("MHA", "GQA-2"))
    assert not d.excludes_zero
    assert d.verdict() == ("no detectable difference in validation loss at this scale "
                           "(GQA-2 − MHA = +0.010, 95% interval −0.040 … +0.060 over 3 paired seeds)"
                           .replace("+0.010,", "+0.010 nats,"))
    assert str(d) == "GQA-2 − MHA: +0.010 ± 0.050 (95% interval, 3 paired seeds)"
    assert d.verdict(names=("a", "b")).count("b − a") == 1
    assert "90% interval" in difference([1, 2, 3], [1.01, 2.03, 2.99], confidence=0.9).verdict()


def test_one_seed_gives_no_interval():
    d = difference([2.5], [2.1], names=("MHA", "MLA"), seeds=[7])
    assert d.n == 1 and math.isnan(d.half_width) and not d.excludes_zero
    v = d.verdict()
    assert v.startswith("one seed: no interval (MLA − MHA = −0.4") and "seed 7" in v
    assert not JUDGING.search(v)
    fig = plot_differences({"MLA − MHA": d})  # a point, no interval
    assert [l.get_gid() for l in fig.axes[0].lines].count("interval") == 0


def test_pairing_matters():
    """The lessons' mistake: setting a paired gap against the seed-to-seed spread. Here the seeds spread
    by ±0.1 while B is consistently 0.02 above A on every seed: the unpaired interval spans zero, the
    paired one does not."""
    seed_offsets = [0.00, 0.12, -0.09, 0.05, -0.14, 0.08]
    a = [2.0 + o for o in seed_offsets]
    b = [2.0 + o + 0.02 + e for o, e in zip(seed_offsets, [0.004, -0.003, 0.002, -0.004, 0.001, 0.0])]
    paired = difference(a, b, names=("A", "B"))
    assert paired.excludes_zero and paired.low > 0
    # unpaired (Welch-style, df = n − 1 to be generous): the seed-to-seed spread swamps the gap
    n = len(a)
    se = math.sqrt(statistics.variance(a) / n + statistics.variance(b) / n)
    gap = statistics.mean(b) - statistics.mean(a)
    assert gap - compare.t_critical(n - 1) * se < 0 < gap + compare.t_critical(n - 1) * se
    assert statistics.stdev(a) > 3 * gap  # a single seed's spread is bigger than the difference itself


def test_run_paired_interleaves_seeds_and_pairs_them():
    calls = []

    def arm(offset):
        def run(seed):
            calls.append((seed, offset))
            g = torch.Generator().manual_seed(seed)  # the seed drives "init" and "data order"
            return 2.0 + offset + 0.1 * torch.randn((), generator=g).item()
        return run

    runs = run_paired({"MHA": arm(0.0), "GQA": arm(0.05)}, seeds=[3, 1, 2])
    assert calls == [(3, 0.0), (3, 0.05), (1, 0.0), (1, 0.05), (2, 0.0), (2, 0.05)]
    assert runs.arms == ["MHA", "GQA"] and runs.seeds == [1, 2, 3]
    d = runs.difference("MHA", "GQA")
    assert d.per_seed == pytest.approx([0.05] * 3) and d.excludes_zero  # shared seed noise cancels
    assert list(runs.differences("MHA")) == ["GQA − MHA"]
    rows = runs.to_rows()
    assert rows[:2] == [{"seed": 1, "arm": "MHA", "value": runs.values["MHA"][1]},
                        {"seed": 1, "arm": "GQA", "value": runs.values["GQA"][1]}]
    assert PairedRuns.from_rows(json.loads(json.dumps(rows))) == runs
    table = runs.table().splitlines()
    assert table[0].split() == ["seed", "MHA", "GQA"] and len(table) == 5 and table[-1].startswith("  mean")
    tensor_runs = run_paired({"a": lambda s: torch.tensor(1.0 * s), "b": lambda s: torch.tensor(2.0 * s)},
                             [1, 2])  # a 0-d tensor (a loss) is taken as its number
    assert tensor_runs.values["b"] == {1: 2.0, 2: 4.0}


def test_from_values_accepts_lists_and_dicts():
    runs = PairedRuns.from_values({"a": [1.0, 2.0], "b": {10: 1.5, 20: 2.5}}, seeds=[10, 20])
    assert runs.difference("a", "b").per_seed == (0.5, 0.5)
    assert PairedRuns.from_values({"a": [1, 2], "b": [2, 4]}).seeds == [0, 1]


@pytest.mark.parametrize("make, error, match", [
    (lambda: PairedRuns.from_values({"a": {0: 1.0, 1: 2.0}, "b": {0: 1.0, 2: 2.0}}), ValueError,
     r"same seeds.*'b' lacks seeds \[1\].*has seeds \[2\]"),
    (lambda: PairedRuns.from_values({"a": [1.0, math.nan], "b": [1.0, 2.0]}), ValueError,
     r"arm 'a', seed 1: the result is nan"),
    (lambda: run_paired({"MHA": lambda s: 1.0, "MLA": lambda s: math.inf if s == 4 else 1.0}, range(5)),
     ValueError, r"arm 'MLA', seed 4: the result is inf"),
    (lambda: run_paired({"MHA": lambda s: "2.3"}, [0]), TypeError, r"arm 'MHA', seed 0: .*must be a number"),
    (lambda: run_paired({"MHA": 2.3}, [0]), TypeError, r"arm 'MHA' must be a function of the seed"),
    (lambda: run_paired({"MHA": float}, []), ValueError, r"at least 1 seed"),
    (lambda: run_paired({"MHA": float}, [0, 0]), ValueError, r"repeat a seed"),
    (lambda: run_paired({"MHA": float}, [0.5]), TypeError, r"seed must be an int"),
    (lambda: run_paired({}, [0]), ValueError, r"at least one arm"),
    (lambda: PairedRuns.from_values({"a": [], "b": []}), ValueError, r"at least 1 seed"),
    (lambda: PairedRuns.from_values({"a": [1.0, 2.0]}, seeds=[0]), ValueError, r"2 values but there are 1"),
    (lambda: PairedRuns.from_rows([{"arm": "a", "seed": 0, "value": 1}] * 2), ValueError,
     r"two rows for seed 0"),
    (lambda: PairedRuns.from_values({"a": [1, 2], "b": [1, 2]}, seeds=[3, 3]), ValueError, r"repeat a seed"),
    (lambda: PairedRuns({"a": {0: 1.0}, "": {0: 1.0}}), TypeError, r"non-empty strings"),
    (lambda: difference([1, 2], [1, 3], confidence=1.0), ValueError, r"confidence=1.0 must be below 1"),
    (lambda: difference([1, 2], [1, 3], confidence=0), ValueError, r"confidence=0.0 must be > 0"),
    (lambda: difference([1, 2], [1, 3], confidence=95), ValueError, r"confidence=95.0 must be <= 1"),
    (lambda: PairedRuns.from_values({"a": [1], "b": [2]}).difference("a", "c"), KeyError, r"no arm 'c'"),
    (lambda: PairedRuns.from_values({"a": [1], "b": [2]}).difference("a", "a"), ValueError, r"two different"),
    (lambda: compare.t_critical(0), ValueError, r"df=0 must be positive"),
    (lambda: plot_differences({}), ValueError, r"at least one Difference"),
])
def test_bad_inputs_give_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_forest_plot_draws_one_interval_per_comparison():
    x = simulate(3, 5, 0.1, gen_seed=2)
    diffs = {"GQA − MHA": difference(x[0, 0].tolist(), x[0, 1].tolist(), names=("MHA", "GQA")),
             "MLA − MHA": difference(x[1, 0].tolist(), x[1, 1].tolist(), names=("MHA", "MLA")),
             "noise": difference(x[2, 0].tolist(), x[2, 0].flip(0).tolist(), names=("MHA", "other"))}
    fig = plot_differences(diffs, colors={"noise": "baseline"})
    ax = fig.axes[0]
    intervals = [l for l in ax.lines if l.get_gid() == "interval"]
    assert len(intervals) == 3
    assert [l.get_color() for l in intervals] == [PALETTE["baseline"], PALETTE["MLA"], PALETTE["GQA"]]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["noise", "MLA − MHA", "GQA − MHA"]
    assert any(tuple(l.get_xdata()) == (0.0, 0.0) for l in ax.lines)  # the zero line
    runs = PairedRuns.from_values({"MHA": x[0, 0].tolist(), "GQA": x[0, 1].tolist()})
    fig2 = plot_paired(runs, "MHA", "GQA")
    assert len(fig2.axes[0].lines) == 5  # one line per seed
    import matplotlib.pyplot as plt

    plt.close("all")


def test_difference_curve_places_each_interval_at_its_x_and_fills_only_clear_ones():
    import matplotlib.pyplot as plt

    clear = difference([1.0, 1.1, 0.9, 1.0], [1.5, 1.62, 1.41, 1.5], names=("MHA", "MQA"))
    noise = difference([1.0, 1.1, 0.9, 1.0], [1.05, 1.0, 0.95, 1.02], names=("MHA", "GQA"))
    fig = plot_difference_curve({"MQA − MHA": 32, "GQA − MHA": 64}, {"MQA − MHA": clear, "GQA − MHA": noise},
                                xlabel="cache numbers per token")
    ax = fig.axes[0]
    intervals = {tuple(l.get_xdata())[0]: l.get_ydata() for l in ax.lines if l.get_gid() == "interval"}
    assert set(intervals) == {32, 64}
    assert tuple(intervals[32]) == pytest.approx((clear.low, clear.high))
    means = {tuple(l.get_xdata())[0]: l.get_markerfacecolor() for l in ax.lines if l.get_gid() == "mean"}
    assert means[64] == "white" and means[32] != "white"  # hollow where the interval covers zero
    with pytest.raises(ValueError, match="missing"):
        plot_difference_curve({"MQA − MHA": 32}, {"MQA − MHA": clear, "GQA − MHA": noise}, xlabel="x")
    plt.close("all")


# --- ratios: effects that multiply -----------------------------------------------------------------
def test_ratio_is_the_geometric_mean_with_a_log_t_interval():
    a = [0.2, 0.5, 0.1, 0.4, 0.3]
    factors = [2.6, 1.1, 4.0, 1.3, 1.9]
    b = [x * f for x, f in zip(a, factors)]
    r = compare.ratio(a, b, names=("dense", "k=2"))
    logs = [math.log(f) for f in factors]
    m, sd = statistics.mean(logs), statistics.stdev(logs)
    h = compare.t_critical(4) * sd / math.sqrt(5)
    assert r.factor == pytest.approx(math.exp(m))
    assert (r.low, r.high) == pytest.approx((math.exp(m - h), math.exp(m + h)))
    assert r.per_seed == pytest.approx(tuple(factors))
    assert r.low < r.factor < r.high and r.high - r.factor > r.factor - r.low  # not symmetric
    assert r.excludes_one and "k=2 is worse than dense" in r.verdict("copy loss")
    assert "x dense's" in r.verdict("copy loss") and "geometric mean over 5 paired seeds" in r.verdict()
    assert str(r).startswith("k=2 / dense: ")


def test_multiplicative_effects_read_right_only_on_the_log_scale():
    """Lesson 07's trap: the biggest multiplicative effect has the widest additive interval, so it comes
    out 'no detectable difference' while a smaller one is 'worse'. On the log scale both are worse."""
    base = [0.05, 0.4, 0.1, 0.2, 0.08, 0.3]
    big = [x * f for x, f in zip(base, [1.4, 9.0, 2.0, 1.5, 3.0, 1.3])]  # multiplies, very unevenly
    small = [x * f for x, f in zip(base, [1.05, 1.08, 1.04, 1.06, 1.07, 1.05])]
    assert not difference(base, big).excludes_zero and difference(base, small).excludes_zero
    assert compare.ratio(base, big).excludes_one and compare.ratio(base, small).excludes_one
    noise = compare.ratio(base, [x * f for x, f in zip(base, [1.1, 0.9, 1.05, 0.95, 1.02, 0.98])])
    assert not noise.excludes_one and noise.verdict().startswith("no detectable difference")


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_ratio_refuses_values_that_are_not_positive(bad):
    with pytest.raises(ValueError, match=r"arm 'b', seed 1: a ratio needs positive values"):
        compare.ratio([1.0, 2.0, 3.0], [1.0, bad, 3.0])


def test_ratio_curve_and_forest_use_a_log_axis_with_a_line_at_one():
    import matplotlib.pyplot as plt

    clear = compare.ratio([1.0, 2.0, 0.5, 1.0], [1.5, 3.1, 0.74, 1.52], names=("dense", "k=2"))
    noise = compare.ratio([1.0, 2.0, 0.5, 1.0], [1.05, 1.9, 0.52, 0.98], names=("dense", "k=8"))
    fig = plot_difference_curve({"a": 2, "b": 8}, {"a": clear, "b": noise}, xlabel="k", metric="copy loss")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and "÷ baseline" in ax.get_ylabel()
    assert any(tuple(l.get_ydata()) == (1.0, 1.0) for l in ax.lines)  # the no-effect line
    intervals = {tuple(l.get_xdata())[0]: tuple(l.get_ydata()) for l in ax.lines if l.get_gid() == "interval"}
    assert intervals[2] == pytest.approx((clear.low, clear.high))
    means = {tuple(l.get_xdata())[0]: l.get_markerfacecolor() for l in ax.lines if l.get_gid() == "mean"}
    assert means[8] == "white" and means[2] != "white"
    ax2 = plot_differences({"a": clear, "b": noise}).axes[0]
    assert ax2.get_xscale() == "log"
    with pytest.raises(ValueError, match="not both"):
        plot_differences({"a": clear, "d": difference([1, 2], [2, 3])})
    plt.close("all")


# --- pairing, and seeds that differ ------------------------------------------------------------------
def test_pairing_reports_correlation_and_both_sds():
    a = [2.0, 2.3, 1.8, 2.1, 2.4]
    b = [x + 0.05 + e for x, e in zip(a, [0.01, -0.01, 0.0, 0.02, -0.02])]  # shares every seed's luck
    p = PairedRuns.from_values({"A": a, "B": b}).pairing("A", "B")
    assert p.correlation > 0.95
    assert p.paired_sd == pytest.approx(statistics.stdev([y - x for x, y in zip(a, b)]))
    assert p.unpaired_sd == pytest.approx(math.hypot(statistics.stdev(a), statistics.stdev(b)))
    assert p.paired_sd < p.unpaired_sd / 5
    unrelated = PairedRuns.from_values({"A": a, "B": [2.1, 1.8, 2.4, 2.3, 2.0]}).pairing("A", "B")
    assert unrelated.correlation < 0.5 and unrelated.paired_sd > unrelated.unpaired_sd / 2
    assert "per-seed correlation" in str(p)
    with pytest.raises(ValueError, match="at least 3 seeds"):
        PairedRuns.from_values({"A": [1, 2], "B": [1, 2]}).pairing("A", "B")


def test_a_sweep_with_unequal_seed_counts_says_so_in_every_verdict(tmp_path):
    from helpers.experiments import Sweep

    records = [{"arm": arm, "seed": s, "metric": "val_loss",
                "value": 2.0 + 0.01 * s + (0.1 if arm == "B" else 0)}
               for arm, seeds in (("A", range(10)), ("B", range(10)), ("C", range(5))) for s in seeds]
    sweep = Sweep("t", {}, records, {}, {})
    runs = sweep.runs("val_loss")
    assert runs.left_out == {"A": (5, 6, 7, 8, 9), "B": (5, 6, 7, 8, 9)}
    d = runs.difference("A", "B")
    assert d.n == 5 and "UNEQUAL SEEDS" in d.verdict() and "A's seeds 5, 6, 7, 8, 9" in d.verdict()
    assert "UNEQUAL SEEDS" in str(d) and "UNEQUAL SEEDS" in runs.ratio("A", "B").verdict()
    # the two arms alone: all ten seeds, nothing to say
    both = sweep.runs("val_loss", ["A", "B"])
    assert both.left_out == {} and both.difference("A", "B").n == 10
    assert "UNEQUAL" not in both.difference("A", "B").verdict()
    # built by hand, arms with different seeds are refused outright
    with pytest.raises(ValueError, match="must share the same seeds"):
        PairedRuns({"A": {0: 1.0, 1: 2.0}, "B": {0: 1.0}})
    with pytest.raises(ValueError, match="not in the runs"):
        PairedRuns({"A": {0: 1.0}}, {"Z": (1,)})


def test_sentences_name_what_was_paired():
    runs = PairedRuns.from_values({"exact": [1.0, 1.1, 0.9], "int4": [1.01, 1.12, 0.91]})
    assert "paired seeds" in runs.difference("exact", "int4").verdict()
    batches = PairedRuns(runs.values, paired_by="validation batches")
    d = batches.difference("exact", "int4")
    assert "3 paired validation batches" in d.verdict() and "3 paired validation batches" in str(d)
    assert "paired validation batches" in batches.ratio("exact", "int4").verdict()
    assert "seeds" not in str(d)
