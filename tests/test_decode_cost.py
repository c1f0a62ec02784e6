"""helpers.decode_cost: the one decode cost model gives every figure its three former copies gave."""

import pytest

from helpers.bench import roofline as bench_roofline
from helpers.config import ModelConfig
from helpers.decode_cost import (
    DecodeCost,
    attention_flops_per_position,
    cache_elements_per_token,
    decode_attention_cost,
    step_cost,
)
from helpers.lessons import roofline as lesson_roofline
from helpers.mla import cache_bill
from helpers.params import attention_params


@pytest.fixture(autouse=True)
def seed():
    return 0  # nothing random here; the fixture keeps the house rule


MLA = ModelConfig(dim=64, n_heads=4, n_layers=2, attn_type="mla", q_lora_rank=24, kv_lora_rank=32,
                  qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, max_seq_len=64)
DSA = MLA.replace(index_n_heads=2, index_head_dim=8, index_topk=4)
GQA = ModelConfig(dim=64, n_heads=4, n_kv_heads=2, n_layers=2, max_seq_len=64)


def old_decode_attention_cost(cfg, context, k=None):
    """dsa.decode_attention_cost as it was written before the move (6b32d79)."""
    H, Dc, Dr = cfg.n_heads, cfg.kv_lora_rank, cfg.qk_rope_head_dim
    read = context if k is None else min(k, context)
    macs = H * read * (2 * Dc + Dr)
    elements = read * (Dc + Dr)
    if k is not None and cfg.is_sparse_attention:
        macs += context * (cfg.index_n_heads * cfg.index_head_dim + cfg.index_n_heads)
        elements += context * cfg.index_head_dim
    return DecodeCost(float(macs), float(elements))


@pytest.mark.parametrize("cfg", [MLA, DSA], ids=["mla", "dsa"])
@pytest.mark.parametrize("context, k", [(1, None), (20, None), (20, 4), (3, 4), (1000, 64), (64, 64)])
def test_decode_attention_cost_equals_the_old_formula(cfg, context, k):
    assert decode_attention_cost(cfg, context, k) == old_decode_attention_cost(cfg, context, k)


def test_dsa_and_both_roofline_modules_share_the_one_model():
    import helpers.dsa as dsa

    assert dsa.decode_attention_cost is decode_attention_cost
    assert lesson_roofline.step_cost is step_cost
    assert bench_roofline.cache_elements_per_token is cache_elements_per_token
    assert bench_roofline.attention_flops_per_position is attention_flops_per_position


def test_dense_decode_cost_is_the_roofline_per_position_cost():
    """DSA's MACs per position ×2 are the roofline's absorbed FLOPs; its elements, the cache bill."""
    S = 37
    cost = decode_attention_cost(MLA, S)
    assert 2 * cost.macs == S * attention_flops_per_position("absorbed", MLA)
    assert cost.elements_read == S * cache_bill(MLA).latent


def test_step_cost_by_hand():
    """The config-only step: weights once (2 FLOPs each), cache of S + s_q positions, attention FLOPs."""
    B, s_q, S, bpe = 2, 3, 10, 2
    c = step_cost(GQA, "gqa", batch=B, queries=s_q, context=S, bytes_per_element=bpe)
    W = attention_params(GQA)
    assert c.weight_bytes == W * bpe
    assert c.cache_bytes == B * (S + s_q) * 2 * GQA.kv_heads * GQA.hd * bpe
    assert c.flops == B * s_q * (2 * W + (S + s_q) * 2 * GQA.n_heads * 2 * GQA.hd)
