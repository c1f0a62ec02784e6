"""The routing monitor records every step, redraws throttled, degrades without a kernel, and its static
figure shows the same state."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from helpers.config import ModelConfig
from helpers.model import ModelOutput, Transformer
from helpers.moe import moe_layers
from helpers.viz.widgets import (
    RoutingMonitor,
    in_live_kernel,
    main_moe_layers,
    moving_average,
    plot_bias,
    plot_load_over_time,
    plot_routing,
)


def tiny_moe(**changes):
    sizes = dict(dim=32, n_layers=2, n_heads=4, inter_dim=64, max_seq_len=32, n_routed_experts=4,
                 n_activated_experts=2, moe_inter_dim=16)
    cfg = ModelConfig(**{**sizes, **changes})
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


def moe_mtp_model():
    """A dense first block, two MoE blocks, and an MTP module whose block is MoE too."""
    return tiny_moe(n_layers=3, n_dense_layers=1, mtp_depth=1, balance="loss_free", bias_update_speed=0.1)


def test_monitor_leaves_out_the_mtp_block():
    model = moe_mtp_model()
    main = [model.layers[1].ffn, model.layers[2].ffn]
    assert len(moe_layers(model)) == 3  # the MTP block's MoE is a module of the model too
    mon = RoutingMonitor(model, live=False)
    assert mon.layers == main and mon.history.layer_names == ["layers.1.ffn", "layers.2.ffn"]
    labels = ["MoE layer 0 (block 1)", "MoE layer 1 (block 2)"]
    assert [mon.history.layer_label(i) for i in range(2)] == labels
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    idx = torch.randint(0, 256, (2, 17))
    model.train()
    for step in range(3):  # what helpers.train does around its callback
        out = model.run(idx[:, :-1], idx[:, 1:])
        assert len(out.moe) == 2 and len(out.mtp.moe) == 1
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        model.after_optimizer_step()
        mon(step, out)
        torch.testing.assert_close(mon.history.counts[-1], torch.stack([r.counts for r in out.moe]))
        torch.testing.assert_close(mon.history.bias[-1], torch.stack([m.gate.bias for m in main]))
    h = mon.history
    assert h.counts_array().shape == (3, 2, 4) and h.bias_array().shape == (3, 2, 4)  # one row per main layer
    assert h.max_vio.shape == (3, 2)
    # an output that also lists the MTP block's result (after the main ones): only the main ones count
    mon(3, ModelOutput(logits=out.logits, moe=out.moe + out.mtp.moe))
    torch.testing.assert_close(h.counts[-1], torch.stack([r.counts for r in out.moe]))
    with pytest.raises(ValueError, match="1 MoE result"):
        mon(4, ModelOutput(logits=out.logits, moe=out.moe[:1]))


def test_monitor_takes_model_layers_or_a_list():
    model = moe_mtp_model()
    main = [model.layers[1].ffn, model.layers[2].ffn]
    assert RoutingMonitor(model.layers, live=False).layers == main
    assert RoutingMonitor(list(model.layers), live=False).layers == main
    assert RoutingMonitor(main, live=False).history.layer_label(1) == "MoE layer 1"
    assert [name for name, _ in main_moe_layers(model.layers)] == ["1.ffn", "2.ffn"]
    assert RoutingMonitor(model.layers, live=False).history.layer_label(0) == "MoE layer 0 (block 1)"
    assert len(main_moe_layers(model.mtp)) == 1  # the MTP module alone: its own MoE
    with pytest.raises(TypeError, match="got str"):
        main_moe_layers("model")
    with pytest.raises(TypeError, match="list of int"):
        main_moe_layers([1, 2])


def test_bias_plots_of_every_kind():
    model = moe_mtp_model()
    mon = RoutingMonitor(model, live=False)
    idx = torch.randint(0, 256, (2, 16))
    model.train()
    for step in range(5):
        mon(step, model.run(idx))
        model.after_optimizer_step()
    lines = plot_bias(mon.history)
    assert [ax.get_title() for ax in lines.axes] == ["MoE layer 0 (block 1)", "MoE layer 1 (block 2)"]
    assert all(len(ax.lines) == 4 + 1 for ax in lines.axes)  # one per expert and the zero line
    band = plot_bias(mon.history, kind="band")
    assert all(len(ax.collections) == 1 and len(ax.lines) == 2 for ax in band.axes)  # band, mean, zero
    for fig in (lines, band):
        assert_legends_outside(fig)
    heat = plot_bias(mon.history, kind="heatmap")
    assert len(heat.axes) == 3 and heat.axes[-1].get_ylabel() == "selection bias b_i"  # + the colour bar
    assert heat.axes[0].images[0].get_array().shape == (4, 5)  # expert × step
    with pytest.raises(ValueError, match="kind"):
        plot_bias(mon.history, kind="spaghetti")


def assert_legends_outside(fig):
    """Every legend lies clear of every axes' data area and of its tick labels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + fig.legends
    assert legends
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            for other in (ax.get_window_extent(renderer), ax.xaxis.get_tightbbox(renderer),
                          ax.yaxis.get_tightbbox(renderer)):
                assert other is None or not box.overlaps(other), (legend, ax.get_title())


def test_needs_moe_layers():
    with pytest.raises(ValueError, match="MoE layers"):
        RoutingMonitor(Transformer(ModelConfig()))


def test_moving_average():
    v = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 6.0]])
    expected = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 2.0], [5.0, 4.0]], dtype=torch.float64)
    torch.testing.assert_close(moving_average(v, 3), expected)
    assert moving_average(v, 1) is v


def test_router_plane_colours_each_input_by_its_top_1_expert_and_counts_the_borders():
    """Lesson 04's 2-D router picture (``helpers.viz.routing.plot_router_plane``): the region image is the
    router's choice at every grid point, the scatter around the circle follows the expert chosen there."""
    import matplotlib.pyplot as plt

    from helpers.moe import MoE
    from helpers.viz.routing import plot_router_plane

    torch.manual_seed(0)
    moe = MoE(ModelConfig(dim=2, n_heads=1, n_routed_experts=4, n_activated_experts=1, moe_inter_dim=8,
                          norm_topk_prob=False))
    with torch.no_grad():  # four gate vectors on the axes: expert e owns the quadrant around direction e
        moe.gate.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    fig, axes = plt.subplots(1, 2)
    drawn = plot_router_plane(moe, extent=2, radius=1, n_grid=9, n_circle=64, axes=axes)
    assert drawn.region.shape == (9, 9) and drawn.owners == 4
    assert drawn.region[4, 8] == 0 and drawn.region[8, 4] == 1 and drawn.region[4, 0] == 2  # x₁ > 0: expert 0
    assert drawn.jumps == 4  # the circle crosses the four borders once each
    image = axes[0].images[0].get_array()
    assert torch.equal(torch.as_tensor(image.data), drawn.region)
    assert len(axes[1].collections) == 4 and sum(len(c.get_offsets()) for c in axes[1].collections) == 64
    assert [t.get_text() for t in axes[0].texts] == ["0", "1", "2", "3"]
    plt.close(fig)
    with pytest.raises(ValueError, match="dim=32"):
        plot_router_plane(MoE(ModelConfig(dim=32, n_heads=4, n_routed_experts=4, n_activated_experts=1)))
