"""What several test modules share, as a plain module (``from testkit import randomise``)."""

import torch


def randomise(module: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    """Weights large enough that a wrong path gives visibly different outputs (init std 0.02 makes
    every attention map nearly uniform, where a wrong mask or scale hardly shows); RMSNorm weights away
    from 1 so they are exercised too. Returns the module in eval mode."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, std)
    return module.eval()


class ReproductionWarning(UserWarning):
    """A live run was checked against the seeds' spread, not exactly: this torch is not the sweep's."""


def assert_reproduces(rep):
    """Assert a ``helpers.reproduce.Reproduction`` held; on a torch build other than the sweep's, say so
    in a warning (pytest's summary lists it): the check that ran is the spread, never skipped silently."""
    import warnings

    rep.check()
    if not rep.exact:
        warnings.warn(rep.sentence, ReproductionWarning, stacklevel=2)
    return rep


# Slow reproduction tests whose work a lesson repeats. Each lesson named trains the same arms on the same
# code and checks them against the same committed sweep (``.reproduction(...).check()``, which raises), so
# when every lesson named is collected in the same session (``make test`` runs tests/ and notebooks/
# together) the test is deselected rather than trained twice. Run without the notebooks (``pytest tests``,
# ``make unit -m slow``) each runs as before. For each lesson, the code that does the repeating: a test
# (tests/test_repeated_work.py) fails if a lesson no longer holds it.
REPEATED_BY_LESSONS = {
    # MQA, MLA Dc=24 and MHA + its uptraining, seed 0: GQA-2 and MHA + the uptraining in 02, MHA and
    # MLA Dc=24 in 03 (MQA is GQA with one group: 02's GQA-2 runs its code)
    "tests/test_experiments.py::test_one_arm_and_its_uptraining_reproduce_the_committed_sweep": {
        "02_gqa": ('for name in ["MHA", "GQA-2"]:', "sweep.reproduction(name, 0,",
                   "up = us.uptrain(mha, 0, corpus)", "upsweep.reproduction(arm, 0,"),
        "03_mla": ('sweep.reproduction("MHA", 0,', 'sweep.reproduction("MLA Dc=24", 0,'),
    },
    # MTP (D=1), seed 1: both of lesson 05's arms on seed 0, every metric of measure_model
    "tests/test_model_sweeps.py::test_one_arm_reproduces_the_committed_numbers": {
        "05_multi_token_prediction": ("sweep.reproduction(n, 0, msw.measure_model(m, corpus))",),
    },
    # the indexer and k=4, seed 1: the same two arms on seed 0
    "tests/test_dsa_sweep.py::test_one_seed_reproduces_the_committed_numbers": {
        "07_sparse_attention": ('sweep.reproduction("indexer", 0,', 'sweep.reproduction("k=4", 0,'),
    },
}


def repeated_by_collected_lessons(test_ids, lesson_stems) -> list[str]:
    """The test ids (of ``test_ids``) that ``REPEATED_BY_LESSONS`` says the collected lessons repeat: every
    lesson the entry names must be among ``lesson_stems``."""
    stems = set(lesson_stems)
    return [t for t in test_ids if t in REPEATED_BY_LESSONS and set(REPEATED_BY_LESSONS[t]) <= stems]
