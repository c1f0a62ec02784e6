"""helpers.viz.live: one throttle, kernel detection, and the live loss curves with their static twin."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from helpers.config import ModelConfig
from helpers.model import Transformer
from helpers.viz import live as live_mod
from helpers.viz import widgets
from helpers.viz.dashboard import Dashboard
from helpers.viz.live import LiveLoss, Throttle
from helpers.viz.style import PALETTE


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def out(loss):
    return SimpleNamespace(main_loss=torch.tensor(loss))


def history(steps, val_every):
    train = [3.0 - 0.01 * s for s in range(steps)]
    val_step = list(range(val_every - 1, steps, val_every))
    return SimpleNamespace(step=list(range(steps)), train_loss=train, val_step=val_step,
                           val_loss=[train[s] + 0.1 for s in val_step])


def test_throttle_every_n_steps_and_at_most_r_per_second():
    clock = FakeClock()
    t = Throttle(every=5, max_rate=2.0, clock=clock)  # at most one draw per 0.5 s
    assert t.due(0) and not t.due(3)
    t.mark()
    assert not t.due(5)  # no time has passed
    clock.now = 100.49
    assert not t.due(5)
    clock.now = 100.5
    assert t.due(5) and not t.due(6)
    t.mark()
    clock.now += 10
    assert [s for s in range(30) if t.due(s)] == [0, 5, 10, 15, 20, 25]
    assert t.draws == 2 and t.last == 100.5


@pytest.mark.parametrize("every,max_rate", [(0, 1.0), (-1, 1.0), (1, 0.0), (1, -2.0)])
def test_throttle_rejects_non_positive_settings(every, max_rate):
    with pytest.raises(ValueError, match="must be positive"):
        Throttle(every, max_rate)


def test_one_throttle_serves_every_widget():
    cfg = ModelConfig(dim=32, n_layers=2, n_heads=4, inter_dim=64, max_seq_len=32, n_routed_experts=4,
                      n_activated_experts=2, moe_inter_dim=16)
    model = Transformer(cfg)
    assert isinstance(widgets.RoutingMonitor(model, live=False).throttle, Throttle)
    dash = Dashboard(model, live=False)
    assert isinstance(dash.curves, LiveLoss) and dash.figure is None
    assert dash.curves.curves[Dashboard.MAIN].color == PALETTE["main"]
    # the old homes still answer
    assert widgets.in_live_kernel is live_mod.in_live_kernel and widgets.show_widget is live_mod.show_widget


def test_records_without_a_kernel_and_draws_the_static_twin():
    assert not live_mod.in_live_kernel()
    live = LiveLoss()
    assert live.widget is None
    live.show()  # nothing to show, no error
    h = history(6, 3)
    cb = live.run("MHA", color=PALETTE["MHA"])
    for s in h.step:
        cb(s, out(h.train_loss[s]), None)
    live.finish(h)
    live.add("MQA", h, color=PALETTE["MQA"], dash="dot")
    cb = live.run("GQA")  # no colour: the next categorical one
    cb(0, out(2.5))
    live.finish()
    mha = live.curves["MHA"]
    assert mha.step == list(range(6)) and mha.loss == pytest.approx(h.train_loss)
    assert mha.val_step == [3, 6] and mha.val_loss == h.val_loss  # evaluated after steps 2 and 5
    assert live.curves["MQA"].loss == h.train_loss and live.curves["GQA"].val_loss == []
    assert live.current == "GQA" and live.curves["GQA"].color.startswith("#")
    fig = live.figure()
    lines = fig.axes[0].lines
    assert len(lines) == 2 + 2 + 1  # MHA and MQA: train and validation; GQA: train only
    assert lines[0].get_color() == PALETTE["MHA"] and lines[2].get_linestyle() == ":"
    assert list(lines[1].get_xdata()) == [3, 6]
    assert fig.axes[0].get_ylabel() == "train loss (nats/byte)"
    with pytest.raises(ValueError, match="exists already"):
        live.run("MHA")


def test_live_figure_follows_the_runs():
    live = LiveLoss(live=True, every=2, max_rate=1e6)
    if live.widget is None:
        pytest.skip("plotly FigureWidget unavailable")
    h = history(5, 5)
    cb = live.run("MLA Dc=32", color=PALETTE["MLA"], dash="dot")
    for s in range(3):
        cb(s, out(h.train_loss[s]))
    train = live.widget.data[0]
    assert train.name == "MLA Dc=32" and train.line.color == PALETTE["MLA"] and train.line.dash == "dot"
    assert list(train.x) == [0, 1]  # drawn after two steps, the third waits for the next
    for s in range(3, 5):
        cb(s, out(h.train_loss[s]))
    live.finish(h)
    assert list(train.x) == [0, 1, 2, 3, 4] and list(train.y) == pytest.approx(h.train_loss)
    val = live.widget.data[1]
    assert list(val.x) == [5] and list(val.y) == h.val_loss and val.marker.color == PALETTE["MLA"]
    assert live.widget.layout.title.text == LiveLoss.TITLE


def test_live_throttle_limits_redraws():
    live = LiveLoss(live=True, every=1, max_rate=1e-3)
    if live.widget is None:
        pytest.skip("plotly FigureWidget unavailable")
    cb = live.run("a")
    for s in range(6):
        cb(s, out(1.0))
    assert live.throttle.draws == 1 and len(live.widget.data[0].x) == 1
    live.finish()  # the final state is always drawn
    assert live.throttle.draws == 2 and len(live.widget.data[0].x) == 6
