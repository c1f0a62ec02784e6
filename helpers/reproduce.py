"""Does a live run reproduce its committed sweep? Exactly on the sweep's torch build and kind of CPU,
within the seeds' spread on any other.

Training here is bit-deterministic for a fixed seed, recipe, thread count, **torch build and kind of
CPU**: the same kernels split the same sums the same way, so a lesson's live run of seed s lands on the
committed number to the last digit. A different torch release (or CPU) may fuse, vectorise or order a
reduction differently; the first step then differs in the last bit, and after a few hundred steps of
training the run sits somewhere else inside the spread that different seeds produce. So:

- **same build** (``torch.__version__`` and the kind of CPU, ``cpu()``, equal the sweep's ``meta["torch"]``
  and ``meta["cpu"]``): every metric must match the committed value to a relative 1e-6 (``EXACT_RTOL``);
- **another build, or a sweep that did not record its CPU** (the sweeps made before 2026-12-07 did
  not; the same torch 2.13.0+cpu gave other bits on an AMD EPYC machine with AVX-512 than on the one
  that made them): a trained metric must lie inside the 95% *prediction range* for one more run of
  the arm, ``mean ± t(n−1) · SD · √(1 + 1/n)`` over the arm's n committed seeds. That is the range a fresh
  seed would land in 95% of the time; a live run on another build differs from the committed one by float
  noise, not by a change of recipe, so it must land there too. A recipe that changed, or a mechanism
  that broke, moves the number by far more than the seeds do and still fails. Counts that no kernel
  touches (FLOPs, parameters, tokens) are listed in ``exact=`` and must match on every build. A run
  checked on k metrics at once gets each metric's range at 1 − 5%/k (Bonferroni), so that a run which
  reproduces passes all k together 95% of the time: with 95% per metric, a faithful run of lesson 04's
  seven routing metrics would fail about one time in three (it did, on an Intel AVX-512 machine, on
  ``max_vio_batch``, the noisiest of the seven).

``Reproduction.sentence`` says in one line what held and why: "exactly" only where the bits matched
(measured, not assumed), otherwise the spread check and the reason; nothing is skipped silently.
"""

from __future__ import annotations

import math
import platform
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch

from .compare import t_critical
from .plan import not_the_sweeps_run

EXACT_RTOL = 1e-6  # relative tolerance of "exactly": what a float32 number printed to 6 digits keeps
CONFIDENCE = 0.95
TOGETHER = ", for all of them together"  # the sentence's word for the Bonferroni-shared range


def build() -> str:
    """This process's torch build, as a sweep records it (``torch.__version__``, local tag included:
    ``2.13.0+cpu`` and a CUDA build of 2.13.0 are different builds)."""
    return str(torch.__version__)


def cpu() -> str:
    """The kind of CPU, as a sweep records it: architecture, model name and the vector instructions
    torch's kernels dispatch to. The same torch build can round differently on another kind (AVX2
    against AVX-512 kernels, or a math library that picks its code path by CPU vendor)."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    name = name or platform.processor() or "unknown CPU"
    return f"{platform.machine()}, {name}, {torch.backends.cpu.get_cpu_capability()}"


def build_meta() -> dict[str, str]:
    """What a sweep's ``meta`` records about the machine that made it (``torch`` and ``cpu``)."""
    return {"torch": build(), "cpu": cpu()}


def same_build(meta: Mapping) -> bool:
    """True when this torch build and this kind of CPU made the sweep (its ``meta["torch"]`` and
    ``meta["cpu"]``): only then is a live run expected to reproduce it bit for bit."""
    return str(meta.get("torch")) == build() and str(meta.get("cpu")) == cpu()


def prediction_range(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The range one more draw lands in with probability ``confidence``, from ``values`` (n ≥ 2):
    ``mean ± t(n−1)·SD·√(1 + 1/n)`` (a Student-t prediction interval)."""
    values = [float(v) for v in values]
    if len(values) < 2:
        raise ValueError(f"a prediction range needs at least 2 committed seeds, got {len(values)}")
    n, mean, sd = len(values), statistics.fmean(values), statistics.stdev(values)
    half = t_critical(n - 1, confidence) * sd * math.sqrt(1 + 1 / n)
    return mean - half, mean + half


@dataclass(frozen=True)
class MetricCheck:
    metric: str
    got: float
    committed: float
    low: float  # what counts as reproduced: [low, high]
    high: float

    @property
    def ok(self) -> bool:
        return self.low <= self.got <= self.high

    @property
    def exact(self) -> bool:
        """The live value is the committed one, to a relative ``EXACT_RTOL``."""
        return abs(self.got - self.committed) <= EXACT_RTOL * max(1.0, abs(self.committed))


@dataclass(frozen=True)
class Reproduction:
    """The verdict on one live run against its committed record."""

    label: str  # e.g. "MLA Dc=24, seed 0"
    expected_exact: bool  # this machine is the sweep's build and CPU: only "exactly" passes
    sweep_build: str  # "torch 2.13.0+cpu on x86_64, AMD EPYC, AVX512"
    checks: tuple[MetricCheck, ...]
    n_seeds: int  # committed seeds behind the spread (0 when only exact checks ran)
    not_compared: str | None = None  # why this run is not the sweep's run (a scaled run), or None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def exact(self) -> bool:
        """Every metric matched bit for bit (to ``EXACT_RTOL``), whatever was required."""
        return self.not_compared is None and all(c.exact for c in self.checks)

    @property
    def failures(self) -> list[MetricCheck]:
        return [c for c in self.checks if not c.ok]

    @property
    def sentence(self) -> str:
        if self.not_compared is not None:
            return f"{self.label}: {self.not_compared}"
        if self.exact:
            return f"{self.label}: reproduces the committed sweep exactly: True"
        if self.expected_exact:
            return (f"{self.label}: reproduces the committed sweep exactly: False (this is the sweep's own "
                    f"build, {self.sweep_build})")
        return (f"{self.label}: not bit-identical here ({_describe(build_meta())}; the sweep was made with "
                f"{self.sweep_build}, and training repeats bit for bit only on the same torch build and kind "
                f"of CPU), so the live run is checked against the spread of the sweep's {self.n_seeds} seeds "
                f"instead (95% prediction range{TOGETHER if len(self.checks) > 1 else ''}): "
                f"{sum(c.ok for c in self.checks)} of {len(self.checks)} metrics inside: {self.ok}")

    def detail(self) -> str:
        """One line per metric: live, committed, the accepted range."""
        return "\n".join(f"  {c.metric:<18} live {c.got:.6g}   committed {c.committed:.6g}   accepted "
                         f"[{c.low:.6g}, {c.high:.6g}]{'' if c.ok else '   <- outside'}" for c in self.checks)

    def check(self) -> Reproduction:
        """Raise ``AssertionError`` with the per-metric detail unless every metric reproduced."""
        if not self.ok:
            raise AssertionError(self.sentence + "\n" + self.detail())
        return self


def _describe(meta: Mapping) -> str:
    return f"torch {meta.get('torch')} on {meta.get('cpu', 'a CPU it did not record')}"


def reproduction(label: str, got: Mapping[str, float], committed: Mapping[str, float],
                 spread: Mapping[str, Sequence[float]], meta: Mapping, *,
                 exact: Iterable[str] = ()) -> Reproduction:
    """Check live numbers ``got`` (metric -> value) against ``committed`` (the same seed's committed
    values): exactly where this machine is the sweep's build and CPU (``same_build``), else each metric
    against the prediction range of ``spread[metric]`` (the arm's values over its committed seeds); the
    metrics in ``exact`` are checked exactly everywhere. Metrics missing from ``committed`` are an error."""
    exact_always = set(exact)
    missing = sorted(set(got) - set(committed))
    if missing:
        raise KeyError(f"{label}: no committed value for {missing}")
    why_not = not_the_sweeps_run()
    if why_not is not None:  # COURSE_STEPS_SCALE: a shortened run is another experiment
        return Reproduction(label, False, _describe(meta), (), 0, not_compared=why_not)
    expected_exact = same_build(meta)
    checks, n_seeds = [], 0
    k = sum(1 for m in got if not (expected_exact or m in exact_always))  # metrics checked on the spread
    each = 1 - (1 - CONFIDENCE) / max(1, k)  # Bonferroni: all k inside together with CONFIDENCE
    for metric, value in got.items():
        want = float(committed[metric])
        if expected_exact or metric in exact_always:
            tol = EXACT_RTOL * max(1.0, abs(want))
            low, high = want - tol, want + tol
        else:
            values = list(spread[metric])
            low, high = prediction_range(values, each)
            n_seeds = max(n_seeds, len(values))
        checks.append(MetricCheck(metric, float(value), want, low, high))
    return Reproduction(label, expected_exact, _describe(meta), tuple(checks), n_seeds)


def combined(label: str, reps: Iterable[Reproduction]) -> Reproduction:
    """Several checks of one live run (arms trained together, or a run's stages) as one verdict and one
    sentence; each metric keeps its own check, named after the part it came from."""
    reps = list(reps)
    if not reps:
        raise ValueError("combined() needs at least one reproduction")
    builds = {r.sweep_build for r in reps}
    if len(builds) != 1:
        raise ValueError(f"the parts come from sweeps made with different builds: {sorted(builds)}")
    checks = tuple(replace(c, metric=f"{r.label}: {c.metric}") for r in reps for c in r.checks)
    skipped = next((r.not_compared for r in reps if r.not_compared is not None), None)
    return Reproduction(label, all(r.expected_exact for r in reps), reps[0].sweep_build, checks,
                        max(r.n_seeds for r in reps), not_compared=skipped)
