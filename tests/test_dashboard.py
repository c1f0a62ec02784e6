"""helpers.dashboard: lesson 06's live loss curves above the routing histogram, and its static twin."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from helpers.config import ModelConfig
from helpers.dashboard import Dashboard, plot_training_summary
from helpers.model import Transformer
from helpers.style import PALETTE


def tiny_moe_mtp():
    cfg = ModelConfig(dim=32, n_layers=2, n_heads=4, inter_dim=64, max_seq_len=32, n_routed_experts=4,
                      n_activated_experts=2, moe_inter_dim=16, mtp_depth=1)
    return Transformer(cfg)


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
