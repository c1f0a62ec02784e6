"""Every committed sweep by name, the one table ``scripts/sweep.py`` reads: the lessons that load it,
what runs one seed of it, and what writes its ``results/sweeps/NAME.json``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import attention, distill, dsa, fp8, models, moe, recall, rl_base, uptraining


@dataclass(frozen=True)
class Registered:
    lessons: str
    run_seed: Callable  # (seed, corpus, arms=None, log=None) -> one seed's results
    write: Callable  # (per_seed results) -> the path of the committed file


SWEEPS = {
    "attention": Registered("02, 03", attention.run_attention_seed, attention.write_attention_sweep),
    "moe": Registered("04, 10", moe.run_moe_seed, moe.write_moe_sweep),
    "mtp": Registered("05", models.run_mtp_seed, models.write_mtp_sweep),
    "capstone": Registered("06", models.run_capstone_seed, models.write_capstone_sweep),
    "dsa": Registered("07", dsa.run_dsa_seed, dsa.write_dsa_sweep),
    "distill": Registered("08", distill.run_distill_seed, distill.write_distill_sweep),
    "distill_heldout": Registered("08", distill.run_distill_heldout_seed,
                                  distill.write_distill_heldout_sweep),
    "rl_base": Registered("08", rl_base.run_rl_base_seed, rl_base.write_rl_base_sweep),
    "fp8": Registered("09", fp8.run_fp8_seed, fp8.write_fp8_sweep),
    "recall": Registered("02, 03", recall.run_recall_seed, recall.write_recall_sweep),
    "uptrain": Registered("02", uptraining.run_uptrain_seed, uptraining.write_uptrain_sweep),
}
