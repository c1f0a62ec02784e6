"""A committed seed sweep: the one ``Sweep`` every lesson loads, its seeds, and the file format.

A verdict needs several seeds (``helpers.compare``), and several seeds of every configuration do not fit
in a lesson's few minutes on a CPU. So each sweep is run once by ``python scripts/sweep.py NAME`` and its
results are committed in ``results/sweeps/NAME.json`` together with the recipe that made them (``meta``).
A lesson loads the sweep (``load_sweep``), runs one seed of one or two arms live, and shows that its live
run reproduces the committed number (``Sweep.reproduction``): training is bit-deterministic for a fixed
seed, recipe and thread count, which is why every run trains with ``THREADS`` threads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..compare import PairedRuns
from ..reproduce import Reproduction, build_meta, reproduction
from ..validate import check_choice

ROOT = Path(__file__).resolve().parent.parent.parent
SWEEP_DIR = ROOT / "results" / "sweeps"
THREADS = 1  # every sweep run, live re-run and test trains with this many threads: bit-identical results
SEEDS = (0, 1, 2, 3, 4)  # every arm of every sweep
# Five more, for the sweeps and arms that need them (lesson 02's comparison and knee, lesson 07's k,
# lesson 09's FP8 arms): a sweep with n seeds runs the first n of SEEDS + EXTRA_SEEDS.
EXTRA_SEEDS = (5, 6, 7, 8, 9)


@dataclass(frozen=True)
class Sweep:
    """A committed sweep: its recipe, per-run records and curves, read from ``results/sweeps``."""

    name: str
    meta: dict
    records: list[dict]
    curves: dict  # {seed: {arm: {"step": [...], "val_loss": [...]}}}
    uptrain_records: dict  # {seed: {arm: {...}}}

    @property
    def seeds(self) -> list[int]:
        return sorted({r["seed"] for r in self.records})

    @property
    def arms(self) -> list[str]:
        return list(dict.fromkeys(r["arm"] for r in self.records))

    def seeds_of(self, arm: str) -> list[int]:
        return sorted({r["seed"] for r in self.records if r["arm"] == arm})

    def runs(self, metric: str = "val_loss", arms: list[str] | None = None) -> PairedRuns:
        """One metric as paired runs (arm × seed) for ``helpers.compare``, on the seeds every one of
        ``arms`` has. Seeds an arm has beyond those are recorded in ``PairedRuns.left_out``, and every
        verdict drawn from these runs names them (compare two arms alone to use all the seeds they share)."""
        order = list(arms) if arms is not None else self.arms
        by_arm: dict[str, dict[int, float]] = {}
        for r in self.records:
            if r["metric"] == metric and r["arm"] in order:
                by_arm.setdefault(r["arm"], {})[r["seed"]] = r["value"]
        if not by_arm:
            raise KeyError(f"sweep {self.name!r} has no metric {metric!r} for arms {arms}")
        common = set.intersection(*(set(v) for v in by_arm.values()))
        left_out = {a: tuple(sorted(set(v) - common)) for a, v in by_arm.items() if set(v) - common}
        return PairedRuns({a: {s: by_arm[a][s] for s in sorted(common)} for a in order if a in by_arm},
                          left_out)

    def build_of(self, arm: str) -> dict:
        """The meta that says which build made ``arm``: the sweep's own, or that of the extension that
        added the arm later (``extend_sweep``)."""
        for ext in self.meta.get("extensions", []):
            if arm in ext["arms"]:
                return ext
        return self.meta

    def value(self, arm: str, seed: int, metric: str = "val_loss") -> float:
        for r in self.records:
            if (r["arm"], r["seed"], r["metric"]) == (arm, seed, metric):
                return r["value"]
        raise KeyError(f"sweep {self.name!r} has no {metric} for arm {arm!r}, seed {seed}")

    def reproduction(self, arm: str, seed: int, got: dict[str, float], *, exact=(),
                     label: str | None = None) -> Reproduction:
        """A live run of (``arm``, ``seed``) against this sweep (``helpers.reproduce``): exactly on the
        sweep's torch build and CPU, inside the arm's seed spread elsewhere; ``exact`` names counts that must
        match on every build."""
        committed = {m: self.value(arm, seed, m) for m in got}
        spread = {m: [self.value(arm, s, m) for s in self.seeds_of(arm)] for m in got}
        return reproduction(label or f"{arm}, seed {seed}", got, committed, spread, self.build_of(arm),
                            exact=exact)

    def uptrain_reproduction(self, arm: str, seed: int, got: dict[str, float]) -> Reproduction:
        """``reproduction`` for an uptraining arm: ``got`` holds 'at_0' and/or 'final'."""
        committed = {k: self.uptrain_records[seed][arm][k] for k in got}
        spread = {k: [self.uptrain_records[s][arm][k] for s in sorted(self.uptrain_records)] for k in got}
        return reproduction(f"uptraining {arm}, seed {seed}", got, committed, spread, self.meta)

    def uptrain_runs(self, key: str = "final") -> PairedRuns:
        """Uptraining arms as paired runs: ``key`` 'at_0' (right after conversion) or 'final'."""
        key = check_choice("key", key, ["at_0", "final"])
        return PairedRuns({arm: {s: self.uptrain_records[s][arm][key] for s in self.uptrain_records}
                           for arm in next(iter(self.uptrain_records.values()))})


def sweep_path(name: str) -> Path:
    return SWEEP_DIR / f"{name}.json"


def load_sweep(name: str = "attention", path: Path | None = None) -> Sweep:
    """Read a committed sweep; the error says how to make it when the file is missing."""
    path = Path(path) if path is not None else sweep_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep results at {path}; make them with "
                                f"`python scripts/sweep.py {name}`")
    blob = json.loads(path.read_text(encoding="utf-8"))
    for rec in blob["records"]:
        if not math.isfinite(rec["value"]):
            raise ValueError(f"{path}: a non-finite value in {rec}")
    return Sweep(name, blob["meta"], blob["records"],
                 {int(s): c for s, c in blob["curves"].items()},
                 {int(s): u for s, u in blob.get("uptrain", {}).items()})


def per_seed_results(path: Path) -> list[dict]:
    """A committed sweep file turned back into ``run_attention_seed``'s per-seed records (to add seeds)."""
    blob = json.loads(Path(path).read_text(encoding="utf-8"))
    seeds = sorted({r["seed"] for r in blob["records"]})
    return [{"seed": s, "runs": [r for r in blob["records"] if r["seed"] == s],
             "curves": blob["curves"].get(str(s), {}), "uptrain": blob.get("uptrain", {}).get(str(s))}
            for s in seeds]


def extend_sweep(name: str, per_seed: list[dict], made_by: str, path: Path | None = None) -> Path:
    """Add new arms to a committed sweep without touching its records or its meta: the new records (and
    the new arms' learning curves) are appended, and ``meta["extensions"]`` records the arms, their
    seeds, the build that made them and the command. Refuses an arm the sweep already has (re-running
    an arm is a new sweep, not an extension)."""
    path = Path(path) if path is not None else sweep_path(name)
    blob = json.loads(path.read_text(encoding="utf-8"))
    have = {r["arm"] for r in blob["records"]}
    new = [r for entry in _merge_seeds(per_seed) for r in entry["runs"]]
    arms = list(dict.fromkeys(r["arm"] for r in new))
    if not new:
        raise ValueError("nothing to add")
    if set(arms) & have:
        raise ValueError(f"the sweep already has arms {sorted(set(arms) & have)}; "
                         "an extension adds new arms only")
    blob["records"] += new
    for entry in _merge_seeds(per_seed):  # the new arms' learning curves, beside the seed's others
        blob.setdefault("curves", {}).setdefault(str(entry["seed"]), {}).update(entry["curves"])
    blob["meta"].setdefault("extensions", []).append(
        {"arms": arms, "seeds": sorted({r["seed"] for r in new}), **build_meta(), "made_by": made_by})
    path.write_text(json.dumps(blob, indent=1) + "\n", encoding="utf-8")
    return path


def _merge_seeds(per_seed: list[dict]) -> list[dict]:
    """One entry per seed: entries for the same seed (different arms, e.g. extra seeds run later for a
    few arms) are combined; the same (arm, seed, metric) twice is an error, never a silent overwrite."""
    merged: dict[int, dict] = {}
    for entry in per_seed:
        s = entry["seed"]
        into = merged.setdefault(s, {"seed": s, "runs": [], "curves": {}, "uptrain": None})
        have = {(r["arm"], r["metric"]) for r in into["runs"]}
        clash = sorted({(r["arm"], r["metric"]) for r in entry["runs"]} & have)
        if clash or (entry.get("uptrain") and into["uptrain"]):
            raise ValueError(f"seed {s} has two results for {clash or 'the uptraining'}")
        into["runs"] += entry["runs"]
        into["curves"].update(entry.get("curves", {}))
        into["uptrain"] = into["uptrain"] or entry.get("uptrain")
    return [merged[s] for s in sorted(merged)]


def write_sweep(name: str, per_seed: list[dict], path: Path | None = None, *, meta: dict) -> Path:
    """Merge per-seed results (a sweep's ``run_*_seed``) into one committed JSON file with its recipe
    (``meta``, which each sweep's ``write_*_sweep`` builds)."""
    path = Path(path) if path is not None else sweep_path(name)
    per_seed = _merge_seeds(per_seed)
    blob = {"meta": meta, "records": [r for s in per_seed for r in s["runs"]],
            "curves": {str(s["seed"]): s["curves"] for s in per_seed},
            "uptrain": {str(s["seed"]): s["uptrain"] for s in per_seed if s.get("uptrain")}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(blob, indent=1) + "\n", encoding="utf-8")
    return path
