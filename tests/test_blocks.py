"""helpers.blocks: the pre-norm block and its factories, and the named output a block returns."""

import torch
from testkit import randomise

from helpers.attention import Attention
from helpers.blocks import Block, BlockOutput, make_attention, make_ffn
from helpers.config import preset
from helpers.layers import MLP
from helpers.mla import MLA
from helpers.moe import MoE, MoEResult


def test_factories_follow_the_configuration():
    moe_cfg = preset("test", attn_type="mla", n_routed_experts=4, n_dense_layers=1)
    assert isinstance(make_attention(preset("test"), 0), Attention)
    assert isinstance(make_attention(moe_cfg, 0), MLA)
    assert isinstance(make_ffn(moe_cfg, 0), MLP) and isinstance(make_ffn(moe_cfg, 1), MoE)


def test_dense_block_is_two_residual_branches():
    cfg = preset("test")
    block = randomise(Block(cfg, 0))
    x = torch.randn(2, 6, cfg.dim)
    cos, sin = torch.ones(6, cfg.hd), torch.zeros(6, cfg.hd)  # RoPE at angle 0
    out = block(x, cos, sin)
    assert isinstance(out, BlockOutput) and out.moe is None
    h = x + block.attn(block.attn_norm(x), cos, sin)
    torch.testing.assert_close(out.hidden, h + block.ffn(block.ffn_norm(h)))
    hidden, moe = out  # unpacks like a tuple
    assert hidden is out.hidden and moe is None


def test_moe_block_returns_the_routing_result():
    cfg = preset("test", n_routed_experts=4, n_activated_experts=2)
    block = randomise(Block(cfg, 0))
    x = torch.randn(2, 6, cfg.dim)
    out = block(x, torch.ones(6, cfg.hd), torch.zeros(6, cfg.hd))
    assert block.is_moe and isinstance(out.moe, MoEResult)
    assert out.moe.indices.shape == (2, 6, 2) and int(out.moe.counts.sum()) == 2 * 6 * 2
