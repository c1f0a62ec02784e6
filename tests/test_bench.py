"""The benchmark package's structure (no timing assertions: timings belong to ``python -m helpers.bench``)."""

import math

import pytest
import torch

from helpers import bench, preset
from helpers.bench import kv


def test_kv_suite_is_discovered():
    assert "kv" in bench.suites()


def test_kv_run_names_and_values():
    pytest.importorskip("transformers")
    cfg = preset("test", max_seq_len=32)
    out = kv.run(quick=True, configs={"t": cfg}, n_new=8)
    names = {"kv.recompute_ms_per_token@8[t]", "kv.cached_ms_per_token@8[t]", "kv.speedup@8[t]",
             "kv.hf_cached_ms_per_token@8[t]", "kv.ours_over_hf[t]"}
    assert set(out) == names
    assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in out.values())
    assert out["kv.speedup@8[t]"] == pytest.approx(
        out["kv.recompute_ms_per_token@8[t]"] / out["kv.cached_ms_per_token@8[t]"])


def test_kv_full_mode_checks_recompute_tokens():
    pytest.importorskip("transformers")
    setup = kv.prepare("t", preset("test", max_seq_len=32), n_new=6)
    tokens = setup.ours()
    assert torch.equal(tokens, setup.theirs())  # HF's generate makes exactly our tokens
    assert kv.recompute_loop_seconds_per_token(setup, tokens) > 0
    assert len(kv.recompute_steps(setup, tokens, stride=2)) == 3
    with pytest.raises(AssertionError, match="differ"):
        kv.recompute_loop_seconds_per_token(setup, tokens.flip(1))


def test_kv_prepare_rejects_too_long():
    with pytest.raises(ValueError, match="max_seq_len"):
        kv.prepare("t", preset("test"), n_new=64)
