"""Old module paths, kept for one term: every module that moved, and where it went.

Issue #27 gave the package a layout that shows the course (``experiments/`` for the committed sweeps,
``viz/`` for pictures, ``lessons/`` for code one lesson owns). Learners' ``workspace/`` copies of the
lessons still import the old paths (``from helpers import moe_sweep``, ``helpers.widgets``), so each old
path below keeps working for one term: importing it returns the module that now holds the code (the
same object, so ``helpers.moe_sweep.SEEDS is helpers.experiments.moe.SEEDS``). New code imports the new
paths; ``tests/test_moved.py`` checks every row. ``helpers.experiments`` itself kept its path: it is now
the package, and its ``__init__`` re-exports the old module's names.

Names that moved out of a module that stayed (``MOVED_NAMES``: lesson 04's routing toy left
``helpers.moe``) keep importing from it the same way: ``install`` gives the old module a ``__getattr__``
(PEP 562) that imports the new home on first use. The forwarding lives here, not in the old module, so
that a mechanism module never imports lesson code.

Remove this table, and the one line in ``helpers/__init__.py`` that installs it, after the term.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {  # old path -> new path
    "helpers.moe_sweep": "helpers.experiments.moe",
    "helpers.model_sweeps": "helpers.experiments.models",
    "helpers.dsa_sweep": "helpers.experiments.dsa",
    "helpers.distill_sweep": "helpers.experiments.distill",
    "helpers.fp8_sweep": "helpers.experiments.fp8",
    "helpers.live": "helpers.viz.live",
    "helpers.widgets": "helpers.viz.widgets",
    "helpers.dashboard": "helpers.viz.dashboard",
    "helpers.diagram": "helpers.viz.diagram",
    "helpers.style": "helpers.viz.style",
    "helpers.capstone": "helpers.lessons.capstone",
    "helpers.roofline": "helpers.lessons.roofline",
    "helpers.teacher": "helpers.lessons.teacher",
    "helpers.cache_calc": "helpers.lessons.cache_calc",
    "helpers.gqa": "helpers.lessons.gqa",
    "helpers.arith": "helpers.tasks.arith",
}

MOVED_NAMES = {  # (old module, name) -> the module that holds it now
    ("helpers.moe", "ToyRun"): "helpers.lessons.routing_toy",
    ("helpers.moe", "simulate_routing"): "helpers.lessons.routing_toy",
}


class _OldPath(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path of ``MOVED`` and loads it as the module at its new path."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module):
        # The import system hands back whatever sys.modules holds under the name after this call.
        sys.modules[module.__name__] = importlib.import_module(MOVED[module.__name__])


def _forwarder(old: str):
    """A module ``__getattr__`` for ``old``: its names in ``MOVED_NAMES`` come from their new module."""
    homes = {name: new for (module, name), new in MOVED_NAMES.items() if module == old}

    def __getattr__(name: str):
        if name in homes:
            return getattr(importlib.import_module(homes[name]), name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    __getattr__.moved_names = homes  # marks it as this table's (install() runs once per module)
    return __getattr__


def install() -> None:
    """Let the old paths and names import (once; called by ``helpers/__init__.py``)."""
    if not any(isinstance(f, _OldPath) for f in sys.meta_path):
        sys.meta_path.append(_OldPath())
    for old in sorted({module for module, _ in MOVED_NAMES}):
        module = importlib.import_module(old)
        if "__getattr__" in vars(module) and not hasattr(module.__getattr__, "moved_names"):
            raise RuntimeError(f"{old} defines its own __getattr__; MOVED_NAMES cannot forward its names")
        module.__getattr__ = _forwarder(old)
