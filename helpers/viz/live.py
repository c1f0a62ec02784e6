"""The plumbing of the course's live widgets, once: kernel detection, display with a text fallback,
one redraw throttle, and the live loss curves of lessons 02, 03, 05 and 06.

- ``in_live_kernel()``: True inside a Jupyter kernel (where a widget frontend may be listening).
- ``show_widget(widget, text)``: displays an ipywidget with a short plain-text fallback, which is what a
  saved notebook (GitHub, CI) shows instead of the widget's whole state.
- ``Throttle(every, max_rate)``: redraw every ``every`` steps and at most ``max_rate`` times a second,
  so a fast training loop cannot flood the kernel's message channel. ``RoutingMonitor``, ``Dashboard``
  and ``LiveLoss`` all use it.
- ``LiveLoss``: a ``helpers.train`` callback drawing the train loss of one or more runs on one plotly
  ``FigureWidget`` (and each run's validation points once it ends). Outside a live kernel it only
  records; ``figure()`` draws the same curves as a static matplotlib figure.

``live = LiveLoss(); live.show()``, then per run ``hist = train(..., callback=live.run("MQA",
color=PALETTE["MQA"])); live.finish(hist)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .style import TAB10

WIDGET_FALLBACK_TEXT = "Live widget (it renders in a running Jupyter kernel)"
LOSS_FALLBACK_TEXT = ("Live loss curves (they render in a running Jupyter kernel; the static figure "
                      "below shows the final state)")
_MPL_DASH = {None: "-", "solid": "-", "dot": ":", "dash": "--", "dashdot": "-."}  # plotly -> matplotlib


def in_live_kernel() -> bool:
    """True inside a Jupyter kernel (where a widget frontend may be listening)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def show_widget(widget, text: str = WIDGET_FALLBACK_TEXT) -> None:
    """Display an ipywidget with a short plain-text fallback (what a saved notebook shows instead of
    the widget's whole state)."""
    from IPython.display import display

    display({"application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                           "model_id": widget.model_id},
             "text/plain": text}, raw=True)


def figure_widget(figure=None, **layout):
    """A plotly ``go.FigureWidget`` (wrapping ``figure`` if given, with ``layout``), or ``None`` where
    plotly or the widget machinery (anywidget, ipywidgets) is missing: the caller then only records."""
    try:
        import plotly.graph_objects as go

        return go.FigureWidget(figure, layout=layout or None)
    except Exception:
        return None


class Throttle:
    """Decides when a live figure redraws: on steps that are multiples of ``every``, and only when at
    least ``1 / max_rate`` seconds have passed since the last draw. ``due(step)`` asks, ``mark()``
    records a draw (also one the caller forced, e.g. the final state); ``draws`` counts them.
    ``clock`` (seconds, monotonic) is replaceable for tests."""

    def __init__(self, every: int = 10, max_rate: float = 10.0, clock: Callable[[], float] = time.monotonic):
        if every <= 0 or max_rate <= 0:
            raise ValueError(f"every={every} and max_rate={max_rate} must be positive")
        self.every, self.max_rate, self.clock = every, max_rate, clock
        self.last = -math.inf
        self.draws = 0

    def due(self, step: int) -> bool:
        return step % self.every == 0 and self.clock() - self.last >= 1.0 / self.max_rate

    def mark(self) -> None:
        self.last = self.clock()
        self.draws += 1


@dataclass
class LossCurve:
    """One run's losses: train loss per step and validation loss at the steps evaluated."""

    name: str
    color: str
    dash: str | None = None  # plotly's: None (solid), "dot", "dash", "dashdot"
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)  # steps done when evaluated (TrainHistory's + 1)
    val_loss: list[float] = field(default_factory=list)
    trace: int | None = None  # index of its trace in the live figure
    val_trace: int | None = None


class LiveLoss:
    """``helpers.train`` callbacks drawing train-loss curves live, several runs on one figure.

    ``run(name, color=..., dash=...)`` adds a run and returns its callback (it records
    ``out.main_loss``); ``finish(history)`` ends the latest run: its validation points (from the
    ``TrainHistory``) join the figure, and the final state is drawn whatever the throttle says.
    ``add(name, history)`` adds a run that already finished; ``log(step, {name: loss})`` records any
    curve by hand (the capstone's dashboard draws the MTP loss this way). Redraws follow
    ``Throttle(every, max_rate)`` on the number of steps done, one batched message each.
    """

    TITLE = "Training loss (live)"

    def __init__(self, title: str = TITLE, *, ylabel: str = "train loss (nats/byte)", every: int = 20,
                 max_rate: float = 10.0, live: bool | None = None, height: int = 350,
                 width: int | None = 700, **layout):
        self.title, self.ylabel = title, ylabel
        self.throttle = Throttle(every, max_rate)
        self.curves: dict[str, LossCurve] = {}
        self.current: str | None = None
        self._dirty: set[str] = set()
        live = in_live_kernel() if live is None else live
        self.widget = (figure_widget(title=title, xaxis_title="step", yaxis_title=ylabel, height=height,
                                     width=width, **layout) if live else None)

    # --- recording --------------------------------------------------------------------------------
    def add_curve(self, name: str, color: str | None = None, dash: str | None = None) -> LossCurve:
        """A new, empty curve (``color`` defaults to the next tab10 colour)."""
        if name in self.curves:
            raise ValueError(f"a curve named {name!r} exists already")
        curve = LossCurve(name, color or TAB10[len(self.curves) % len(TAB10)], dash)
        if self.widget is not None:
            self.widget.add_scatter(x=[], y=[], mode="lines", name=name, legendgroup=name,
                                    line=dict(color=curve.color, dash=dash))
            curve.trace = len(self.widget.data) - 1
        self.curves[name] = curve
        return curve

    def run(self, name: str, *, color: str | None = None, dash: str | None = None) -> Callable:
        """Start a run: a new curve, and the ``helpers.train`` callback that feeds it."""
        self.add_curve(name, color, dash)
        self.current = name

        def callback(step: int, out, batch=None) -> None:
            self.log(step, {name: out.main_loss.item()})

        return callback

    def log(self, step: int, losses: Mapping[str, float]) -> None:
        """Record ``losses`` (curve name -> loss) at ``step``; redraw if the throttle allows."""
        for name, value in losses.items():
            curve = self.curves[name]
            curve.step.append(step)
            curve.loss.append(float(value))
            self._dirty.add(name)
        if self.widget is not None and self.throttle.due(step + 1):
            self.redraw()

    def finish(self, history=None, name: str | None = None) -> None:
        """End run ``name`` (default: the latest): record its validation losses from ``history`` (a
        ``TrainHistory``) and draw the final state, ignoring the throttle."""
        name = name or self.current
        if history is not None and name is not None:
            curve = self.curves[name]
            curve.val_step = [s + 1 for s in history.val_step]
            curve.val_loss = list(history.val_loss)
            self._dirty.add(name)
            if self.widget is not None and curve.val_trace is None and curve.val_loss:
                self.widget.add_scatter(x=[], y=[], mode="markers", name=f"{name}, validation",
                                        legendgroup=name, showlegend=False,
                                        marker=dict(color=curve.color, size=6))
                curve.val_trace = len(self.widget.data) - 1
        self.redraw(force=True)

    def add(self, name: str, history, *, color: str | None = None, dash: str | None = None) -> None:
        """Add a run that already finished, from its ``TrainHistory`` (train and validation losses)."""
        curve = self.add_curve(name, color, dash)
        curve.step, curve.loss = list(history.step), list(history.train_loss)
        self.finish(history, name)

    # --- drawing ----------------------------------------------------------------------------------
    def redraw(self, force: bool = False) -> None:
        """Send the changed curves to the live figure in one message (``force``: even if none changed)."""
        if self.widget is None or not (self._dirty or force):
            return
        with self.widget.batch_update():
            for name in self._dirty:
                curve = self.curves[name]
                self.widget.data[curve.trace].x, self.widget.data[curve.trace].y = curve.step, curve.loss
                if curve.val_trace is not None:
                    trace = self.widget.data[curve.val_trace]
                    trace.x, trace.y = curve.val_step, curve.val_loss
        self._dirty.clear()
        self.throttle.mark()

    def show(self, text: str = LOSS_FALLBACK_TEXT) -> None:
        """Display the live figure (no-op outside a live kernel: the object then only records)."""
        if self.widget is not None:
            show_widget(self.widget, text)

    def figure(self, ax=None, *, title: str | None = None):
        """The static twin (for GitHub and CI): train losses faint, validation losses as dots joined by
        lines, one colour per run. Returns the matplotlib figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7.5, 3.8))
        for c in self.curves.values():
            ls = _MPL_DASH.get(c.dash, "-")
            ax.plot(c.step, c.loss, ls, color=c.color, lw=0.8, alpha=0.35 if c.val_loss else 1.0,
                    label=None if c.val_loss else c.name)
            if c.val_loss:
                ax.plot(c.val_step, c.val_loss, "o" + ls, color=c.color, ms=3, label=f"{c.name}, validation")
        ax.set(xlabel="step", ylabel=self.ylabel, title=title or self.title.replace(" (live)", ""))
        if self.curves:
            ax.legend(fontsize=8)
        return ax.figure
