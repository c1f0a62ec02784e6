"""Shared fixtures: every test starts from a fixed seed. (``randomise`` lives in ``testkit.py``, a plain
module: tests import it with ``from testkit import randomise``. Importing from ``conftest`` breaks as
soon as another directory on the command line has a ``conftest.py`` of its own, as ``notebooks/`` does.)"""

from pathlib import Path

import pytest
import torch
from testkit import repeated_by_collected_lessons


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

    # a slow reproduction test that a collected lesson repeats is deselected (testkit.REPEATED_BY_LESSONS)
    lessons = {Path(str(item.fspath)).stem for item in items if str(item.fspath).endswith(".ipynb")}
    repeated = set(repeated_by_collected_lessons([item.nodeid for item in items], lessons))
    if repeated:
        config.hook.pytest_deselected(items=[item for item in items if item.nodeid in repeated])
        items[:] = [item for item in items if item.nodeid not in repeated]
        config._course_repeated = sorted(repeated)


def pytest_report_collectionfinish(config, start_path, items):
    repeated = getattr(config, "_course_repeated", [])
    if repeated:
        return [f"deselected {len(repeated)} slow reproduction test(s) that the collected lessons repeat "
                f"(tests/testkit.py, REPEATED_BY_LESSONS): " + ", ".join(t.split("::")[0] for t in repeated)]
    return []
