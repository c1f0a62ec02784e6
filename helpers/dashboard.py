"""Lesson 06's training dashboard: live loss curves above lesson 04's routing histogram, and its
static twin ``plot_training_summary``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


# --- the training dashboard ---------------------------------------------------------------------------
@dataclass
class LossHistory:
    """Per-step losses of a training run (``ModelOutput``'s terms)."""

    step: list[int] = field(default_factory=list)
    main: list[float] = field(default_factory=list)  # next-token cross-entropy
    mtp: list[float] = field(default_factory=list)  # MTP depth-1 loss L_1, unweighted (NaN without MTP)
    balance: list[float] = field(default_factory=list)  # the MoE layers' balance losses, summed


class Dashboard:
    """A ``helpers.train`` callback: the loss curves (a plotly ``FigureWidget``) above lesson 04's live
    routing histogram (``helpers.widgets.RoutingMonitor``) for the main model's MoE layers.

    Redraws every ``every`` steps, at most ``max_rate`` times a second, one batched message each. Outside
    a live kernel it only records (``live=False`` forces that); ``plot_training_summary`` draws the
    static figure from what it recorded."""

    TITLE = "Training: next-token and MTP loss"

    def __init__(self, model, *, every: int = 10, max_rate: float = 5.0, live: bool | None = None,
                 label: str = ""):
        from .widgets import RoutingMonitor, in_live_kernel

        if every <= 0 or max_rate <= 0:
            raise ValueError(f"every={every} and max_rate={max_rate} must be positive")
        live = in_live_kernel() if live is None else live
        self.losses = LossHistory()
        self.every, self.max_rate = every, max_rate
        self._last_draw = -float("inf")
        # model.layers, not model: the MTP block's MoE is routed too, but out.moe lists the main layers
        self.routing = (RoutingMonitor(model.layers, every=every, max_rate=max_rate, live=live, label=label)
                        if model.config.is_moe else None)
        self.figure = self._build(label) if live else None

    def _build(self, label: str):
        try:
            import plotly.graph_objects as go

            fig = go.FigureWidget()
        except Exception:  # plotly / anywidget unavailable: record only
            return None
        fig.add_scatter(x=[], y=[], mode="lines", name="next-token loss", line_color="#08519c")
        fig.add_scatter(x=[], y=[], mode="lines", name="MTP depth-1 loss (token after next)",
                        line_color="#e6550d")
        fig.update_layout(title_text=f"{self.TITLE} {label}".strip(), height=300, template="plotly_white",
                          xaxis_title="step", yaxis_title="cross-entropy (nats per byte)",
                          margin=dict(t=50, b=40), legend=dict(orientation="h", y=-0.3))
        return fig

    def __call__(self, step: int, out, batch=None) -> None:
        self.losses.step.append(step)
        self.losses.main.append(out.main_loss.item())
        self.losses.mtp.append(float("nan") if out.mtp is None else out.mtp.depth_losses[0].item())
        self.losses.balance.append(0.0 if out.aux_loss is None else out.aux_loss.item())
        if self.routing is not None:
            self.routing(step, out, batch)
        now = time.monotonic()
        if self.figure is not None and step % self.every == 0 and now - self._last_draw >= 1 / self.max_rate:
            self.redraw()

    def redraw(self) -> None:
        if self.figure is None or not self.losses.step:
            return
        with self.figure.batch_update():
            self.figure.data[0].x, self.figure.data[0].y = self.losses.step, self.losses.main
            self.figure.data[1].x, self.figure.data[1].y = self.losses.step, self.losses.mtp
        self._last_draw = time.monotonic()

    def show(self) -> None:
        """Display the two live widgets (no-op outside a live kernel)."""
        from .widgets import show_widget

        if self.figure is not None:
            show_widget(self.figure, "Live loss curves (they render in a running Jupyter kernel; the "
                                     "static figure below shows the final state)")
        if self.routing is not None:
            self.routing.show()

    def finish(self) -> None:
        """Draw the final state, ignoring the throttle."""
        self.redraw()
        if self.routing is not None:
            self.routing.finish()


def plot_training_summary(dashboard: Dashboard, history=None, *, last: int = 20, title: str = ""):
    """The static twin of the dashboard: losses (train, MTP, validation) and, per MoE layer, each
    expert's share of the routed tokens over the last ``last`` steps and its selection bias over time."""
    import matplotlib.pyplot as plt

    from .widgets import expert_colors

    routing = dashboard.routing.history if dashboard.routing is not None else None
    L = routing.counts_array().shape[1] if routing is not None else 0
    fig, axes = plt.subplots(1, 1 + 2 * min(L, 1), figsize=(4.6 * (1 + 2 * min(L, 1)), 3.6), squeeze=False)
    ax = axes[0, 0]
    lh = dashboard.losses
    ax.plot(lh.step, lh.main, color="#9ecae1", lw=1, label="next-token (train batch)")
    if any(m == m for m in lh.mtp):
        ax.plot(lh.step, lh.mtp, color="#fdae6b", lw=1, label="MTP depth 1: token after next (train)")
    if history is not None and history.val_loss:
        ax.plot([s + 1 for s in history.val_step], history.val_loss, "o-", color="#08519c",
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
        bias = routing.bias_array()  # (S, L, E)
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
