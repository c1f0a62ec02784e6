"""Lesson 06's training dashboard: live loss curves above lesson 04's routing histogram, and its
static twin ``plot_training_summary``.

Shape letters (``docs/GLOSSARY.md``): Lm MoE layers of the main model, E routed experts, St recorded
steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .live import LiveLoss, in_live_kernel
from .routing import draw_bias_heatmap, draw_share_heatmap, legend_outside
from .style import PALETTE
from .widgets import RoutingMonitor


# --- the training dashboard ---------------------------------------------------------------------------
@dataclass
class LossHistory:
    """Per-step losses of a training run (``ModelOutput``'s terms)."""

    step: list[int] = field(default_factory=list)
    main: list[float] = field(default_factory=list)  # next-token cross-entropy
    mtp: list[float] = field(default_factory=list)  # MTP depth-1 loss L_1, unweighted (NaN without MTP)
    balance: list[float] = field(default_factory=list)  # the MoE layers' balance losses, summed


class Dashboard:
    """A ``helpers.train`` callback: the loss curves (``helpers.viz.live.LiveLoss``, a plotly
    ``FigureWidget``) above lesson 04's live routing histogram (``helpers.viz.widgets.RoutingMonitor``) for
    the main model's MoE layers.

    Both redraw every ``every`` steps, at most ``max_rate`` times a second (``helpers.viz.live.Throttle``),
    one batched message each. Outside a live kernel it only records (``live=False`` forces that);
    ``plot_training_summary`` draws the static figure from what it recorded."""

    TITLE = "Training: next-token and MTP loss"
    MAIN, MTP = "next-token loss", "MTP depth-1 loss (token after next)"

    def __init__(self, model, *, every: int = 10, max_rate: float = 5.0, live: bool | None = None,
                 label: str = ""):
        live = in_live_kernel() if live is None else live
        self.losses = LossHistory()
        self.every, self.max_rate = every, max_rate
        self.curves = LiveLoss(f"{self.TITLE} {label}".strip(), ylabel="cross-entropy (nats per byte)",
                               every=every, max_rate=max_rate, live=live, height=300, width=None,
                               template="plotly_white", margin=dict(t=50, b=40),
                               legend=dict(orientation="h", y=-0.3))
        self.curves.add_curve(self.MAIN, PALETTE["main"])
        self.curves.add_curve(self.MTP, PALETTE["MTP"])
        # the main model's MoE layers only (RoutingMonitor leaves out the MTP block's, as out.moe does)
        self.routing = (RoutingMonitor(model, every=every, max_rate=max_rate, live=live, label=label)
                        if model.config.is_moe else None)

    @property
    def figure(self):
        """The live loss figure (``None`` outside a live kernel)."""
        return self.curves.widget

    def __call__(self, step: int, out, batch=None) -> None:
        self.losses.step.append(step)
        self.losses.main.append(out.main_loss.item())
        self.losses.mtp.append(float("nan") if out.mtp is None else out.mtp.depth_losses[0].item())
        self.losses.balance.append(0.0 if out.aux_loss is None else out.aux_loss.item())
        if self.routing is not None:
            self.routing(step, out, batch)
        self.curves.log(step, {self.MAIN: self.losses.main[-1], self.MTP: self.losses.mtp[-1]})

    def redraw(self) -> None:
        self.curves.redraw()

    def show(self) -> None:
        """Display the two live widgets (no-op outside a live kernel)."""
        self.curves.show()
        if self.routing is not None:
            self.routing.show()

    def finish(self) -> None:
        """Draw the final state, ignoring the throttle."""
        self.curves.finish()
        if self.routing is not None:
            self.routing.finish()


def plot_training_summary(dashboard: Dashboard, history=None, *, last: int = 20, title: str = ""):
    """The static twin of the dashboard, one figure (``layout="constrained"``, legends outside the axes).

    Top: the losses (next-token and MTP depth-1 on the training batches, next-token validation from
    ``history``, a ``helpers.History``), and each expert's share of every MoE layer's routed tokens over
    the last ``last`` steps (``routing.draw_share_heatmap``: white = uniform). Bottom, for a MoE model:
    one expert × step heatmap of the selection biases b_i per MoE layer (``routing.draw_bias_heatmap``)
    with one colour bar. A dense model gets the loss panel alone."""
    import matplotlib.pyplot as plt

    routing = dashboard.routing.history if dashboard.routing is not None else None
    if routing is not None and not routing.step:
        routing = None  # nothing recorded yet: the losses alone
    if routing is None:
        fig = plt.figure(figsize=(8.5, 3.8), layout="constrained")
        _plot_losses(fig.add_subplot(), dashboard.losses, history)
        fig.suptitle(title or "Training summary")
        return fig
    L = routing.counts_array().shape[1]
    fig = plt.figure(figsize=(13, 7.4), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 0.95], hspace=0.04)
    ax_loss, ax_share = top.subplots(1, 2, width_ratios=[1.25, 1])
    _plot_losses(ax_loss, dashboard.losses, history)
    image = draw_share_heatmap(ax_share, routing, last)
    ax_share.set_title(f"routing: share of each layer's routed tokens, last {min(last, len(routing.step))} "
                       "steps", fontsize=10)
    E = routing.n_experts
    bar = top.colorbar(image, ax=ax_share, label=f"% of routed tokens (white: uniform {100 / E:.3g} %)")
    bar.ax.axhline(100 / E, color="black", lw=0.8)
    axes = bottom.subplots(1, L, sharey=True, squeeze=False)[0]
    vmax = routing.bias_array().abs().max().item()
    for i, ax in enumerate(axes):
        image = draw_bias_heatmap(ax, routing, i, vmax)
    axes[0].set_ylabel("routed expert")
    bottom.colorbar(image, ax=list(axes), label="selection bias b_i\n(> 0: picked more readily)")
    bottom.suptitle("aux-loss-free balancing: the selection bias of each expert over training", fontsize=11)
    fig.suptitle(title or "Training summary", fontsize=13)
    return fig


def _plot_losses(ax, lh: LossHistory, history=None) -> None:
    """The loss panel: train-batch losses (faint) and validation loss (dark), legend at the right."""
    ax.plot(lh.step, lh.main, color=PALETTE["main_train"], lw=1, label="next-token\n(train batch)")
    if any(m == m for m in lh.mtp):
        ax.plot(lh.step, lh.mtp, color=PALETTE["MTP_train"], lw=1,
                label="MTP depth 1: token\nafter next (train batch)")
    if history is not None and history.val_loss:
        ax.plot([s + 1 for s in history.val_step], history.val_loss, "o-", color=PALETTE["main"],
                label="next-token\n(validation)")
    ax.set(xlabel="step", ylabel="cross-entropy (nats per byte)")
    ax.set_title("losses", fontsize=10)
    legend_outside(ax)
