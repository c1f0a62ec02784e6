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
only records. ``plot_routing`` (``viz.routing``) draws the same final state as a static figure, which a
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
from collections import deque

import torch
from torch import nn

from ..moe import MoE, load_entropy, max_vio, moe_layers  # noqa: F401  (moe_layers: old import)
from ..mtp import MTP
from .live import Throttle, figure_widget, in_live_kernel, show_widget  # the last two lived here
from .routing import TITLE as ROUTING_TITLE
from .routing import (  # noqa: F401  (the static figures lived here; lesson 04 imports them from here)
    RoutingHistory,
    draw_bias_heatmap,
    draw_share_heatmap,
    legend_outside,
    moving_average,
    plot_bias,
    plot_load_over_time,
    plot_routing,
)
from .style import EXPERT_COLORS as PALETTE  # noqa: F401  (old name: the expert colours, tab10)
from .style import expert_colors

FALLBACK_TEXT = ("Live routing histogram (it renders in a running Jupyter kernel; the static figure "
                 "below shows the final state)")



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

    TITLE = ROUTING_TITLE

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
