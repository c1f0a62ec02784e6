"""The DSA benchmark suite (``helpers.bench.dsa``): names and cheap properties, no timing thresholds."""

import math

import pytest
import torch

from helpers import bench
from helpers.bench import dsa
from helpers.config import ModelConfig
from helpers.dsa import decode_attention_cost, dsa_layers, set_index_topk

TINY = ModelConfig(dim=32, n_layers=1, n_heads=2, max_seq_len=64, attn_type="mla", attn_impl="explicit",
                   q_lora_rank=16, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
                   index_n_heads=2, index_head_dim=8, index_topk=8)


def test_dsa_suite_is_discovered():
    assert "dsa" in bench.suites()


def test_bench_config_has_v32_proportions():
    cfg = dsa.BENCH_CONFIG
    assert (cfg.n_heads, cfg.kv_lora_rank, cfg.qk_rope_head_dim, cfg.qk_nope_head_dim, cfg.v_head_dim,
            cfg.q_lora_rank, cfg.dim) == (16, 512, 64, 128, 128, 1536, 2048)
    v32 = dsa.v32_config()

    def ratio(c):  # indexer width over the main attention's, per token
        return c.index_n_heads * c.index_head_dim / (c.n_heads * (c.kv_lora_rank + c.qk_rope_head_dim))

    assert ratio(cfg) == pytest.approx(ratio(v32)) == pytest.approx(1 / 9)
    assert dsa.TOPK / dsa.CONTEXT == v32.index_topk / dsa.V32_CONTEXT == 1 / 64


def test_cache_figures_agree():
    out = dsa.cache_figures()
    assert set(out) == {"dsa.cache_bytes_per_token", "dsa.cache_bytes_per_token_formula",
                        "dsa.index_key_share_of_cache"}
    assert out["dsa.cache_bytes_per_token"] == out["dsa.cache_bytes_per_token_formula"]
    c = dsa.CACHE_CONFIG  # float32: l·(Dc + Dr + d_I) elements of 4 bytes
    assert out["dsa.cache_bytes_per_token"] == c.n_layers * (c.kv_lora_rank + c.qk_rope_head_dim
                                                               + c.index_head_dim) * 4
    assert out["dsa.index_key_share_of_cache"] == pytest.approx(128 / (512 + 64 + 128))


def test_indexer_cost_share_by_hand():
    out = dsa.model_figures()
    S, k, H, Dc, Dr, H_I, d_I = 131072, 2048, 128, 512, 64, 64, 128
    indexer = S * (H_I * d_I + H_I)
    share = indexer / (indexer + H * k * (2 * Dc + Dr))
    assert out == {"dsa.indexer_cost_share@131072": pytest.approx(share)}
    assert 0.5 < share < 1  # at 128K the O(L) indexer is most of the sparse step's MACs


def test_flop_crossover_is_the_first_cheaper_context():
    for cfg in (TINY, dsa.BENCH_CONFIG, dsa.v32_config()):
        s = dsa.flop_crossover(cfg)
        assert s > cfg.index_topk  # up to k the sparse step reads everything AND runs the indexer
        k = cfg.index_topk
        assert decode_attention_cost(cfg, s, k).macs < decode_attention_cost(cfg, s).macs
        assert decode_attention_cost(cfg, s - 1, k).macs >= decode_attention_cost(cfg, s - 1).macs
    # an indexer costing more per position than dense attention never pays off
    assert dsa.flop_crossover(TINY.replace(index_n_heads=16, index_head_dim=64)) is None


def test_decode_timings_tiny():
    rows = dsa.decode_timings([32, 4], quick=True, cfg=TINY, index_topk=8, rounds=1, min_run_time=0,
                              device="cpu")
    assert [r.context for r in rows] == [4, 32] and all(r.index_topk == 8 for r in rows)
    for r in rows:
        assert math.isfinite(r.dense_ms) and r.dense_ms > 0 and math.isfinite(r.sparse_ms) and r.sparse_ms > 0
        assert r.speedup == pytest.approx(r.dense_ms / r.sparse_ms)
        assert r.full_topk_equal and r.output_max_abs > 0
        row = r.as_dict()
        assert {"context", "dense_ms", "sparse_ms", "speedup", "dense_macs", "sparse_macs",
                "dense_elements_read", "sparse_elements_read", "full_topk_equal"} <= set(row)
    short, long = rows
    crossover = dsa.flop_crossover(TINY, 8)
    assert short.context < crossover < long.context
    assert short.sparse_cost.macs > short.dense_cost.macs  # below k: dense plus the indexer
    assert long.sparse_cost.macs < long.dense_cost.macs  # beyond the crossover: cheaper
    assert long.sparse_cost.elements_read < long.dense_cost.elements_read
    figures = dsa.decode_figures(rows)
    assert set(figures) == {f"dsa.{f}@{s}" for f in ("dense_ms_per_token", "sparse_ms_per_token",
                                                      "decode_speedup") for s in (4, 32)} | {
        "dsa.dense_equals_topk_full"}
    assert figures["dsa.dense_equals_topk_full"] == 1.0


def test_decode_timings_rejects_bad_contexts():
    with pytest.raises(ValueError, match="at least one"):
        dsa.decode_timings([], cfg=TINY)
    with pytest.raises(ValueError):
        dsa.decode_timings([0], cfg=TINY)


def test_hf_logits_agree_and_selection_matters():
    pytest.importorskip("transformers")
    from helpers.interop import from_hf

    out = dsa.hf_figures()
    assert set(out) == {"dsa.max_abs_diff_vs_hf"} and out["dsa.max_abs_diff_vs_hf"] <= 1e-4
    hf = dsa.tiny_hf_model()
    ours = from_hf(hf)
    assert [m.index_topk for m in dsa_layers(ours)] == [dsa.HF_TOPK] * hf.config.num_hidden_layers
    idx = torch.randint(0, 256, (2, dsa.HF_SEQ_LEN))
    with torch.no_grad():
        sparse = ours(idx)
        set_index_topk(ours, dsa.HF_SEQ_LEN)
        dense = ours(idx)
    assert (sparse - dense).abs().max() > 1e-3  # top-4 of 24 changes the logits: the sparse path ran


def test_run_figure_names(monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setattr(dsa, "CONTEXT", 32)
    monkeypatch.setattr(dsa, "TOPK", 8)
    monkeypatch.setattr(dsa, "BENCH_CONFIG", TINY)
    out = dsa.run(quick=True)
    assert set(out) == {
        "dsa.max_abs_diff_vs_hf", "dsa.dense_ms_per_token@32", "dsa.sparse_ms_per_token@32",
        "dsa.decode_speedup@32", "dsa.dense_equals_topk_full", "dsa.cache_bytes_per_token",
        "dsa.cache_bytes_per_token_formula", "dsa.index_key_share_of_cache",
        "dsa.indexer_cost_share@131072"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
