"""Paired runs: one number per (arm, seed), every arm on the same seeds, and the comparisons drawn from
them (``helpers.compare`` explains the design)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..validate import InputTypeError, check_int
from .stats import Difference, Pairing, Ratio, _check_confidence, _check_value


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

