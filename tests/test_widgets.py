"""The routing monitor records every step, redraws throttled, degrades without a kernel, and its static
figure shows the same state."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from helpers.config import ModelConfig
from helpers.model import Transformer
from helpers.widgets import (
    RoutingMonitor,
    in_live_kernel,
    moving_average,
    plot_bias,
    plot_load_over_time,
    plot_routing,
)


def tiny_moe(**changes):
    cfg = ModelConfig(dim=32, n_layers=2, n_heads=4, inter_dim=64, max_seq_len=32, n_routed_experts=4,
                      n_activated_experts=2, moe_inter_dim=16, **changes)
    return Transformer(cfg)


def feed(monitor, model, steps):
    idx = torch.randint(0, 256, (2, 16))
    for step in range(steps):
        monitor(step, model.run(idx))


def test_records_without_a_kernel():
    assert not in_live_kernel()
    model = tiny_moe()
    mon = RoutingMonitor(model, every=3)
    assert mon.figure is None  # nothing to draw into, and no error
    feed(mon, model, 5)
    mon.finish()
    mon.show()
    h = mon.history
    assert h.step == list(range(5)) and h.counts_array().shape == (5, 2, 4)
    assert (h.counts_array().sum(-1) == 2 * 16 * 2).all()  # N·K assignments per layer per step
    assert h.max_vio.shape == (5, 2) and h.entropy.shape == (5, 2)
    assert h.bias_array().shape == (5, 2, 4)


def test_live_figure_bars_show_the_recent_share():
    model = tiny_moe()
    mon = RoutingMonitor(model, every=2, live=True, max_rate=1e6)
    if mon.figure is None:
        pytest.skip("plotly FigureWidget unavailable")
    feed(mon, model, 5)
    mon.finish()
    fig = mon.figure
    assert fig.layout.title.text == RoutingMonitor.TITLE
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == ["layer 0", "layer 1"]  # one trace per layer, first
    expected = mon.history.recent_share(2)
    for i, t in enumerate(bars):
        assert len(t.y) == 4
        torch.testing.assert_close(torch.tensor(t.y, dtype=torch.float64), expected[i])
    lines = [t for t in fig.data if t.type == "scatter"]
    assert len(lines) == 4 and all(list(t.x) == list(range(5)) for t in lines)


def test_redraws_are_throttled():
    model = tiny_moe()
    mon = RoutingMonitor(model, every=1, live=True, max_rate=1e-3)  # at most one redraw per 1000 s
    if mon.figure is None:
        pytest.skip("plotly FigureWidget unavailable")
    feed(mon, model, 6)
    assert mon.redraws == 1
    mon.finish()  # the final state is always drawn
    assert mon.redraws == 2


def test_static_figures():
    model = tiny_moe(balance="loss_free", bias_update_speed=0.1)
    mon = RoutingMonitor(model, live=False)
    idx = torch.randint(0, 256, (2, 16))
    model.train()
    for step in range(4):
        mon(step, model.run(idx))
        model.after_optimizer_step()
    fig = plot_routing(mon.history, last=3)
    bar_axes = [ax for ax in fig.axes if ax.patches]
    assert len(bar_axes) == 2 and all(len(ax.patches) == 4 for ax in bar_axes)
    heights = torch.tensor([p.get_height() for p in bar_axes[0].patches], dtype=torch.float64)
    torch.testing.assert_close(heights, mon.history.recent_share(3)[0])
    assert mon.history.bias_array().abs().sum() > 0
    assert len(plot_bias(mon.history).axes) == 2
    ax = plot_load_over_time(mon.history.counts_array()[:, 0])
    assert ax.get_ylim() == (0, 100)
    with pytest.raises(ValueError, match="at least one recorded step"):
        plot_routing(RoutingMonitor(model, live=False).history)


def test_needs_moe_layers():
    with pytest.raises(ValueError, match="MoE layers"):
        RoutingMonitor(Transformer(ModelConfig()))


def test_moving_average():
    v = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 6.0]])
    expected = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 2.0], [5.0, 4.0]], dtype=torch.float64)
    torch.testing.assert_close(moving_average(v, 3), expected)
    assert moving_average(v, 1) is v
