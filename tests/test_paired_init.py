"""Paired initial weights: shared parameters start identical in arms that differ only in attention."""

import pytest
import torch

from helpers.config import ModelConfig
from helpers.experiments.paired_init import STD, name_seed, paired_init
from helpers.model import Transformer

BASE = ModelConfig(dim=32, n_layers=2, n_heads=4, head_dim=4, inter_dim=48, max_seq_len=32)
MLA = dict(attn_type="mla", qk_nope_head_dim=4, v_head_dim=4, qk_rope_head_dim=2, q_lora_rank=0,
           kv_lora_rank=6)


def _built(cfg, seed, global_seed):
    torch.manual_seed(global_seed)  # the global stream must not matter
    return paired_init(Transformer(cfg), seed)


def _attention(name):
    return ".attn." in name


@pytest.mark.parametrize("other", [dict(n_kv_heads=2), dict(n_kv_heads=1), MLA])
def test_arms_share_every_non_attention_weight(other):
    a, b = _built(BASE, 3, 0), _built(BASE.replace(**other), 3, 1)
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    shared = [n for n in pa if not _attention(n)]
    assert shared and all(n in pb for n in shared)
    for n in shared:
        torch.testing.assert_close(pa[n], pb[n], rtol=0, atol=0, msg=n)


def test_without_it_the_arms_do_not_share():
    """The problem it solves: one global stream, a narrower wk, every later weight shifted."""
    torch.manual_seed(3)
    a = Transformer(BASE)
    torch.manual_seed(3)
    b = Transformer(BASE.replace(n_kv_heads=1))
    assert not torch.equal(a.head.weight, b.head.weight)  # built last: shifted by the narrower wk


def test_same_name_same_shape_attention_weights_match_too():
    a, b = _built(BASE, 5, 0), _built(BASE.replace(n_kv_heads=2), 5, 0)
    wq = [n for n, _ in a.named_parameters() if n.endswith("attn.wq.weight")]
    assert wq
    for n in wq:
        torch.testing.assert_close(dict(a.named_parameters())[n], dict(b.named_parameters())[n])


def test_distribution_matches_the_default_init():
    torch.manual_seed(0)
    default = Transformer(BASE)
    paired = _built(BASE, 0, 0)
    for (n, p), (_, q) in zip(default.named_parameters(), paired.named_parameters()):
        if p.ndim >= 2:
            assert abs(q.std().item() - p.std().item()) < 0.25 * STD, n
            assert abs(q.mean().item()) < 0.2 * STD, n
        else:  # norm gains and biases: deterministic, identical
            torch.testing.assert_close(p, q, msg=n)
    big = torch.cat([q.flatten() for q in paired.parameters() if q.ndim >= 2])
    assert abs(big.std().item() - STD) < 0.02 * STD


def test_different_seeds_differ_and_the_same_seed_repeats():
    a, b, c = _built(BASE, 0, 0), _built(BASE, 1, 0), _built(BASE, 0, 7)
    for (n, p), (_, q), (_, r) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        torch.testing.assert_close(p, r, rtol=0, atol=0, msg=n)
        if p.ndim >= 2:
            assert not torch.equal(p, q), n


def test_tied_head_is_drawn_once():
    m = _built(BASE.replace(tie_embeddings=True), 0, 0)
    assert m.head.weight is m.tok_emb.weight
    assert m.tok_emb.weight.std().item() == pytest.approx(STD, rel=0.1)


def test_moe_router_is_paired_too():
    moe = dict(n_routed_experts=4, n_activated_experts=2, moe_inter_dim=16)
    a, b = _built(BASE.replace(**moe), 2, 0), _built(BASE.replace(n_kv_heads=1, **moe), 2, 9)
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    for n in pa:
        if not _attention(n):
            torch.testing.assert_close(pa[n], pb[n], rtol=0, atol=0, msg=n)


def test_name_seed_is_stable_and_checked():
    assert name_seed(0, "head.weight") == name_seed(0, "head.weight") != name_seed(1, "head.weight")
    assert name_seed(0, "head.weight") != name_seed(0, "tok_emb.weight")
    with pytest.raises(ValueError):
        name_seed(-1, "head.weight")
