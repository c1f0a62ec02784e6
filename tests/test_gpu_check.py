"""scripts/gpu_check.py, the prepared GPU check: its README writer, its refusal without CUDA, and its
capstone measurement (run here on the CPU with the GPU plan forced, at a few steps)."""

import importlib.util
from pathlib import Path

import pytest
import torch

from helpers.lessons import capstone

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_the_gpu_column_takes_the_measured_seconds_and_nothing_else_changes():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {m.group("lesson"): m for m in gpu_check.ROW_RE.finditer(readme)}
    assert {"00", "06"} <= set(rows)
    out = gpu_check.fill_gpu_column(readme, {"00": 21.4, "06": 95.6}, "NVIDIA H100")
    new_rows = {m.group("lesson"): m for m in gpu_check.ROW_RE.finditer(out)}
    assert new_rows["00"].group("gpu") == "21 s (NVIDIA H100)"
    assert new_rows["06"].group("gpu") == "96 s (NVIDIA H100)"
    assert new_rows["00"].group("cpu") == rows["00"].group("cpu")
    for lesson in set(rows) - {"00", "06"}:
        assert new_rows[lesson].group(0) == rows[lesson].group(0)
    assert len(out.splitlines()) == len(readme.splitlines())
    with pytest.raises(ValueError, match=r"no row for lesson\(s\) \['42'\]"):
        gpu_check.fill_gpu_column(readme, {"42": 1.0}, "x")


def test_without_cuda_it_refuses_and_points_to_the_cpu_route(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--lessons", "00"]) == 2
    assert "make test-gpu-plan" in capsys.readouterr().err


@pytest.mark.slow
def test_the_capstone_figures_run_on_the_gpu_plan(monkeypatch):
    monkeypatch.setenv("COURSE_PLAN", "gpu")  # the GPU plan's model and recipe, on the CPU
    # at make test-gpu-plan's scale, which shrinks the plan's batch and windows too (2 × 32 tokens): bf16
    # autocast on a CPU is slow (its full 8,192-token batch took minutes a step on 2 cores, 512 tokens
    # still 20 s), and the code path is the same at any batch and length
    monkeypatch.setenv("COURSE_STEPS_SCALE", "0.02")
    monkeypatch.setattr(gpu_check, "TRAIN_STEPS", 2)
    monkeypatch.setattr(gpu_check, "WARMUP_STEPS", 1)
    monkeypatch.setattr(gpu_check, "DECODE_TOKENS", 4)
    figures = gpu_check.capstone_figures(torch.device("cpu"))
    assert figures["plan"] == "gpu"
    plan = capstone.plan_for("cpu")
    assert plan.config == capstone.GPU_CONFIG and plan.autocast == torch.bfloat16
    assert figures["train_tokens_per_s"] > 0 and figures["decode_ms_per_token"] > 0
