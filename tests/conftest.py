"""Shared fixtures: every test starts from a fixed seed. (``randomise`` lives in ``testkit.py``, a plain
module: tests import it with ``from testkit import randomise``. Importing from ``conftest`` breaks as
soon as another directory on the command line has a ``conftest.py`` of its own, as ``notebooks/`` does.)"""

import pytest
import torch


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)
    return 0


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    if not torch.cuda.is_available():
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)
