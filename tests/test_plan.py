"""helpers.plan: the plan a lesson takes (by device, or forced by COURSE_PLAN) and its training lengths
(COURSE_STEPS_SCALE); unset, nothing changes."""

import pytest
import torch

from helpers import plan


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv(plan.PLAN_VAR, raising=False)
    monkeypatch.delenv(plan.SCALE_VAR, raising=False)


def test_unset_the_device_decides_and_nothing_is_scaled():
    assert plan.plan_name("cpu") == "cpu" and plan.plan_name(torch.device("mps")) == "cpu"
    assert plan.plan_name(torch.device("cuda", 1)) == "gpu"  # the name only: no GPU needed to decide
    assert plan.steps_scale() == 1.0 and plan.full_length() and plan.scaled(300) == 300
    recipe = dict(steps=300, batch_size=8, lr=3e-3, eval_every=50)
    assert plan.scaled_recipe(recipe) == recipe and plan.describe() == ""
    assert plan.not_the_sweeps_run() is None


def test_a_forced_plan_wins_over_the_device(monkeypatch):
    monkeypatch.setenv(plan.PLAN_VAR, "GPU")
    assert plan.plan_name("cpu") == "gpu" and "GPU plan" in plan.describe()
    monkeypatch.setenv(plan.PLAN_VAR, "cpu")
    assert plan.plan_name(torch.device("cuda")) == "cpu"
    monkeypatch.setenv(plan.PLAN_VAR, "tpu")
    with pytest.raises(ValueError, match="COURSE_PLAN='tpu'.*'cpu', 'gpu'"):
        plan.plan_name("cpu")


def test_the_scale_shortens_every_length_to_at_least_a_few_steps(monkeypatch):
    monkeypatch.setenv(plan.SCALE_VAR, "0.02")
    assert plan.steps_scale() == 0.02 and not plan.full_length()
    assert plan.scaled(1500) == 30 and plan.scaled(60) == plan.MIN_STEPS and plan.scaled(1) == 1
    r = plan.scaled_recipe(dict(steps=300, pretrain_steps=300, eval_every=50, recall_every=10, batch_size=8,
                                lr=3e-3, eval_iters=16))
    assert r == dict(steps=6, pretrain_steps=6, eval_every=1, recall_every=1, batch_size=8, lr=3e-3,
                     eval_iters=16)
    assert "2%" in plan.describe() and "not the sweep's run" in plan.not_the_sweeps_run()


@pytest.mark.parametrize("bad", ["0", "-0.5", "1.5", "fast", "nan", "inf"])
def test_a_bad_scale_is_refused_by_name(monkeypatch, bad):
    monkeypatch.setenv(plan.SCALE_VAR, bad)
    with pytest.raises(ValueError, match="COURSE_STEPS_SCALE"):
        plan.steps_scale()


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_scaled_takes_a_positive_step_count(bad):
    with pytest.raises(ValueError, match="positive whole number"):
        plan.scaled(bad)


@pytest.mark.parametrize("var, value", [(plan.PLAN_VAR, "gpu"), (plan.SCALE_VAR, "0.5")])
def test_no_sweep_is_made_under_a_forced_plan_or_a_scale(monkeypatch, capsys, var, value):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "sweep.py"
    spec = importlib.util.spec_from_file_location("sweep_script", path)
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    monkeypatch.setenv(var, value)
    ran = []
    monkeypatch.setattr(sweep, "load_corpus", lambda: ran.append("corpus"))
    assert sweep.main(["attention", "--seeds", "0", "--part", "never"]) == 2
    assert ran == [] and var in capsys.readouterr().err


def test_only_the_cpu_plan_on_the_cpu_runs_the_sweeps_recipe(monkeypatch):
    assert plan.runs_the_sweep("cpu")
    assert not plan.runs_the_sweep(torch.device("mps"))  # the CPU plan, but trained on the MPS device
    assert not plan.runs_the_sweep(torch.device("cuda", 1))
    monkeypatch.setenv(plan.PLAN_VAR, "gpu")
    assert not plan.runs_the_sweep("cpu")


def test_the_capstone_plan_follows_the_plan_and_the_scale(monkeypatch):
    from helpers.lessons import capstone
    from helpers.lessons.capstone import CPU_CONFIG, GPU_CONFIG, plan_for

    cpu = plan_for("cpu", compile=True)
    assert (cpu.name, cpu.config, cpu.steps, cpu.autocast, cpu.compile) == (
        "cpu", CPU_CONFIG, 420, None, False)
    mps = plan_for(torch.device("mps"))  # no MPS needed: the plan is decided by the device's type
    assert mps.name == "cpu" and mps.device.type == "mps"
    gpu = plan_for(torch.device("cuda", 1), compile=True)
    assert (gpu.name, gpu.config, gpu.steps, gpu.autocast, gpu.compile) == (
        "gpu", GPU_CONFIG, 1500, torch.bfloat16, True)
    monkeypatch.setenv(plan.PLAN_VAR, "gpu")
    monkeypatch.setenv(plan.SCALE_VAR, "0.02")
    forced = plan_for("cpu", compile=True)  # the GPU plan on the CPU: bf16 autocast, never compiled there
    assert (forced.name, forced.config, forced.steps, forced.eval_every, forced.autocast, forced.compile) == (
        "gpu", GPU_CONFIG, 30, 5, torch.bfloat16, False)
    assert forced.batch_size == plan.MIN_STEPS  # the GPU plan's batch shrinks too, and its windows
    assert forced.seq_len == capstone.SCALED_MIN_SEQ_LEN == 32
    monkeypatch.setenv(plan.SCALE_VAR, "0.5")
    assert plan_for("cpu").seq_len == 128 and plan_for("cpu").batch_size == 16
    monkeypatch.delenv(plan.SCALE_VAR)
    assert plan_for("cpu").seq_len == 256 and plan_for("cpu").batch_size == 32  # unscaled: the recipe
    from helpers.experiments import models as msw

    assert msw.CAPSTONE_RECIPE["steps"] == 420  # the sweep's recipe never moves with the variables


def test_ci_runs_every_lesson_on_the_forced_gpu_plan():
    """The GPU branch is executed in CI without a GPU: `make test-gpu-plan` runs every notebook with the
    GPU plan forced and a small scale, and .ci/run calls it."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    makefile = (root / "Makefile").read_text()
    recipe = makefile[makefile.index("\ntest-gpu-plan:"):].split("\n\n")[0]
    assert "COURSE_PLAN=gpu" in recipe and "COURSE_STEPS_SCALE=$(STEPS_SCALE)" in recipe
    assert "run_notebooks.py --no-save notebooks/*.ipynb" in recipe
    assert "STEPS_SCALE ?= 0.02" in makefile
    assert "\nmake test-gpu-plan\n" in (root / ".ci" / "run").read_text()
