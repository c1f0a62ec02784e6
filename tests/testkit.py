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
