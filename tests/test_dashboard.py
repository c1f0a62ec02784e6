"""helpers.viz.dashboard: lesson 06's live loss curves above the routing histogram, and its static twin."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from test_widgets import assert_legends_outside

from helpers.config import ModelConfig
from helpers.model import Transformer
from helpers.training import History
from helpers.viz.dashboard import Dashboard, plot_training_summary
from helpers.viz.style import PALETTE


def tiny_moe_mtp(**changes):
    cfg = ModelConfig(dim=32, n_layers=2, n_heads=4, inter_dim=64, max_seq_len=32, n_routed_experts=4,
                      n_activated_experts=2, moe_inter_dim=16, mtp_depth=1)
    return Transformer(cfg.replace(**changes))


def record(dash, model, steps=4):
    idx = torch.randint(0, 256, (2, 17))
    model.train()
    for step in range(steps):
        dash(step, model.run(idx[:, :-1], idx[:, 1:]))
        model.after_optimizer_step()
    dash.finish()


def test_dashboard_draws_both_losses_and_the_routing_live():
    cfg = ModelConfig(dim=32, n_layers=2, n_heads=4, inter_dim=64, max_seq_len=32, n_routed_experts=4,
                      n_activated_experts=2, moe_inter_dim=16, mtp_depth=1)
    model = Transformer(cfg)
    dash = Dashboard(model, every=2, max_rate=1e6, live=True, label="test")
    if dash.figure is None or dash.routing.figure is None:
        pytest.skip("plotly FigureWidget unavailable")
    idx = torch.randint(0, 256, (2, 17))
    for step in range(3):
        dash(step, model.run(idx[:, :-1], idx[:, 1:]))
    dash.finish()
    main, mtp = dash.figure.data
    assert dash.figure.layout.title.text == f"{Dashboard.TITLE} test"
    assert list(main.x) == [0, 1, 2] and list(main.y) == pytest.approx(dash.losses.main)
    assert list(mtp.y) == pytest.approx(dash.losses.mtp) and mtp.line.color == PALETTE["MTP"]
    assert dash.routing.redraws >= 2


def test_records_offline_and_draws_the_static_summary():
    model = tiny_moe_mtp()
    dash = Dashboard(model, every=2, live=False)
    idx = torch.randint(0, 256, (2, 17))
    for step in range(4):
        dash(step, model.run(idx[:, :-1], idx[:, 1:]))
    dash.finish()
    assert dash.figure is None and dash.losses.step == [0, 1, 2, 3]
    assert all(v == v for v in dash.losses.mtp)  # an MTP model records its MTP loss (no NaN)
    fig = plot_training_summary(dash, title="summary")
    assert len(fig.axes) >= 2


def test_routing_watches_the_main_model_only():
    model = tiny_moe_mtp(n_layers=3, n_dense_layers=1)
    dash = Dashboard(model, live=False)
    assert dash.routing.layers == [model.layers[1].ffn, model.layers[2].ffn]  # not the MTP block's MoE
    record(dash, model, 3)
    assert dash.routing.history.counts_array().shape == (3, 2, 4)
    assert dash.routing.history.bias_array().shape == (3, 2, 4)


def test_static_summary_panels_and_legend_placement():
    model = tiny_moe_mtp(n_layers=3, n_dense_layers=1, balance="loss_free", bias_update_speed=0.1)
    dash = Dashboard(model, live=False)
    record(dash, model, 6)
    hist = History(val_step=[2, 5], val_loss=[5.0, 4.5])
    fig = plot_training_summary(dash, hist, last=4, title="summary")
    titles = [ax.get_title() for ax in fig.axes]
    assert "losses" in titles and "routing: share of each layer's routed tokens, last 4 steps" in titles
    assert titles.count("MoE layer 0 (block 1)") == titles.count("MoE layer 1 (block 2)") == 1
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "% of routed tokens (white: uniform 25 %)" in labels  # the routing colour bar
    assert any(label.startswith("selection bias b_i") for label in labels)  # the bias colour bar
    share = fig.axes[titles.index("routing: share of each layer's routed tokens, last 4 steps")]
    torch.testing.assert_close(torch.tensor(share.images[0].get_array()),
                               dash.routing.history.recent_share(4).float())
    bias = fig.axes[titles.index("MoE layer 1 (block 2)")]
    assert bias.images[0].get_array().shape == (4, 6)  # expert × step
    loss = fig.axes[titles.index("losses")]
    assert [line.get_label() for line in loss.lines] == ["next-token\n(train batch)",
                                                         "MTP depth 1: token\nafter next (train batch)",
                                                         "next-token\n(validation)"]
    assert_legends_outside(fig)


def test_static_summary_of_a_dense_model():
    model = Transformer(ModelConfig(dim=32, n_layers=2, n_heads=4, inter_dim=64, max_seq_len=32))
    dash = Dashboard(model, live=False)
    assert dash.routing is None
    record(dash, model, 3)
    fig = plot_training_summary(dash)
    assert [ax.get_title() for ax in fig.axes] == ["losses"]
    assert len(fig.axes[0].lines) == 1  # no MTP, no validation
    assert_legends_outside(fig)
