"""The statistics of one comparison: Student's t without scipy, the paired ``Difference`` and its
sentence, how much pairing bought (``Pairing``), and the paired ``Ratio`` for effects that multiply."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from ..validate import InputTypeError, check_int, check_number


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

