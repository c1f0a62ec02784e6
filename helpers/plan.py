"""Which run plan a lesson takes, and how long its training runs are: the CPU plan or the GPU plan, at
full length or scaled down.

A lesson picks its plan from its device: the **GPU plan** (bigger models, more steps, bf16 autocast) on
CUDA, the **CPU plan** (the committed sweeps' recipes, a few minutes on a laptop) everywhere else, Apple's
MPS included. Two environment variables override that, so that every branch a learner can take runs
somewhere, in CI on a CPU too:

- ``COURSE_PLAN=gpu`` (or ``cpu``): take that plan on whatever device the lesson runs (bf16 autocast
  works on the CPU, slowly). Unset: chosen by the device.
- ``COURSE_STEPS_SCALE=<fraction>``: every training length in a lesson (steps, the sweeps' live arms,
  evaluation intervals) times the fraction, each at least ``MIN_STEPS``; the capstone's GPU plan scales
  its batch too (``helpers.lessons.capstone.plan_for``: one full GPU-plan step takes ~20 s on a 2-core CPU).
  ``make test-gpu-plan`` runs every lesson with ``COURSE_PLAN=gpu COURSE_STEPS_SCALE=0.02``. Unset (or
  1): nothing changes.

A scaled run is not the committed sweep's run, so ``helpers.reproduce`` says so instead of comparing it,
and ``scripts/sweep.py`` refuses to make a sweep while either variable is set.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch

PLAN_VAR = "COURSE_PLAN"
SCALE_VAR = "COURSE_STEPS_SCALE"
PLANS = ("cpu", "gpu")
MIN_STEPS = 2  # a scaled run still takes a step after its first (an optimiser state, a bias update)


def forced_plan() -> str | None:
    """``$COURSE_PLAN`` ('cpu' or 'gpu'), or None when unset or empty."""
    value = os.environ.get(PLAN_VAR, "").strip().lower()
    if not value:
        return None
    if value not in PLANS:
        raise ValueError(f"{PLAN_VAR}={os.environ[PLAN_VAR]!r}: the plans are {list(PLANS)} "
                         f"(or leave it unset: the GPU plan on CUDA, the CPU plan elsewhere)")
    return value


def plan_name(device: torch.device | str) -> str:
    """The plan a lesson takes on ``device``: ``$COURSE_PLAN`` if set, else 'gpu' on CUDA and 'cpu'
    elsewhere (MPS included: its kernels and memory suit the CPU plan's sizes)."""
    forced = forced_plan()
    if forced is not None:
        return forced
    return "gpu" if torch.device(device).type == "cuda" else "cpu"


def runs_the_sweep(device: torch.device | str) -> bool:
    """Whether a lesson's live run on ``device`` can be its committed sweep's run: only on the CPU plan
    *on the CPU* (the sweeps are CPU runs on a fixed thread count). On MPS the CPU plan trains on the MPS
    device, and on the GPU plan the recipe is another; neither is the sweep's run."""
    return plan_name(device) == "cpu" and torch.device(device).type == "cpu"


def steps_scale() -> float:
    """``$COURSE_STEPS_SCALE`` as a fraction in (0, 1]; 1.0 when unset."""
    raw = os.environ.get(SCALE_VAR, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (0.0 < value <= 1.0):
        raise ValueError(f"{SCALE_VAR}={raw!r} must be a fraction in (0, 1], e.g. 0.02 for a 2% run "
                         f"(or leave it unset for full length)")
    return value


def full_length() -> bool:
    """True when training runs at full length (no ``COURSE_STEPS_SCALE`` below 1)."""
    return steps_scale() == 1.0


def scaled(n: int, minimum: int = MIN_STEPS) -> int:
    """``n`` steps (or an interval) at the current scale: ``round(n · scale)``, at least ``minimum`` (and
    never more than ``n``). Unscaled: ``n`` itself."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} must be a positive whole number of steps")
    scale = steps_scale()
    if scale == 1.0:
        return n
    return min(n, max(minimum, round(n * scale)))


LENGTH_KEYS = ("steps", "every")  # recipe keys that count steps: steps, *_steps, eval_every, recall_every


def scaled_recipe(recipe: Mapping) -> dict:
    """A recipe with every step count and interval scaled (keys ending in ``steps`` or ``every``; an
    interval may go down to 1); other keys as they are."""
    out = dict(recipe)
    for key, value in recipe.items():
        if key.endswith(LENGTH_KEYS) and isinstance(value, int) and not isinstance(value, bool) and value > 0:
            out[key] = scaled(value, minimum=MIN_STEPS if key.endswith("steps") else 1)
    return out


def describe() -> str:
    """One line for a lesson's setup output when a variable is set, else ''."""
    parts = []
    if forced_plan() is not None:
        parts.append(f"{PLAN_VAR}={forced_plan()} (the {forced_plan().upper()} plan on whatever device "
                     "this is)")
    if not full_length():
        parts.append(f"{SCALE_VAR}={steps_scale():g} (every training run shortened to {steps_scale():.0%}: "
                     "the numbers below are not the lesson's)")
    return "; ".join(parts)


def not_the_sweeps_run() -> str | None:
    """Why a live run cannot be its committed sweep's run, or None when it can be (full length)."""
    if full_length():
        return None
    return (f"{SCALE_VAR}={steps_scale():g} shortened this run to {steps_scale():.0%} of the sweep's recipe, "
            f"so it is not the sweep's run and is not compared with it")
