"""The committed seed sweeps: the one ``Sweep`` every lesson loads (``sweep``), the table of sweeps that
``scripts/sweep.py`` runs (``registry``), and one module per sweep: ``attention`` (lessons 02, 03),
``moe`` (04), ``models`` (05, 06), ``dsa`` (07), ``distill`` and ``rl_base`` (08), ``fp8`` (09)."""

# The names of the old helpers/experiments.py (lessons 02/03's sweep module, whose path this package
# keeps: helpers/_moved.py), as attention.py holds them: the shared ones it takes from sweep.py, its own.
from .attention import (  # noqa: F401
    COPY_PROBE,
    EVAL,
    EXTRA_ARMS,
    EXTRA_SEEDS,
    MLA_TRAIN_MODE,
    RECIPE,
    ROOT,
    SEEDS,
    SWEEP_DIR,
    THREADS,
    UPTRAIN,
    Sweep,
    arm_color,
    attention_arms,
    cache_numbers_per_token,
    copy_probe,
    load_sweep,
    measure,
    per_seed_results,
    run_attention_seed,
    sweep_path,
    train_arm,
    uptrain,
    write_sweep,
)

__all__ = ["EXTRA_SEEDS", "SEEDS", "SWEEP_DIR", "THREADS", "Sweep", "load_sweep", "per_seed_results",
           "sweep_path", "write_sweep"]  # the shared ones (sweep.py)
