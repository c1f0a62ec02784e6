"""Lesson 07's pictures (``helpers.viz.dsa``), drawn headless: each draws what it was given and returns what
a test can check (the axes, or the mass the selection holds)."""

import types

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from helpers import preset
from helpers.dsa import decode_attention_cost
from helpers.viz.dsa import plot_decode_speed, plot_dsa_stages, plot_selection
from helpers.viz.live import LiveLoss
from helpers.viz.style import PALETTE

CFG = preset("test", attn_type="mla", q_lora_rank=24, index_n_heads=4, index_head_dim=16, index_topk=4)


@pytest.fixture(autouse=True)
def _close():
    torch.manual_seed(0)
    yield
    plt.close("all")


def test_stages_shade_the_warm_up_and_draw_every_seed():
    recipe = dict(pretrain_steps=10, warmup_steps=5, recall_k=4)
    live = LiveLoss(live=False)
    live.add_curve("1 · dense pre-training", color=PALETTE["MLA"])
    live.log(0, {"1 · dense pre-training": 2.0})
    live.log(9, {"1 · dense pre-training": 1.5})
    curves = {s: {"warmup": {"step": [0, 4], "recall_mass": [0.2 + s / 10, 0.8]}} for s in range(3)}
    sweep = types.SimpleNamespace(seeds=[0, 1, 2], curves=curves)
    ax1, ax2 = plot_dsa_stages(live, sweep, recipe)
    span = [p for p in ax1.patches if p.get_x() == 10]
    assert len(span) == 1 and span[0].get_width() == 5  # the warm-up, steps 10 to 15
    assert len(ax2.lines) == 3 and [ln.get_ydata()[0] for ln in ax2.lines] == pytest.approx([0.2, 0.3, 0.4])
    assert ax2.lines[0].get_linewidth() > ax2.lines[1].get_linewidth()  # seed 0 (the live run) bold
    assert "top-4" in ax2.get_ylabel()
    assert [t.get_text() for t in ax2.get_legend().get_texts()] == ["seed 0 (this run)", "seeds 1-2"]


def test_decode_speed_plots_the_measured_rows_and_the_flop_model():
    rows = [types.SimpleNamespace(context=s, dense_ms=s / 100, sparse_ms=1.0) for s in (256, 1024, 4096)]
    grid = [64, 256, 1024]
    ax1, ax2 = plot_decode_speed(rows, CFG, 4, 512, grid=grid)
    dense, sparse = ax1.lines
    assert list(dense.get_xdata()) == [256, 1024, 4096] and list(dense.get_ydata()) == [2.56, 10.24, 40.96]
    assert list(sparse.get_ydata()) == [1.0] * 3 and "k = 4" in sparse.get_label()
    model_dense, model_sparse, indexer, crossover = ax2.lines
    assert list(model_dense.get_ydata()) == [decode_attention_cost(CFG, s).macs / 1e6 for s in grid]
    assert list(model_sparse.get_ydata()) == [decode_attention_cost(CFG, s, 4).macs / 1e6 for s in grid]
    # the indexer's share: the sparse step less reading k positions densely, growing with S
    share = indexer.get_ydata()
    assert share[0] > 0
    assert share[2] == pytest.approx(4 * share[1]) and share[1] == pytest.approx(4 * share[0])
    assert list(crossover.get_xdata()) == [512, 512] and "512" in crossover.get_label()


def test_selection_draws_four_panels_and_returns_the_mass_the_top_k_holds():
    T = 12
    scores = torch.randn(T, T).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    attention = torch.rand(T, T).tril()
    attention = attention / attention.sum(-1, keepdim=True)  # each query's weights sum to 1
    t, k = 9, 3
    caught = plot_selection(attention, scores, layer=1, k=k, t=t)
    top3 = scores[t].topk(k).indices
    assert caught == pytest.approx(attention[t, top3].sum().item())
    assert 0 < caught < 1
    fig = plt.gcf()
    assert len(fig.axes) == 4
    bottom = fig.axes[3]
    assert f"query t = {t}" in bottom.get_title() and f"{caught:.0%}" in bottom.get_title()
    reads = [ln for ln in bottom.lines if ln.get_label() == f"the top-{k} it reads"][0]
    assert sorted(reads.get_xdata().tolist()) == sorted(top3.tolist())
    assert plot_selection(attention, scores, layer=1, k=T, t=t) == pytest.approx(1.0)  # all read: all mass
