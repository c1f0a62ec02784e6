"""Shared fixtures: every test starts from a fixed seed; ``randomise`` gives a module weights large
enough to tell paths apart (import it: ``from conftest import randomise``)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)
    return 0


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


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    if not torch.cuda.is_available():
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)
