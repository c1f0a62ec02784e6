"""Paired comparisons over seeds: the one way a lesson says that one arm differs from another.

Every arm runs with the *same* seeds, and an arm's function uses its seed for both the initial weights
and the data order, so seed s of arm A and seed s of arm B differ only in the mechanism. The comparison
is then the per-seed difference ``b − a`` (second arm minus first), its mean, and a Student-t interval
with n − 1 degrees of freedom. The words "better" and "worse" are written only when that interval
excludes zero; otherwise the verdict says "no detectable difference at this scale".

    runs = run_paired({"MHA": train_mha, "GQA-2": train_gqa}, seeds=range(5))
    print(runs.table())
    print(runs.difference("MHA", "GQA-2").verdict())      # GQA-2 − MHA, validation loss in nats

Why paired: two seeds of one arm can differ more than the two arms do (the init and the batch order
move the loss), but that seed-to-seed spread is shared by both arms on a seed, so it cancels in the
per-seed difference. Judge a paired gap by the spread of paired gaps, never by the spread across seeds.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

from .validate import InputTypeError, check_int, check_number
from .viz.style import PALETTE, color


def _check_confidence(confidence) -> float:
    confidence = check_number("confidence", confidence, min_value=0.0, strict_min=True, max_value=1.0)
    if confidence >= 1.0:
        raise ValueError(f"confidence={confidence} must be below 1 (0.95 gives a 95% interval)")
    return confidence


def _central_probability(theta: float, df: int) -> float:
    """P(|T| < √df·tan θ) for Student's t with ``df`` degrees of freedom: the exact finite sums for
    integer df (Abramowitz & Stegun 26.7.3 and 26.7.4)."""
    s, c = math.sin(theta), math.cos(theta)
    term, total = 1.0, 1.0
    for k in range(2 if df % 2 == 0 else 3, df, 2):  # even df: k = 2, 4 … df−2; odd: 3, 5 … df−2
        term *= c * c * (k - 1) / k
        total += term
    if df % 2 == 0:
        return s * total
    return 2 / math.pi * (theta + (s * c * total if df > 1 else 0.0))


@cache
def t_critical(df: int, confidence: float = 0.95) -> float:
    """The two-sided Student-t critical value: P(|T| ≤ t) = ``confidence`` with ``df`` degrees of freedom
    (t_critical(4) = 2.776; it falls towards the normal 1.960 as df grows). Solved by bisection on the
    exact t distribution, so any confidence works and scipy is not needed."""
    df = check_int("df", df, min_value=1)
    confidence = _check_confidence(confidence)
    lo, hi = 0.0, math.pi / 2  # bisect on θ = atan(t/√df), which lies in [0, π/2)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _central_probability(mid, df) < confidence else (lo, mid)
    return math.sqrt(df) * math.tan((lo + hi) / 2)


def _signed(x: float, digits: int) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def _check_value(arm: str, seed: int, value) -> float:
    """A run's result must be one finite number; the error names the arm and the seed."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()  # a 0-d tensor or numpy scalar
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"arm {arm!r}, seed {seed}: the result must be a number, got {value!r} "
                             f"({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"arm {arm!r}, seed {seed}: the result is {value}; a non-finite value means "
                         "that run diverged; fix or drop the seed for every arm, not one")
    return float(value)


@dataclass(frozen=True)
class Difference:
    """The paired difference ``b − a`` (second arm minus first) on each seed, with its t interval."""

    a: str
    b: str
    seeds: tuple[int, ...]
    per_seed: tuple[float, ...]  # b − a on each seed
    confidence: float = 0.95

    @property
    def n(self) -> int:
        return len(self.per_seed)

    @property
    def mean(self) -> float:
        return sum(self.per_seed) / self.n

    @property
    def stderr(self) -> float:
        """Standard error of the mean difference: sample sd / √n (NaN for one seed)."""
        if self.n < 2:
            return math.nan
        var = sum((d - self.mean) ** 2 for d in self.per_seed) / (self.n - 1)
        return math.sqrt(var / self.n)

    @property
    def half_width(self) -> float:
        return math.nan if self.n < 2 else t_critical(self.n - 1, self.confidence) * self.stderr

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    @property
    def excludes_zero(self) -> bool:
        """True only when the interval lies wholly above or below zero (never for one seed)."""
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    def _digits(self) -> int:
        """Decimals to print: two significant figures of the half-width, at most three of the mean."""
        options = [k - 1 - math.floor(math.log10(x)) for x, k in ((self.half_width, 2), (abs(self.mean), 3))
                   if x > 0]  # NaN > 0 is False: one seed uses the mean alone
        return min(6, max(0, min(options))) if options else 3

    def verdict(self, metric: str = "validation loss", unit: str = "nats", *,
                lower_is_better: bool | None = True, names: tuple[str, str] | None = None) -> str:
        """One sentence computed from the interval. "better"/"worse" appear only when it excludes zero
        (and only if ``lower_is_better`` is True or False; None says "higher"/"lower" alone)."""
        a, b = names if names is not None else (self.a, self.b)
        d, u = self._digits(), f" {unit}" if unit else ""
        pct = f"{self.confidence * 100:g}%"
        if self.n < 2:
            return (f"one seed: no interval ({b} − {a} = {_signed(self.mean, d)}{u} in {metric} on seed "
                    f"{self.seeds[0]}); run more seeds before calling a difference")
        if not self.excludes_zero:
            return (f"no detectable difference in {metric} at this scale ({b} − {a} = "
                    f"{_signed(self.mean, d)}{u}, {pct} interval {_signed(self.low, d)} … "
                    f"{_signed(self.high, d)} over {self.n} paired seeds)")
        direction = "higher" if self.mean > 0 else "lower"
        size = (f"by {abs(self.mean):.{d}f} ± {self.half_width:.{d}f}{u} "
                f"({pct} interval over {self.n} paired seeds)")
        if lower_is_better is None:
            return f"{b}'s {metric} is {direction} than {a}'s {size}"
        word = "better" if (direction == "lower") == lower_is_better else "worse"
        return f"{b} is {word} than {a}: its {metric} is {direction} {size}"

    def __str__(self) -> str:
        d = self._digits()
        spread = (f" ± {self.half_width:.{d}f} ({self.confidence * 100:g}% interval, {self.n} paired seeds)"
                  if self.n >= 2 else " (one seed, no interval)")
        return f"{self.b} − {self.a}: {_signed(self.mean, d)}{spread}"


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """One arm's mean over seeds and the half-width of its Student-t interval (NaN for one value).

    For error bars on a single arm (a frontier plot); comparisons between arms use the paired
    ``Difference``, whose interval is narrower because the seed-to-seed spread cancels."""
    vals = [_check_value("values", i, v) for i, v in enumerate(values)]
    if not vals:
        raise ValueError("mean_interval needs at least one value")
    n, mean = len(vals), sum(vals) / len(vals)
    if n < 2:
        return mean, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    return mean, t_critical(n - 1, _check_confidence(confidence)) * sd / math.sqrt(n)


def difference(a: Sequence[float], b: Sequence[float], *, names: tuple[str, str] = ("a", "b"),
               seeds: Sequence[int] | None = None, confidence: float = 0.95) -> Difference:
    """The paired difference ``b − a`` of two equally long lists of per-seed values (the i-th entries
    of ``a`` and ``b`` come from the same seed)."""
    return PairedRuns.from_values({names[0]: a, names[1]: b}, seeds=seeds).difference(
        names[0], names[1], confidence=confidence)


@dataclass(frozen=True)
class PairedRuns:
    """One number per (arm, seed), every arm run on the same seeds: ``values[arm][seed]``."""

    values: dict[str, dict[int, float]]

    def __post_init__(self):
        if not self.values:
            raise ValueError("paired runs need at least one arm")
        clean: dict[str, dict[int, float]] = {}
        for arm, by_seed in self.values.items():
            if not isinstance(arm, str) or not arm:
                raise InputTypeError(f"arm names must be non-empty strings, got {arm!r}")
            if not by_seed:
                raise ValueError(f"arm {arm!r} has no seeds; paired runs need at least 1 seed")
            clean[arm] = {check_int("seed", s, where=f"arm {arm!r}"): _check_value(arm, s, v)
                          for s, v in by_seed.items()}
            first = next(iter(clean))
            if set(clean[arm]) != set(clean[first]):
                mine, theirs = set(clean[arm]), set(clean[first])
                raise ValueError(f"arms must share the same seeds to be paired: {arm!r} lacks seeds "
                                 f"{sorted(theirs - mine)} that {first!r} has, and has seeds "
                                 f"{sorted(mine - theirs)} that {first!r} lacks")
        object.__setattr__(self, "values", clean)  # a checked copy: the caller's dicts stay untouched

    @property
    def arms(self) -> list[str]:
        return list(self.values)

    @property
    def seeds(self) -> list[int]:
        return sorted(next(iter(self.values.values())))

    @classmethod
    def from_values(cls, values: Mapping[str, Sequence[float] | Mapping[int, float]], *,
                    seeds: Sequence[int] | None = None) -> PairedRuns:
        """Precomputed results: per arm, a ``{seed: value}`` dict, or a list in the order of ``seeds``
        (default 0, 1, 2 …)."""
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds {list(seeds)} repeat a seed; each seed is one paired run")
        out = {}
        for arm, vals in values.items():
            if not isinstance(vals, Mapping):
                vals, order = list(vals), list(seeds if seeds is not None else range(len(vals)))
                if len(order) != len(vals):
                    raise ValueError(f"arm {arm!r} has {len(vals)} values but there are {len(order)} seeds")
            out[arm] = dict(vals) if isinstance(vals, Mapping) else dict(zip(order, vals))
        return cls(out)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping], *, arm: str = "arm", seed: str = "seed",
                  value: str = "value") -> PairedRuns:
        """The inverse of ``to_rows``: one dict per run, e.g. loaded from a committed sweep's JSON."""
        out: dict[str, dict[int, float]] = {}
        for row in rows:
            name, s = row[arm], row[seed]
            if s in out.setdefault(name, {}):
                raise ValueError(f"arm {name!r} has two rows for seed {s}")
            out[name][s] = row[value]
        return cls(out)

    def to_rows(self) -> list[dict]:
        """Tidy rows, one per run, seed by seed: ``[{"seed": 0, "arm": "MHA", "value": 2.31}, …]``."""
        return [{"seed": s, "arm": a, "value": self.values[a][s]} for s in self.seeds for a in self.arms]

    def table(self, digits: int = 4) -> str:
        """The per-seed values as a printable table, one row per seed and a column per arm, then the mean."""
        digits = check_int("digits", digits, min_value=0)
        w = max(digits + 6, *(len(a) for a in self.arms)) + 2
        means = {a: sum(self.values[a].values()) / len(self.seeds) for a in self.arms}
        rows = [(str(s), [self.values[a][s] for a in self.arms]) for s in self.seeds]
        lines = [f"{'seed':>6}" + "".join(f"{a:>{w}}" for a in self.arms)]
        lines += [f"{s:>6}" + "".join(f"{v:{w}.{digits}f}" for v in vals)
                  for s, vals in rows + [("mean", list(means.values()))]]
        return "\n".join(lines)

    def difference(self, a: str, b: str, *, confidence: float = 0.95) -> Difference:
        """The paired difference ``b − a``: arm ``b``'s value minus arm ``a``'s, seed by seed."""
        for name in (a, b):
            if name not in self.values:
                raise KeyError(f"no arm {name!r}; the arms are {self.arms}")
        if a == b:
            raise ValueError(f"compare two different arms, got {a!r} twice")
        confidence = _check_confidence(confidence)
        seeds = tuple(self.seeds)
        per_seed = tuple(self.values[b][s] - self.values[a][s] for s in seeds)
        return Difference(a, b, seeds, per_seed, confidence)

    def differences(self, baseline: str, *, confidence: float = 0.95) -> dict[str, Difference]:
        """Every other arm against ``baseline``: ``{"GQA-2 − MHA": Difference, …}``, for the forest plot."""
        return {f"{b} − {baseline}": self.difference(baseline, b, confidence=confidence)
                for b in self.arms if b != baseline}


def run_paired(arms: Mapping[str, Callable[[int], float]], seeds: Iterable[int]) -> PairedRuns:
    """Call ``arms[name](seed)`` for every seed and arm, arms interleaved seed by seed (so a run cut short
    still holds complete pairs). Each function must use its seed for both init and data order."""
    seeds = [check_int("seed", s) for s in seeds]
    if not seeds:
        raise ValueError("run_paired needs at least 1 seed (5 or more for a useful interval)")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds} repeat a seed; each seed is one paired run")
    if not arms:
        raise ValueError("run_paired needs at least one arm")
    for name, fn in arms.items():
        if not callable(fn):
            raise InputTypeError(f"arm {name!r} must be a function of the seed, got {type(fn).__name__}")
    values: dict[str, dict[int, float]] = {name: {} for name in arms}
    for s in seeds:
        for name, fn in arms.items():
            values[name][s] = _check_value(name, s, fn(s))
    return PairedRuns(values)


def _arm_color(name: str) -> str:
    return PALETTE.get(name, color("main"))


def plot_differences(diffs: Mapping[str, Difference], ax=None, *, metric: str = "validation loss",
                     unit: str = "nats", colors: Mapping[str, str] | None = None, title: str | None = None):
    """A forest plot: one row per comparison, its mean paired difference (filled dot when the interval
    excludes zero, hollow when not, a cross for one seed) and its interval, with a zero line. Each
    row is coloured by ``colors[label]`` (a ``PALETTE`` name or hex), else by its second arm."""
    import matplotlib.pyplot as plt

    if not diffs:
        raise ValueError("plot_differences needs at least one Difference")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.6 * len(diffs) + 1.4))
    ax.axvline(0.0, color=color("reference"), lw=1, zorder=1)
    for y, (label, d) in enumerate(reversed(list(diffs.items()))):
        c = (colors or {}).get(label)
        c = _arm_color(d.b) if c is None else (c if c.startswith("#") else color(c))
        if d.n >= 2:
            ax.plot([d.low, d.high], [y, y], color=c, lw=2.5, solid_capstyle="butt", gid="interval")
        ax.plot([d.mean], [y], marker="x" if d.n < 2 else "o", ms=8, color=c,
                markerfacecolor=c if d.excludes_zero else "white", gid="mean")
    ax.set_yticks(range(len(diffs)), list(reversed(list(diffs))))
    pct = f"{next(iter(diffs.values())).confidence * 100:g}%"
    ax.set_xlabel(f"paired difference in {metric}{f' ({unit})' if unit else ''}, mean and {pct} interval")
    ax.set_title(title or "paired differences over seeds (interval across 0: no detectable difference)")
    return ax.figure


def plot_difference_curve(xs: Mapping[str, float], diffs: Mapping[str, Difference], ax=None, *,
                          xlabel: str, metric: str = "validation loss", unit: str = "nats",
                          colors: Mapping[str, str] | None = None, annotate: bool = True):
    """Each comparison's paired difference (mean and interval, filled when it excludes zero) placed at
    ``xs[label]`` (e.g. the cache bytes of the arm being compared), with a zero line: a cost curve whose
    every point carries its own evidence."""
    import matplotlib.pyplot as plt

    if not diffs or set(xs) < set(diffs):
        raise ValueError(f"give an x for every comparison: missing {sorted(set(diffs) - set(xs))}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.8))
    ax.axhline(0.0, color=color("reference"), lw=1, zorder=1)
    for label, d in diffs.items():
        c = (colors or {}).get(label) or _arm_color(d.b)
        c = c if c.startswith("#") else color(c)
        if d.n >= 2:
            ax.plot([xs[label]] * 2, [d.low, d.high], color=c, lw=2.5, solid_capstyle="butt", gid="interval")
        ax.plot([xs[label]], [d.mean], "o", ms=8, color=c, markerfacecolor=c if d.excludes_zero else "white",
                zorder=3, gid="mean")
        if annotate:
            ax.annotate(d.b, (xs[label], d.mean), textcoords="offset points", xytext=(7, -3), fontsize=8)
    pct = f"{next(iter(diffs.values())).confidence * 100:g}%"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric} − baseline{f' ({unit})' if unit else ''}\nmean and {pct} interval")
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
