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
``Difference.pairing`` says how much it cancelled: the per-seed correlation of the two arms and the
paired against the unpaired standard deviation.

Effects that multiply (a loss that is 2.6x on one seed and 1.1x on another) live on the log scale:
``PairedRuns.ratio(a, b)`` takes the mean of the per-seed ``ln(b / a)`` and its t interval, shown as a
factor (the geometric mean ratio, ``1.50x (1.06–2.11x)``). On the additive scale the biggest effects of
such a family carry the widest intervals, so their verdicts can come out weaker than smaller ones'.

Arms of one comparison must have the same seeds. ``PairedRuns`` refuses arms whose seeds differ; a
sweep that holds arms with more seeds than others (``Sweep.runs``) compares them on the seeds they share
and records what it left out (``PairedRuns.left_out``), and every verdict drawn from it says so.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
    # seeds that one of the two arms has and the comparison could not use: ((arm, (seed, …)), …)
    left_out: tuple[tuple[str, tuple[int, ...]], ...] = ()
    paired_by: str = "seeds"  # what one pair is, as the sentences name it ("validation batches", …)

    @property
    def n(self) -> int:
        return len(self.per_seed)

    @property
    def seed_note(self) -> str:
        """'' when both arms were compared on all their seeds; else a clause that says what was left out."""
        if not self.left_out:
            return ""
        parts = "; ".join(f"{arm}'s seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
                          for arm, seeds in self.left_out)
        return (f" [UNEQUAL SEEDS: compared on the {self.n} seeds every arm of these runs has; "
                f"left out: {parts}]")

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
                    f"{self.seeds[0]}); run more seeds before calling a difference{self.seed_note}")
        if not self.excludes_zero:
            return (f"no detectable difference in {metric} at this scale ({b} − {a} = "
                    f"{_signed(self.mean, d)}{u}, {pct} interval {_signed(self.low, d)} … "
                    f"{_signed(self.high, d)} over {self.n} paired {self.paired_by}){self.seed_note}")
        direction = "higher" if self.mean > 0 else "lower"
        size = (f"by {abs(self.mean):.{d}f} ± {self.half_width:.{d}f}{u} "
                f"({pct} interval over {self.n} paired {self.paired_by})")
        if lower_is_better is None:
            return f"{b}'s {metric} is {direction} than {a}'s {size}{self.seed_note}"
        word = "better" if (direction == "lower") == lower_is_better else "worse"
        return f"{b} is {word} than {a}: its {metric} is {direction} {size}{self.seed_note}"

    def __str__(self) -> str:
        d = self._digits()
        spread = (f" ± {self.half_width:.{d}f} ({self.confidence * 100:g}% interval, {self.n} paired "
                  f"{self.paired_by})" if self.n >= 2 else " (one seed, no interval)")
        return f"{self.b} − {self.a}: {_signed(self.mean, d)}{spread}{self.seed_note}"


def _sd(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return math.nan
    m = sum(values) / n
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))


@dataclass(frozen=True)
class Pairing:
    """What pairing by seed bought for one comparison: the per-seed correlation of the two arms, and the
    standard deviation of the paired differences against the one two unpaired arms would have
    (√(sd_a² + sd_b²)). Pairing helps when the correlation is well above 0 and ``paired_sd`` well below
    ``unpaired_sd``; at correlation ≈ 0 the seeds share no luck and the paired interval is no narrower."""

    correlation: float
    paired_sd: float
    unpaired_sd: float

    @classmethod
    def of(cls, a: Sequence[float], b: Sequence[float]) -> Pairing:
        a, b = [float(v) for v in a], [float(v) for v in b]
        if len(a) != len(b) or len(a) < 3:
            raise ValueError("pairing needs two equally long lists of at least 3 seeds, "
                             f"got {len(a)} and {len(b)}")
        sa, sb = _sd(a), _sd(b)
        ma, mb = sum(a) / len(a), sum(b) / len(b)
        cov = sum((x - ma) * (y - mb) for x, y in zip(a, b)) / (len(a) - 1)
        corr = cov / (sa * sb) if sa > 0 and sb > 0 else math.nan
        return cls(corr, _sd([y - x for x, y in zip(a, b)]), math.sqrt(sa * sa + sb * sb))

    def __str__(self) -> str:
        return (f"per-seed correlation {self.correlation:+.2f}; SD of the paired differences "
                f"{self.paired_sd:.3g} against {self.unpaired_sd:.3g} unpaired")


@dataclass(frozen=True)
class Ratio:
    """The paired ratio ``b / a`` for effects that multiply: the per-seed ``ln(b / a)``, its mean and
    Student-t interval (a ``Difference`` of logs), reported back as factors. ``factor`` is the geometric
    mean of the per-seed ratios; the interval is ``exp`` of the log interval, so it is not symmetric."""

    log: Difference

    a = property(lambda self: self.log.a)
    b = property(lambda self: self.log.b)
    seeds = property(lambda self: self.log.seeds)
    n = property(lambda self: self.log.n)
    confidence = property(lambda self: self.log.confidence)

    @property
    def per_seed(self) -> tuple[float, ...]:
        """b / a on each seed."""
        return tuple(math.exp(d) for d in self.log.per_seed)

    @property
    def factor(self) -> float:
        return math.exp(self.log.mean)

    @property
    def low(self) -> float:
        return math.exp(self.log.low)

    @property
    def high(self) -> float:
        return math.exp(self.log.high)

    @property
    def excludes_one(self) -> bool:
        """True only when the interval lies wholly above or below 1 (never for one seed)."""
        return self.log.excludes_zero

    def _digits(self) -> int:
        spread = self.high - self.low if self.n >= 2 else 0.0
        return 2 if not spread or spread >= 0.1 else 3

    def _x(self, v: float) -> str:
        return f"{v:.{self._digits()}f}x"

    def interval(self) -> str:
        return f"{self._x(self.low)}–{self._x(self.high)}" if self.n >= 2 else "no interval"

    def verdict(self, metric: str = "validation loss", *, lower_is_better: bool | None = True,
                names: tuple[str, str] | None = None) -> str:
        """One sentence computed from the log interval: "better"/"worse" only when it excludes 1."""
        a, b = names if names is not None else (self.a, self.b)
        pct = f"{self.confidence * 100:g}%"
        note = self.log.seed_note
        if self.n < 2:
            return (f"one seed: no interval ({b} / {a} = {self._x(self.factor)} in {metric} on seed "
                    f"{self.seeds[0]}); run more seeds before calling a difference{note}")
        size = (f"{self._x(self.factor)} {a}'s ({pct} interval {self.interval()}, geometric mean over "
                f"{self.n} paired {self.log.paired_by})")
        if not self.excludes_one:
            return f"no detectable difference in {metric} at this scale: {b}'s is {size}{note}"
        if lower_is_better is None:
            return f"{b}'s {metric} is {size}{note}"
        word = "better" if (self.factor < 1) == lower_is_better else "worse"
        return f"{b} is {word} than {a}: its {metric} is {size}{note}"

    def __str__(self) -> str:
        spread = (f" ({self.confidence * 100:g}% interval {self.interval()}, {self.n} paired "
                  f"{self.log.paired_by})" if self.n >= 2 else " (one seed, no interval)")
        return f"{self.b} / {self.a}: {self._x(self.factor)}{spread}{self.log.seed_note}"


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
    # seeds an arm had that the comparison could not use (set by ``Sweep.runs``): {arm: (seed, …)}
    left_out: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    # what one pair is, as the sentences name it: "seeds" (one training run per arm and seed), or e.g.
    # "validation batches" when one model's variants are compared batch by batch
    paired_by: str = "seeds"

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
        unknown = set(self.left_out) - set(clean)
        if unknown:
            raise ValueError(f"left_out names arms that are not in the runs: {sorted(unknown)}")
        object.__setattr__(self, "left_out", {a: tuple(sorted(check_int("seed", s) for s in seeds))
                                              for a, seeds in self.left_out.items() if seeds})

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
        left = tuple((arm, self.left_out[arm]) for arm in (a, b) if arm in self.left_out)
        return Difference(a, b, seeds, per_seed, confidence, left, self.paired_by)

    def ratio(self, a: str, b: str, *, confidence: float = 0.95) -> Ratio:
        """The paired ratio ``b / a`` on the log scale (every value must be > 0): effects that multiply."""
        for name in (a, b):
            for s, v in self.values.get(name, {}).items():
                if v <= 0:
                    raise ValueError(f"arm {name!r}, seed {s}: a ratio needs positive values, got {v}")
        logs = PairedRuns({name: {s: math.log(v) for s, v in self.values[name].items()}
                           for name in (a, b) if name in self.values},
                          {k: v for k, v in self.left_out.items() if k in (a, b)}, self.paired_by)
        return Ratio(logs.difference(a, b, confidence=confidence))

    def pairing(self, a: str, b: str) -> Pairing:
        """How much pairing by seed bought for ``b − a``: correlation, paired and unpaired SD."""
        return Pairing.of([self.values[a][s] for s in self.seeds], [self.values[b][s] for s in self.seeds])

    def differences(self, baseline: str, *, confidence: float = 0.95) -> dict[str, Difference]:
        """Every other arm against ``baseline``: ``{"GQA-2 − MHA": Difference, …}``, for the forest plot."""
        return {f"{b} − {baseline}": self.difference(baseline, b, confidence=confidence)
                for b in self.arms if b != baseline}


def ratio(a: Sequence[float], b: Sequence[float], *, names: tuple[str, str] = ("a", "b"),
          seeds: Sequence[int] | None = None, confidence: float = 0.95) -> Ratio:
    """The paired ratio ``b / a`` of two equally long lists of positive per-seed values."""
    return PairedRuns.from_values({names[0]: a, names[1]: b}, seeds=seeds).ratio(
        names[0], names[1], confidence=confidence)


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
