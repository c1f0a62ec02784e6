"""helpers._moved: every old module path still imports, as the very module that now holds its code."""

import importlib
import subprocess
import sys

import pytest

import helpers
import helpers.experiments
import helpers.experiments.attention
from helpers._moved import MOVED


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_path_is_the_new_module(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_from_import_works(old, new):
    leaf = old.rsplit(".", 1)[1]
    namespace = {}
    exec(f"from helpers import {leaf}", namespace)  # what a learner's old lesson copy runs
    assert namespace[leaf] is importlib.import_module(new)


def test_old_names_resolve_in_a_fresh_interpreter():
    """The first import of an old path in a kernel (nothing loaded yet) gives the new module's objects."""
    code = ("from helpers.moe_sweep import SEEDS\nimport helpers.experiments.moe as m\n"
            "import helpers.widgets, helpers.viz.widgets\n"
            "assert SEEDS is m.SEEDS and helpers.widgets is helpers.viz.widgets\n"
            "assert helpers.widgets.__name__ == 'helpers.viz.widgets'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_experiments_package_keeps_the_old_module_names():
    """``helpers.experiments`` was one module (lessons 02/03's sweep); the package re-exports its names."""
    old_names = [n for n in dir(helpers.experiments) if not n.startswith("_")
                 and n not in {"attention", "dsa", "distill", "fp8", "models", "moe", "sweep", "registry",
                               "recall", "rl_base", "uptraining", "paired_init"}]
    for name in ("Sweep", "load_sweep", "SEEDS", "THREADS", "run_attention_seed", "attention_arms"):
        assert name in old_names
    for name in old_names:
        assert getattr(helpers.experiments, name) is getattr(helpers.experiments.attention, name), name


def test_new_paths_do_not_need_the_table():
    """Nothing in the course imports an old path: the new ones load with the table switched off."""
    code = ("import sys, helpers, helpers._moved as mv\n"
            "sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, mv._OldPath)]\n"
            "import helpers.experiments, helpers.viz, helpers.lessons\n"
            "for new in mv.MOVED.values(): __import__(new)\n"
            "assert not [m for m in sys.modules if m in mv.MOVED], 'an old path was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_names_that_moved_out_of_a_module_still_import_from_it():
    """lesson 04's routing toy moved from helpers.moe to helpers.lessons.routing_toy; a learner's copy of the
    lesson that imports it from helpers.moe still gets the same objects."""
    from helpers.lessons import routing_toy
    from helpers.moe import ToyRun, simulate_routing

    assert simulate_routing is routing_toy.simulate_routing and ToyRun is routing_toy.ToyRun
    import helpers.moe

    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        helpers.moe.nothing_here  # noqa: B018
