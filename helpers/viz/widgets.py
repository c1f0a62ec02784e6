"""Live training widgets and their static twins (lesson 04's routing histogram, reused by the capstone).

``RoutingMonitor`` is a ``helpers.train`` callback. It records, every step, the tokens each expert of
every MoE layer received (``MoEResult.counts``), the load entropy, MaxVio_batch (Wang et al. 2024,
arXiv 2408.15664) and the selection biases, and, in a live Jupyter kernel, redraws a plotly
``go.FigureWidget``: one bar per expert per MoE layer (one bar trace per layer) above the entropy and
MaxVio curves. Redraws follow ``helpers.viz.live.Throttle``: every ``every`` steps and at most ``max_rate``
times a second, each as one batched message, so a fast training loop cannot flood the kernel's message
channel. Colours come from ``helpers.viz.style`` (one per expert, one per layer).

Which layers: the MoE layers of the main model, in order. ``RoutingMonitor(model)`` on a
``helpers.Transformer`` with multi-token prediction leaves out the MoE inside the MTP block(s): their
results travel in ``ModelOutput.mtp.moe``, not in ``ModelOutput.moe``, which lists the main model's MoE
layers only, in order (``helpers.model``). ``model.layers``, one block or a list of modules work too.

Outside a live kernel (a script, CI, a static export) nothing is drawn and nothing fails: the monitor
only records. ``plot_routing`` draws the same final state as a static matplotlib figure, which a
notebook always shows after the live widget so the result is visible on GitHub too.

DOM contract for browser tests: the widget's layout title is always ``RoutingMonitor.TITLE``; the
first L traces are the bar traces named ``"layer <i>"`` (one per MoE layer, E bars each, height =
share of the routed assignments in percent over the last ``every`` steps), so plotly renders one
``.barlayer .trace`` group per layer with one ``path.point`` per expert inside ``.js-plotly-plot``.

Shape letters (``docs/GLOSSARY.md``): Lm MoE layers, E routed experts, K experts per token, St recorded
steps.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field

import torch
from torch import nn

from ..moe import MoE, load_entropy, max_vio, moe_layers  # noqa: F401  (moe_layers: old import)
from ..mtp import MTP
from .live import Throttle, figure_widget, in_live_kernel, show_widget  # the last two lived here
from .style import EXPERT_COLORS as PALETTE  # noqa: F401  (old name: the expert colours, tab10)
from .style import color as course_color
from .style import expert_colors

FALLBACK_TEXT = ("Live routing histogram (it renders in a running Jupyter kernel; the static figure "
                 "below shows the final state)")


@dataclass
class RoutingHistory:
    """Per-step routing record of a training run."""

    n_experts: int
    n_activated: int  # K
    step: list[int] = field(default_factory=list)
    counts: list[torch.Tensor] = field(default_factory=list)  # per step: (L, E) tokens per expert
    bias: list[torch.Tensor] = field(default_factory=list)  # per step: (L, E) selection bias after it
    layer_names: list[str] = field(default_factory=list)  # per MoE layer: its module path, "layers.1.ffn"

    def layer_label(self, i: int) -> str:
        """``"MoE layer i (block j)"``, the block read from the layer's module path when it has one."""
        name = self.layer_names[i] if i < len(self.layer_names) else ""
        block = re.search(r"(?:^|layers\.)(\d+)\.", name)
        return f"MoE layer {i} (block {block.group(1)})" if block else f"MoE layer {i}"

    def counts_array(self) -> torch.Tensor:
        return torch.stack(self.counts)  # (St, Lm, E)

    def bias_array(self) -> torch.Tensor:
        return torch.stack(self.bias)  # (St, Lm, E)

    @property
    def max_vio(self) -> torch.Tensor:
        """MaxVio_batch per step and layer, (St, Lm)."""
        return max_vio(self.counts_array())

    @property
    def entropy(self) -> torch.Tensor:
        """Load entropy (bits) per step and layer, (St, Lm)."""
        return load_entropy(self.counts_array())

    def recent_share(self, last: int) -> torch.Tensor:
        """Share (%) of the routed assignments each expert got over the last ``last`` steps, (L, E)."""
        c = torch.stack(self.counts[-last:]).sum(0).double()  # (L, E)
        return 100 * c / c.sum(-1, keepdim=True).clamp_min(1)


def main_moe_layers(model) -> list[tuple[str, MoE]]:
    """The main model's MoE layers, in forward order, with their module paths: ``[("layers.1.ffn", moe),
    ...]``.

    ``model`` is a ``helpers.Transformer`` (or any ``nn.Module``), ``model.layers``, or a list/tuple of
    modules. MoE layers inside an ``MTP`` submodule are left out: they are not layers of the main model,
    and ``ModelOutput.moe`` does not list them (``helpers.moe.moe_layers`` would find them too).
    """
    if isinstance(model, nn.Module):
        parts = [("", model)]
    elif isinstance(model, (list, tuple)) and all(isinstance(m, nn.Module) for m in model):
        parts = [(str(i), m) for i, m in enumerate(model)]
    else:
        kind = type(model).__name__ if not isinstance(model, (list, tuple)) else (
            f"a {type(model).__name__} of " + ", ".join(sorted({type(m).__name__ for m in model})))
        raise TypeError(f"expected a model, model.layers or a list of modules, got {kind}")
    found = []
    for prefix, part in parts:
        inside_mtp = {id(m) for sub in part.modules() if isinstance(sub, MTP) and sub is not part
                      for m in sub.modules()}
        found += [(name, m) for name, m in part.named_modules(prefix=prefix)
                  if isinstance(m, MoE) and id(m) not in inside_mtp]
    return found


class RoutingMonitor:
    """``helpers.train`` callback: records routing every step and draws a live histogram.

    ``monitor = RoutingMonitor(model); monitor.show(); train(model, data, callback=monitor)``;
    afterwards ``plot_routing(monitor.history)`` draws the static figure. It watches the main model's MoE
    layers (``main_moe_layers``: not the MTP block's), one row per layer in every recorded step.
    """

    TITLE = "Routing: share of tokens per expert"

    def __init__(self, model, *, every: int = 10, max_rate: float = 10.0, live: bool | None = None,
                 label: str = "", height: int = 540):
        named = main_moe_layers(model)
        if not named:
            raise ValueError("RoutingMonitor needs a model with MoE layers (n_routed_experts > 0)")
        self.layers = [m for _, m in named]  # the main model's MoE layers, in order
        self.throttle = Throttle(every, max_rate)
        cfg = self.layers[0].cfg
        self.history = RoutingHistory(cfg.n_routed_experts, cfg.n_activated_experts,
                                      layer_names=[name for name, _ in named])
        self.every, self.max_rate, self.label, self.height = every, max_rate, label, height
        self._recent: deque = deque(maxlen=every)
        self.figure = None
        if live if live is not None else in_live_kernel():
            self.figure = self._build()

    # --- recording ------------------------------------------------------------------------------
    def main_results(self, out) -> list:
        """The MoE results of the monitored layers from a forward output, one per layer, in order.

        ``ModelOutput.moe`` lists the main model's MoE layers in forward order (the MTP block's results
        are in ``out.mtp.moe``); should a list carry more results (the MTP block's appended after the
        main ones), the first ``Lm`` are the main model's and the rest are left out."""
        results, L = list(getattr(out, "moe", None) or []), len(self.layers)
        if len(results) < L:
            raise ValueError(f"the forward output lists {len(results)} MoE result(s) but the monitor "
                             f"watches {L} MoE layer(s); feed it the output of the model it was built on")
        return results[:L]

    def __call__(self, step: int, out, batch=None) -> None:
        counts = torch.stack([r.counts for r in self.main_results(out)]).detach().cpu()  # (Lm, E)
        self.history.step.append(step)
        self.history.counts.append(counts)
        self.history.bias.append(torch.stack([m.gate.bias for m in self.layers]).detach().cpu())
        self._recent.append(counts)
        if self.figure is not None and self.throttle.due(step):
            self.redraw()

    @property
    def redraws(self) -> int:
        return self.throttle.draws

    def finish(self) -> None:
        """Draw the final state (ignores the throttle)."""
        if self.figure is not None and self.history.step:
            self.redraw()

    # --- the live figure ------------------------------------------------------------------------
    def _build(self):
        try:
            from plotly.subplots import make_subplots
        except ImportError:  # no plotly: record only
            return None
        L, E, K = len(self.layers), self.history.n_experts, self.history.n_activated
        cols = max(L, 2)
        top = [{"colspan": 2}, None] if L == 1 else [{} for _ in range(cols)]
        half = cols // 2
        bottom = [{"colspan": half}] + [None] * (half - 1) + [{"colspan": cols - half}] + \
            [None] * (cols - half - 1)
        titles = [f"MoE layer {i}" for i in range(L)] + ["load entropy (bits)", "MaxVio (batch)"]
        fig = make_subplots(rows=2, cols=cols, specs=[top, bottom], subplot_titles=titles,
                            vertical_spacing=0.26, row_heights=[0.55, 0.45])
        experts, layer_colors = [str(e) for e in range(E)], expert_colors(L)
        # Built as a plain figure, then wrapped: reference lines on subplots need go.Figure.
        for i in range(L):  # traces 0..L-1: one bar trace per layer
            fig.add_bar(x=experts, y=[100 / E] * E, name=f"layer {i}", showlegend=False,
                        marker_color=expert_colors(E), row=1, col=1 if L == 1 else i + 1)
            fig.update_yaxes(range=[0, 100 / K * 1.05], title_text="% of routed tokens",
                             row=1, col=1 if L == 1 else i + 1)
            fig.update_xaxes(title_text="expert", row=1, col=1 if L == 1 else i + 1)
            fig.add_hline(y=100 / E, line_dash="dash", line_color="gray",
                          row=1, col=1 if L == 1 else i + 1)
        for i in range(L):
            fig.add_scatter(x=[], y=[], mode="lines", name=f"layer {i}",
                            line_color=layer_colors[i], row=2, col=1)
        for i in range(L):
            fig.add_scatter(x=[], y=[], mode="lines", name=f"layer {i} MaxVio",
                            line_color=layer_colors[i], showlegend=False, row=2, col=half + 1)
        fig.add_hline(y=math.log2(E), line_dash="dash", line_color="gray", row=2, col=1)
        fig.update_yaxes(range=[0, math.log2(E) * 1.05], row=2, col=1)
        fig.update_yaxes(range=[0, E / K - 1 + 0.1], row=2, col=half + 1)
        fig.update_xaxes(title_text="step", row=2, col=1)
        fig.update_xaxes(title_text="step", row=2, col=half + 1)
        fig.update_layout(title_text=self.TITLE, height=self.height, margin=dict(t=90, b=40),
                          template="plotly_white", legend=dict(orientation="h", y=-0.18))
        fig.add_annotation(text=self.label, xref="paper", yref="paper", x=1.0, y=1.12,
                           showarrow=False, xanchor="right", font=dict(size=12, color="gray"))
        widget = figure_widget(fig)
        if widget is None:  # anywidget / ipywidgets unavailable: record only
            return None
        self._status = len(widget.layout.annotations) - 1  # the step read-out, updated on redraw
        return widget

    def redraw(self) -> None:
        if self.figure is None or not self._recent:
            return
        L = len(self.layers)
        c = torch.stack(list(self._recent)).sum(0).double()  # (L, E)
        share = (100 * c / c.sum(-1, keepdim=True).clamp_min(1)).tolist()
        steps = self.history.step
        ent, vio = self.history.entropy.T.tolist(), self.history.max_vio.T.tolist()  # (L, S)
        with self.figure.batch_update():  # one message per redraw
            for i in range(L):
                self.figure.data[i].y = share[i]
                self.figure.data[L + i].x, self.figure.data[L + i].y = steps, ent[i]
                self.figure.data[2 * L + i].x, self.figure.data[2 * L + i].y = steps, vio[i]
            note = f"{self.label} · " if self.label else ""
            self.figure.layout.annotations[self._status].text = (
                f"{note}step {steps[-1]} · bars: last {len(self._recent)} steps")
        self.throttle.mark()

    def show(self) -> None:
        """Display the live widget (no-op outside a live kernel)."""
        if self.figure is not None:
            show_widget(self.figure, FALLBACK_TEXT)


# --- static figures ---------------------------------------------------------------------------------
def moving_average(values: torch.Tensor, window: int) -> torch.Tensor:
    """Trailing mean over ``window`` steps along dim 0 (the first steps average what exists so far)."""
    if window <= 1:
        return values
    v = values.double()
    c = torch.cat([torch.zeros_like(v[:1]), v.cumsum(0)])  # (S+1, ...)
    idx = torch.arange(1, len(v) + 1)
    lo = (idx - window).clamp_min(0)
    return (c[idx] - c[lo]) / (idx - lo).view(-1, *([1] * (v.ndim - 1)))


def plot_routing(history: RoutingHistory, *, last: int = 10, title: str = "", smooth: int = 1, fig=None):
    """The live widget's final state as a matplotlib figure: bars per expert per layer (share of the
    routed assignments over the ``last`` steps), then load entropy and MaxVio_batch over steps
    (``smooth`` > 1 draws a trailing moving average of that many steps)."""
    import matplotlib.pyplot as plt

    if not history.step:
        raise ValueError("plot_routing needs a history with at least one recorded step")
    share = history.recent_share(last)  # (L, E)
    L, E = share.shape
    K = history.n_activated
    fig = fig or plt.figure(figsize=(4.2 * max(L, 2), 5.4))
    grid = fig.add_gridspec(2, max(L, 2), height_ratios=[1.2, 1], hspace=0.6, wspace=0.3)
    for i in range(L):
        ax = fig.add_subplot(grid[0, i] if L > 1 else grid[0, :])
        ax.bar(range(E), share[i].tolist(), color=expert_colors(E))
        ax.axhline(100 / E, ls="--", color="gray", lw=1, label="uniform")
        ax.set(ylim=(0, 100 / K * 1.05), xlabel="expert", title=f"MoE layer {i}",
               xticks=range(E))
        if i == 0:
            ax.set_ylabel("% of routed tokens")
            ax.legend(loc="upper right", fontsize=8)
    half = max(L, 2) // 2
    ax_e, ax_v = fig.add_subplot(grid[1, :half]), fig.add_subplot(grid[1, half:])
    ent, vio = moving_average(history.entropy, smooth), moving_average(history.max_vio, smooth)  # (St, Lm)
    for i, c in enumerate(expert_colors(L)):
        ax_e.plot(history.step, ent[:, i].tolist(), color=c, label=f"layer {i}")
        ax_v.plot(history.step, vio[:, i].tolist(), color=c, label=f"layer {i}")
    ax_e.axhline(math.log2(E), ls="--", color="gray", lw=1)
    ax_e.set(xlabel="step", ylabel="bits", title="load entropy (dashed: balanced)",
             ylim=(0, math.log2(E) * 1.05))
    suffix = f", {smooth}-step mean" if smooth > 1 else ""
    ax_v.set(xlabel="step", ylabel="(max − mean) / mean", title="MaxVio (batch)" + suffix,
             ylim=(0, E / K - 1 + 0.1))
    ax_e.legend(fontsize=8)
    fig.suptitle(title or RoutingMonitor.TITLE + f" — last {min(last, len(history.step))} steps")
    return fig


def plot_load_over_time(loads: torch.Tensor, ax=None, *, title: str = "", step_label: str = "step",
                        smooth: int = 1):
    """Stacked area of each expert's share of the load over steps; loads (St, E) counts (``smooth`` > 1:
    a trailing moving average of that many steps)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    loads = moving_average(loads.double(), smooth)
    share = 100 * loads / loads.sum(-1, keepdim=True).clamp_min(1)  # (St, E)
    E = share.shape[1]
    ax.stackplot(range(share.shape[0]), share.T.tolist(), colors=expert_colors(E),
                 labels=[f"expert {e}" for e in range(E)])
    ax.set(xlim=(0, share.shape[0] - 1), ylim=(0, 100), xlabel=step_label, ylabel="% of routed tokens",
           title=title)
    return ax


def legend_outside(ax, **kwargs):
    """A legend just right of ``ax``, outside its data area and tick labels (lay the figure out with
    ``layout="constrained"`` so it makes room)."""
    kwargs = {"loc": "upper left", "bbox_to_anchor": (1.02, 1), "borderaxespad": 0.0, "fontsize": 8,
              **kwargs}
    return ax.legend(**kwargs)


def draw_share_heatmap(ax, history: RoutingHistory, last: int = 10):
    """Each expert's share (%) of a layer's routed assignments over the last ``last`` steps, as an
    Lm × E heatmap: white is the uniform share 100/E, red an overloaded expert, blue an idle one; the
    cells carry the numbers when they fit. Returns the image (for a colour bar)."""
    from matplotlib.colors import TwoSlopeNorm

    share = history.recent_share(last).float()  # (Lm, E)
    L, E = share.shape
    uniform = 100 / E
    norm = TwoSlopeNorm(vmin=0.0, vcenter=uniform, vmax=max(2 * uniform, share.max().item()))
    image = ax.imshow(share.numpy(), cmap="RdBu_r", norm=norm, aspect="auto", interpolation="nearest")
    if E <= 16 and L <= 8:  # numbers in the cells
        fmt = "{:.1f}" if E <= 8 else "{:.0f}"
        for i in range(L):
            for e in range(E):
                v = share[i, e].item()
                dark = abs(norm(v) - 0.5) > 0.3
                ax.text(e, i, fmt.format(v), ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    ax.set_xticks(range(E))
    ax.set_yticks(range(L), [history.layer_label(i).replace(" (", "\n(") for i in range(L)])
    ax.set_xlabel("routed expert")
    ax.grid(False)
    return image


def draw_bias_heatmap(ax, history: RoutingHistory, layer: int, vmax: float | None = None):
    """Layer ``layer``'s selection biases b_i as an expert × step heatmap (orange: b_i > 0, the expert
    is picked more readily; purple: b_i < 0), colour scale symmetric about 0 up to ``vmax`` (default:
    the largest |b_i| of the layer). Returns the image (for a colour bar)."""
    b = history.bias_array()[:, layer].float()  # (St, E)
    E = b.shape[1]
    vmax = vmax if vmax is not None else b.abs().max().item()
    vmax = vmax if vmax > 0 else 1.0  # all zero: any scale shows white
    steps = history.step
    image = ax.imshow(b.T.numpy(), cmap="PuOr_r", vmin=-vmax, vmax=vmax, aspect="auto",
                      interpolation="nearest", extent=(steps[0] - 0.5, steps[-1] + 0.5, E - 0.5, -0.5))
    if E <= 16:
        ax.set_yticks(range(E))
    ax.set(xlabel="step", title=history.layer_label(layer))
    ax.title.set_fontsize(10)
    ax.grid(False)
    if not b.abs().max().item():
        ax.text(0.5, 0.5, "b = 0 throughout\n(this balance mode\nuses no bias)", transform=ax.transAxes,
                ha="center", va="center", fontsize=9, color="gray")
    return image


BIAS_KINDS = ("lines", "band", "heatmap")


def plot_bias(history: RoutingHistory, *, title: str = "selection bias b over training", fig=None,
              kind: str = "lines"):
    """The aux-loss-free biases over steps, one panel per MoE layer.

    ``kind="lines"``: one line per expert, in the expert's colour (legend at the right; lesson 04);
    ``"band"``: the spread over the experts, min–max band and mean (readable with many experts);
    ``"heatmap"``: one expert × step heatmap per layer with one labelled colour bar (which expert was
    pushed which way, and when)."""
    import matplotlib.pyplot as plt

    if kind not in BIAS_KINDS:
        raise ValueError(f"kind={kind!r} must be one of {BIAS_KINDS}")
    if not history.step:
        raise ValueError("plot_bias needs a history with at least one recorded step")
    bias = history.bias_array()  # (St, Lm, E)
    S, L, E = bias.shape
    fig = fig or plt.figure(figsize=(4.2 * max(L, 2) + 1.2, 3.2))
    if fig.get_layout_engine() is None:
        fig.set_layout_engine("constrained")
    axes = fig.subplots(1, L, squeeze=False, sharey=kind == "heatmap")[0]
    if kind == "heatmap":
        vmax = bias.abs().max().item()
        for i, ax in enumerate(axes):
            image = draw_bias_heatmap(ax, history, i, vmax)
        axes[0].set_ylabel("routed expert")
        fig.colorbar(image, ax=list(axes), label="selection bias b_i", shrink=0.9)
    elif kind == "band":
        color = course_color("loss_free")
        for i, ax in enumerate(axes):
            b = bias[:, i].double()  # (St, E)
            ax.fill_between(history.step, b.min(-1).values.tolist(), b.max(-1).values.tolist(), color=color,
                            alpha=0.3, lw=0, label="min–max over the experts")
            ax.plot(history.step, b.mean(-1).tolist(), color=color, lw=1.5, label="mean over the experts")
            ax.axhline(0, color="gray", lw=0.8)
            ax.set(xlabel="step", ylabel="b_i", title=history.layer_label(i))
        legend_outside(axes[-1])
    else:
        colors = expert_colors(E)
        for i, ax in enumerate(axes):
            for e in range(E):
                ax.plot(history.step, bias[:, i, e].tolist(), color=colors[e], lw=1.2, label=f"expert {e}")
            ax.axhline(0, color="gray", lw=0.8)
            ax.set(xlabel="step", ylabel="b_i", title=history.layer_label(i))
        legend_outside(axes[-1], ncol=1 if E <= 10 else 2, title="routed expert", title_fontsize=8)
    fig.suptitle(title)
    return fig
