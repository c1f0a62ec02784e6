"""The course's performance figures, measured side by side in one run (``python -m helpers.bench``).

Each lesson adds a module here that defines ``def run(quick: bool) -> dict[str, float]``; figures are
named ``"<lesson>.<figure>[@<setting>]"`` (e.g. ``kv.speedup@512``). ``--quick`` keeps the whole run
under a minute on a 2-core CPU; the full run uses longer sequences and more repeats. Speed figures
are ratios measured within one run, because absolute timings on shared machines are noisy. All timing
goes through ``helpers.timing`` (``torch.utils.benchmark.Timer``); a figure named ``..._ms...`` is the
best (minimum) time of its measurements unless its suite says otherwise.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

import torch


def suites() -> dict[str, Callable[[bool], dict[str, float]]]:
    """Every ``helpers.bench.<name>`` module with a ``run`` function, in name order."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "run"):
            found[info.name] = mod.run
    return found


def run_all(quick: bool = False, only: list[str] | None = None) -> dict[str, float]:
    results: dict[str, float] = {}
    torch.manual_seed(0)
    for name, fn in suites().items():
        if only and name not in only:
            continue
        results.update(fn(quick))
    return results


def format_table(results: dict[str, float]) -> str:
    width = max((len(k) for k in results), default=10)
    lines = [f"{'figure':<{width}}  value", f"{'-' * width}  ----------"]
    for k, v in results.items():
        lines.append(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return "\n".join(lines)
