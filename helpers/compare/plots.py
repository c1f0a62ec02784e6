"""Pictures of paired comparisons: a forest plot, a cost curve whose every point carries its interval,
and each seed's two values joined by a line (differences on a linear axis, ratios on a log one)."""

from __future__ import annotations

from collections.abc import Mapping

from ..viz.style import PALETTE, color
from .runs import PairedRuns
from .stats import Difference, Ratio


def _arm_color(name: str) -> str:
    return PALETTE.get(name, color("main"))


def _point(d: Difference | Ratio) -> tuple[float, float, float, bool]:
    """(centre, low, high, interval excludes 'no effect') of a Difference or a Ratio."""
    if isinstance(d, Ratio):
        return d.factor, d.low, d.high, d.excludes_one
    return d.mean, d.low, d.high, d.excludes_zero


def _one_kind(diffs: Mapping[str, Difference | Ratio]) -> bool:
    """True for ratios, False for differences; a plot mixing the two would have no single axis."""
    kinds = {isinstance(d, Ratio) for d in diffs.values()}
    if len(kinds) > 1:
        raise ValueError("plot either Differences or Ratios, not both on one axis")
    return kinds.pop()


def plot_differences(diffs: Mapping[str, Difference], ax=None, *, metric: str = "validation loss",
                     unit: str = "nats", colors: Mapping[str, str] | None = None, title: str | None = None):
    """A forest plot: one row per comparison, its mean paired difference (filled dot when the interval
    excludes zero, hollow when not, a cross for one seed) and its interval, with a zero line. Each
    row is coloured by ``colors[label]`` (a ``PALETTE`` name or hex), else by its second arm. Given
    ``Ratio``s it draws factors on a log axis with the line at 1 (``unit`` is then ignored)."""
    import matplotlib.pyplot as plt

    if not diffs:
        raise ValueError("plot_differences needs at least one Difference")
    ratios = _one_kind(diffs)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.6 * len(diffs) + 1.4))
    ax.axvline(1.0 if ratios else 0.0, color=color("reference"), lw=1, zorder=1)
    for y, (label, d) in enumerate(reversed(list(diffs.items()))):
        c = (colors or {}).get(label)
        c = _arm_color(d.b) if c is None else (c if c.startswith("#") else color(c))
        centre, low, high, clear = _point(d)
        if d.n >= 2:
            ax.plot([low, high], [y, y], color=c, lw=2.5, solid_capstyle="butt", gid="interval")
        ax.plot([centre], [y], marker="x" if d.n < 2 else "o", ms=8, color=c,
                markerfacecolor=c if clear else "white", gid="mean")
    ax.set_yticks(range(len(diffs)), list(reversed(list(diffs))))
    pct = f"{next(iter(diffs.values())).confidence * 100:g}%"
    if ratios:
        ax.set_xscale("log")
        ax.set_xlabel(f"paired ratio of {metric} (×, log scale), geometric mean and {pct} interval")
    else:
        unit_part = f" ({unit})" if unit else ""
        ax.set_xlabel(f"paired difference in {metric}{unit_part}, mean and {pct} interval")
    what, line = ("ratios", 1) if ratios else ("differences", 0)
    ax.set_title(title or f"paired {what} over seeds (interval across {line}: no detectable difference)")
    return ax.figure


def plot_difference_curve(xs: Mapping[str, float], diffs: Mapping[str, Difference], ax=None, *,
                          xlabel: str, metric: str = "validation loss", unit: str = "nats",
                          colors: Mapping[str, str] | None = None, annotate: bool = True,
                          baseline: str = "baseline"):
    """Each comparison's paired difference (mean and interval, filled when it excludes zero) placed at
    ``xs[label]`` (e.g. the cache bytes of the arm being compared), with a zero line: a cost curve whose
    every point carries its own evidence. Given ``Ratio``s it draws factors on a log y axis with the
    line at 1 (``unit`` is then ignored)."""
    import matplotlib.pyplot as plt

    if not diffs or not set(diffs) <= set(xs):
        raise ValueError(f"give an x for every comparison: missing {sorted(set(diffs) - set(xs))}")
    ratios = _one_kind(diffs)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.8))
    ax.axhline(1.0 if ratios else 0.0, color=color("reference"), lw=1, zorder=1)
    for label, d in diffs.items():
        c = (colors or {}).get(label) or _arm_color(d.b)
        c = c if c.startswith("#") else color(c)
        centre, low, high, clear = _point(d)
        if d.n >= 2:
            ax.plot([xs[label]] * 2, [low, high], color=c, lw=2.5, solid_capstyle="butt", gid="interval")
        ax.plot([xs[label]], [centre], "o", ms=8, color=c, markerfacecolor=c if clear else "white",
                zorder=3, gid="mean")
        if annotate:
            ax.annotate(d.b, (xs[label], centre), textcoords="offset points", xytext=(7, -3), fontsize=8)
    pct = f"{next(iter(diffs.values())).confidence * 100:g}%"
    ax.set_xlabel(xlabel)
    if ratios:
        ax.set_yscale("log")
        ax.set_ylabel(f"{metric} ÷ {baseline} (×, log scale)\ngeometric mean and {pct} interval")
    else:
        ax.set_ylabel(f"{metric} − {baseline}{f' ({unit})' if unit else ''}\nmean and {pct} interval")
    return ax.figure


def plot_paired(runs: PairedRuns, a: str, b: str, ax=None, *, metric: str = "validation loss"):
    """Each seed's two values joined by a line: parallel lines mean a consistent paired difference even
    when the seeds themselves spread widely."""
    import matplotlib.pyplot as plt

    d = runs.difference(a, b)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    for s in d.seeds:
        ax.plot([0, 1], [runs.values[a][s], runs.values[b][s]], color=color("init"), lw=1, zorder=1)
    for x, name in ((0, a), (1, b)):
        ax.scatter([x] * d.n, [runs.values[name][s] for s in d.seeds], color=_arm_color(name), zorder=2)
    ax.set_xticks([0, 1], [a, b])
    ax.set_xlim(-0.4, 1.4)
    ax.set_ylabel(metric)
    ax.set_title(str(d), fontsize=9)
    return ax.figure
