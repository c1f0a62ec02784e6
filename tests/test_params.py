"""helpers.params: the parameter bill, total and active, from a configuration and from a built model."""

import pytest

from helpers import Transformer, preset
from helpers.lessons.capstone import CPU_CONFIG
from helpers.params import matched_baseline, measured_param_count, param_count
from helpers.published import deepseek_v3_config


def test_param_count_hand_formula():
    cfg = CPU_CONFIG.replace(max_seq_len=64)
    D, V, L, H = 96, 256, 3, 6
    mla = (D * 48 + 48 + 48 * H * (16 + 8)) + (D * (32 + 8) + 32 + 32 * H * (16 + 16)) + H * 16 * D
    expert = 3 * D * 96
    moe = 8 * expert + 1 * expert + 8 * D  # routed, shared, router
    dense = 3 * D * 256
    total = 2 * V * D + L * (mla + 2 * D) + D + dense + 2 * moe
    active = total - 2 * (8 - 2) * expert
    mtp = 2 * D + 2 * D * D + (2 * D + mla + moe) + D  # its block is an MoE block, like V3's layer 61
    pc = param_count(cfg)
    assert (pc.total, pc.active, pc.mtp) == (total, active, mtp)
    assert Transformer(cfg).num_params() == total + mtp


@pytest.mark.parametrize("cfg", [CPU_CONFIG.replace(max_seq_len=32),
                                 CPU_CONFIG.replace(q_lora_rank=0, tie_embeddings=True, n_shared_experts=0,
                                                    mtp_depth=2, max_seq_len=32),
                                 preset("test"), preset("test", n_kv_heads=1, head_dim=4)],
                         ids=["capstone", "no-q-lora-tied-mtp2", "mha", "mqa"])
def test_param_count_equals_the_built_model(cfg):
    assert param_count(cfg) == measured_param_count(Transformer(cfg))
    if not cfg.is_moe:
        assert param_count(cfg).active == param_count(cfg).total


def test_deepseek_v3_bill_matches_the_report():
    pc = param_count(deepseek_v3_config())
    assert abs(pc.total / 671e9 - 1) < 0.01  # "671B total parameters"
    assert abs(pc.active / 37e9 - 1) < 0.03  # "37B activated for each token"


def test_matched_baseline_is_lesson_00_model():
    base = matched_baseline(CPU_CONFIG)
    assert base == preset("tiny", max_seq_len=CPU_CONFIG.max_seq_len)
    assert abs(param_count(base).total / param_count(CPU_CONFIG).active - 1) < 0.01
