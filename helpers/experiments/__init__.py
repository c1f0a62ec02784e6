"""The committed seed sweeps: the one ``Sweep`` every lesson loads (``sweep``), the table of sweeps that
``scripts/sweep.py`` runs (``registry``), and one module per sweep: ``attention`` (lessons 02, 03),
``moe`` (04), ``models`` (05, 06), ``dsa`` (07), ``distill`` (08), ``fp8`` (09)."""

# For one term (helpers/_moved.py): helpers.experiments was lessons 02/03's sweep module; its names stay.
from .attention import (  # noqa: F401
    COPY_PROBE,
    EVAL,
    EXTRA_ARMS,
    MLA_TRAIN_MODE,
    RECIPE,
    ROOT,
    UPTRAIN,
    arm_color,
    attention_arms,
    cache_numbers_per_token,
    copy_probe,
    measure,
    run_attention_seed,
    train_arm,
    uptrain,
)
from .sweep import (
    EXTRA_SEEDS,
    SEEDS,
    SWEEP_DIR,
    THREADS,
    Sweep,
    load_sweep,
    per_seed_results,
    sweep_path,
    write_sweep,
)

__all__ = ["EXTRA_SEEDS", "SEEDS", "SWEEP_DIR", "THREADS", "Sweep", "load_sweep", "per_seed_results",
           "sweep_path", "write_sweep"]
