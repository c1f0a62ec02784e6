"""Lesson 06's training dashboard: live loss curves above lesson 04's routing histogram, and its
static twin ``plot_training_summary``."""

from __future__ import annotations

from dataclasses import dataclass, field

from .live import LiveLoss, in_live_kernel
from .style import PALETTE, expert_colors
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
    """A ``helpers.train`` callback: the loss curves (``helpers.live.LiveLoss``, a plotly
    ``FigureWidget``) above lesson 04's live routing histogram (``helpers.widgets.RoutingMonitor``) for
    the main model's MoE layers.

    Both redraw every ``every`` steps, at most ``max_rate`` times a second (``helpers.live.Throttle``),
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
        # model.layers, not model: the MTP block's MoE is routed too, but out.moe lists the main layers
        self.routing = (RoutingMonitor(model.layers, every=every, max_rate=max_rate, live=live, label=label)
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
    """The static twin of the dashboard: losses (train, MTP, validation) and, per MoE layer, each
    expert's share of the routed tokens over the last ``last`` steps and its selection bias over time."""
    import matplotlib.pyplot as plt

    routing = dashboard.routing.history if dashboard.routing is not None else None
    L = routing.counts_array().shape[1] if routing is not None else 0
    fig, axes = plt.subplots(1, 1 + 2 * min(L, 1), figsize=(4.6 * (1 + 2 * min(L, 1)), 3.6), squeeze=False)
    ax = axes[0, 0]
    lh = dashboard.losses
    ax.plot(lh.step, lh.main, color=PALETTE["main_train"], lw=1, label="next-token (train batch)")
    if any(m == m for m in lh.mtp):
        ax.plot(lh.step, lh.mtp, color=PALETTE["MTP_train"], lw=1,
                label="MTP depth 1: token after next (train)")
    if history is not None and history.val_loss:
        ax.plot([s + 1 for s in history.val_step], history.val_loss, "o-", color=PALETTE["main"],
                label="next-token (validation)")
    ax.set(xlabel="step", ylabel="cross-entropy (nats per byte)", title="losses")
    ax.legend(fontsize=8)
    if routing is not None:
        share = routing.recent_share(last)  # (L, E)
        E = share.shape[1]
        width = 0.8 / L
        ax = axes[0, 1]
        for i in range(L):
            ax.bar([e + (i - (L - 1) / 2) * width for e in range(E)], share[i].tolist(), width=width,
                   color=expert_colors(E), alpha=1.0 - 0.45 * i / max(L - 1, 1), edgecolor="black", lw=0.4,
                   label=f"MoE layer {i} (lighter = later)" if L > 1 else "MoE layer 0")
        ax.axhline(100 / E, ls="--", color="gray", lw=1, label="uniform")
        ax.set(xlabel="expert", ylabel="% of routed tokens", xticks=range(E),
               ylim=(0, max(share.max().item(), 100 / E) * 1.6),
               title=f"routing, last {min(last, len(routing.step))} steps")
        ax.legend(fontsize=7, loc="upper center", ncol=3, framealpha=0.9)
        ax = axes[0, 2]
        bias = routing.bias_array()  # (St, Lm, E)
        styles = ["-", "--", ":", "-."]
        for i in range(L):
            for e in range(E):
                ax.plot(routing.step, bias[:, i, e].tolist(), styles[i % 4], color=expert_colors(E)[e], lw=1)
        ax.axhline(0, color="gray", lw=0.8)
        ax.set(xlabel="step", ylabel="b_i", title="selection bias (one line per expert; "
               + ", ".join(f"layer {i} {styles[i % 4]}" for i in range(L)) + ")")
        ax.title.set_fontsize(9)
    fig.suptitle(title or "Training summary")
    fig.tight_layout()
    return fig
