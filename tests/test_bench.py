"""The benchmark package's structure (no timing assertions: timings belong to ``python -m helpers.bench``)."""

import math

import pytest
import torch

from helpers import bench, load_corpus, preset
from helpers.bench import kv, roofline
from helpers.config import ModelConfig
from helpers.model import Transformer


def test_kv_suite_is_discovered():
    assert "kv" in bench.suites()


def test_kv_run_names_and_values():
    pytest.importorskip("transformers")
    cfg = preset("test", max_seq_len=32)
    out = kv.run(quick=True, configs={"t": cfg}, n_new=8)
    names = {"kv.recompute_ms_per_token@8[t]", "kv.cached_ms_per_token@8[t]", "kv.speedup@8[t]",
             "kv.hf_cached_ms_per_token@8[t]", "kv.ours_over_hf[t]", "kv.hf_static_ms_per_token@8[t]",
             "kv.hf_best_ms_per_token@8[t]", "kv.ours_over_hf_best[t]"}
    assert set(out) == names
    assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in out.values())
    assert out["kv.speedup@8[t]"] == pytest.approx(
        out["kv.recompute_ms_per_token@8[t]"] / out["kv.cached_ms_per_token@8[t]"])


def test_kv_full_mode_checks_recompute_tokens():
    pytest.importorskip("transformers")
    setup = kv.prepare("t", preset("test", max_seq_len=32), n_new=6)
    tokens = setup.ours()
    assert torch.equal(tokens, setup.theirs())  # HF's generate makes exactly our tokens
    assert torch.equal(tokens, setup.theirs_static())  # also with its static cache
    assert kv.recompute_loop_seconds_per_token(setup, tokens) > 0
    assert len(kv.recompute_steps(setup, tokens, stride=2)) == 3
    with pytest.raises(AssertionError, match="differ"):
        kv.recompute_loop_seconds_per_token(setup, tokens.flip(1))


def test_kv_prepare_rejects_too_long():
    with pytest.raises(ValueError, match="max_seq_len"):
        kv.prepare("t", preset("test"), n_new=64)


# --- roofline -----------------------------------------------------------------------------------------
TINY_MLA = ModelConfig(dim=16, n_heads=2, attn_type="mla", q_lora_rank=0, kv_lora_rank=8,
                       qk_nope_head_dim=4, qk_rope_head_dim=2, v_head_dim=3, n_layers=1)
TINY_GQA = ModelConfig(dim=16, n_heads=4, n_kv_heads=2, head_dim=4, n_layers=1)


def test_roofline_step_bytes_and_flops_by_hand():
    """One decode step, batch 3, 10 cached positions (+1 new), float32, counted by hand."""
    from helpers.attention import Attention
    from helpers.mla import MLA

    B, S = 3, 10
    mla = MLA(TINY_MLA)
    # weights: wq 16·2·(4+2) + wkv_a 16·(8+2) + kv_norm 8 + wkv_b 8·2·(4+3) + wo 2·3·16
    matrices = 16 * 12 + 16 * 10 + 8 * 14 + 6 * 16  # 560
    absorbed = roofline.step_cost("absorbed", mla, TINY_MLA, B, S)
    assert absorbed.weight_bytes == (matrices + 8) * 4
    assert absorbed.cache_bytes == B * (S + 1) * (8 + 2) * 4  # latent + RoPE key per position
    # per position, per head: a (Dc + Dr)-wide score and a Dc-wide weighted sum
    assert absorbed.flops == B * (2 * matrices + (S + 1) * 2 * 2 * (8 + 2 + 8))
    kv_path = roofline.step_cost("kv", mla, TINY_MLA, B, S)
    assert kv_path.cache_bytes == B * (S + 1) * 2 * (4 + 2 + 3) * 4  # per-head K and V
    assert kv_path.flops == B * (2 * matrices + (S + 1) * 2 * 2 * (4 + 2 + 3))
    gqa = Attention(TINY_GQA)
    cost = roofline.step_cost("gqa", gqa, TINY_GQA, B, S)
    assert cost.weight_bytes == (16 * 16 + 2 * 16 * 8 + 16 * 16) * 4  # wq, wk, wv, wo
    assert cost.cache_bytes == B * (S + 1) * 2 * 2 * 4 * 4  # K and V of G = 2 heads of Dh = 4
    assert cost.bytes == cost.weight_bytes + cost.cache_bytes
    assert cost.intensity == pytest.approx(cost.flops / cost.bytes)


def test_roofline_bandwidth_and_peak_are_positive_and_finite():
    bw = roofline.stream_bandwidth(2 ** 16, rounds=1)
    assert set(bw) == {"copy", "triad", "read"}
    assert all(math.isfinite(v) and v > 0 for v in bw.values())
    assert math.isfinite(roofline.peak_flops(64, rounds=1)) and roofline.peak_flops(64, rounds=1) > 0


def test_roofline_decode_step_runs_and_keeps_its_context():
    for path in roofline.PATHS:
        step, cost = roofline.decode_step(path, batch=2, context=16)
        assert step().shape[0] == 2 and cost.bytes > 0
        step()  # the appended position was cropped off: a second step sees the same context


def test_roofline_run_figure_names(monkeypatch):
    monkeypatch.setattr(roofline, "MLA_CONFIG", TINY_MLA.replace(max_seq_len=64))
    monkeypatch.setattr(roofline, "GQA_CONFIG", TINY_GQA.replace(max_seq_len=64))
    out = roofline.run(quick=True, context=32, batches=(1, 2), stream_mb=1)
    for name in ("bandwidth_gb_s", "copy_gb_s", "triad_gb_s", "read_gb_s", "peak_gflop_s",
                 "ridge_flop_per_byte", "fraction_of_bound@32"):
        assert f"roofline.{name}" in out
    for tag in ("absorbed,b1", "absorbed,b2", "absorbed-fused,b1", "absorbed-fused,b2", "kv,b1", "gqa,b1",
                "absorbed-sdpa,b1"):
        for figure in ("ms_per_step", "mb_per_step", "flop_per_byte", "fraction_of_bound"):
            assert f"roofline.{figure}@32[{tag}]" in out
    assert "roofline.fraction_of_bound@32[kv,b2]" not in out  # --quick: other paths at batch 1 only
    assert "roofline.fraction_of_bound@32[absorbed-sdpa,b2]" not in out
    assert out["roofline.fraction_of_bound@32"] == out["roofline.fraction_of_bound@32[absorbed-fused,b1]"]
    for size in roofline.MODEL_SIZES:  # the whole model on the same roof, with where its step goes
        assert 0 < out[f"roofline.model_fraction_of_bound[{size}]"] < 1.5
        shares = [v for k, v in out.items() if k.startswith(f"roofline.model_share[{size},")]
        assert len(shares) == 4 and abs(sum(shares) - 1) < 1e-6
    assert all(math.isfinite(v) and v > 0 for v in out.values())


def test_decode_step_profile_sorts_the_whole_step_and_the_plan_calls_fewer_operators(capfd):
    from helpers.config import preset
    from helpers.model import Transformer

    torch.manual_seed(0)
    model = Transformer(preset("test", max_seq_len=64)).eval()
    readable, flat = (kv.decode_step_profile(model, fast, context=16, steps=5) for fast in (False, True))
    for pr in (readable, flat):
        assert set(pr.shares) == set(kv.PROFILE_PARTS)
        assert sum(pr.shares.values()) == pytest.approx(1.0) and min(pr.shares.values()) >= 0
        assert pr.ms_per_step > 0 and 0 < pr.top_level_calls <= pr.all_calls
    assert (readable.label, flat.label) == ("readable", "flat plan")
    assert flat.all_calls < readable.all_calls  # what the plan is for
    assert "profiler_start" not in capfd.readouterr().err  # kineto's lines kept out of notebook outputs


def test_training_overhead_names_its_clock_and_trains_in_the_plans_dtype():
    from helpers.bench.mtp import training_overhead

    torch.manual_seed(0)
    model = Transformer(preset("test", mtp_depth=1))
    corpus = load_corpus()
    cost = training_overhead(model, corpus, batch_size=2, seq_len=16, rounds=1)
    assert cost["measured_ratio"] > 0 and cost["clock"] == "CPU time on one thread"
    bf16 = training_overhead(model, corpus, batch_size=2, seq_len=16, rounds=1, autocast=torch.bfloat16)
    assert bf16["clock"] == "CPU time on one thread, bfloat16 autocast" and bf16["mtp_step_ms"] > 0
    assert all(p.grad is None for p in model.parameters())  # gradients cleared
