"""helpers.interop.deepseek_v32: DeepSeek-V3.2 (MLA + lightning indexer) both ways against transformers:
the indexer (DeepseekV32Indexer ↔ Indexer), the whole DeepseekV32ForCausalLM (logits, greedy tokens
cached and uncached, exact round trips) and the configs we refuse.

Top-k sets are compared only where the k-th index score is not tied (``tied_at_k == 0``, asserted for
the models; row by row for the lone indexer): at a tie ``torch.topk`` (Hugging Face) picks arbitrarily,
depending on the row's length, while ``select_topk`` gives the tie to the earlier position. Hugging
Face's default init with 2 indexer heads makes such ties common (many scores are exactly 0: every head's
ReLU is 0), so these configs use 8 heads."""

import dataclasses

import pytest
import torch
from testkit import randomise

import helpers
from helpers import Transformer, preset
from helpers.attention import rope_tables
from helpers.dsa import (
    Indexer,
    SparseMLA,
    dsa_layers,
    record_stats,
    select_topk,
    set_dsa_phase,
    set_index_topk,
    tied_at_k,
)
from helpers.interop import dsa_config, dsa_hf_config, from_hf, indexer_from_hf, tiny_dsa_hf_config, to_hf
from helpers.lessons.capstone import hf_generate
from helpers.moe import MoE

# transformers builds a zero-width shared-expert MLP when n_shared_experts=0 and warns while initialising it
pytestmark = pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")


def chosen_causal(idx: torch.Tensor) -> list[list[int]]:
    """Per query row t, the sorted selected positions s <= t (a row that sees fewer than k positions also
    "selects" masked future ones, differently on each side)."""
    B, T, _ = idx.shape
    return [sorted(s for s in idx[b, t].tolist() if s <= t) for b in range(B) for t in range(T)]


# --- one indexer: DeepseekV32Indexer with copied weights -------------------------------------------
@pytest.mark.parametrize("topk, T", [(4, 16), (6, 24)])
def test_indexer_selects_what_hf_selects(topk, T):
    from transformers.models.deepseek_v32.modeling_deepseek_v32 import (
        DeepseekV32Indexer,
        DeepseekV32RotaryEmbedding,
    )

    hf_cfg = tiny_dsa_hf_config(index_n_heads=8, index_topk=topk)
    hf = randomise(DeepseekV32Indexer(hf_cfg, layer_idx=0))  # k_norm weight and bias in [0.5, 1.5]
    ours = from_hf(hf)  # dispatches to indexer_from_hf
    assert isinstance(ours, Indexer) and ours.k_norm.eps == hf.k_norm.eps
    for name, p in hf.state_dict().items():
        assert torch.equal(ours.state_dict()[name], p), name
    B = 2
    x, q_resid = torch.randn(B, T, hf_cfg.hidden_size), torch.randn(B, T, hf_cfg.q_lora_rank)
    pos = torch.arange(T).expand(B, T)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    mask = torch.zeros(B, T, T).masked_fill(future, float("-inf"))  # 3-D, additive, as HF passes it
    with torch.no_grad():
        theirs = hf(x, q_resid, DeepseekV32RotaryEmbedding(hf_cfg)(x, pos), mask, pos)  # (B, T, k) indices
        cos, sin = rope_tables(hf_cfg.qk_rope_head_dim, T, hf_cfg.rope_parameters["rope_theta"])
        scores = ours(x, q_resid, cos, sin, ours.keys(x, cos, sin))
    # compare the rows whose top-k set is unique (a tie at the k-th place, all heads' ReLU 0 at several
    # positions, is rare with 8 heads but possible; there each side may choose differently)
    kth = scores.topk(topk, dim=-1).values[..., -1:]
    tied = (((scores >= kth).sum(-1, keepdim=True) > topk) & kth.isfinite()).flatten().tolist()
    assert sum(tied) == tied_at_k(scores, topk) <= 0.1 * B * T
    ours_sets, hf_sets = chosen_causal(select_topk(scores, topk)), chosen_causal(theirs.long())
    assert [a for a, t in zip(ours_sets, tied) if not t] == [h for h, t in zip(hf_sets, tied) if not t]
    # the k_norm bias is copied and matters: without it some selections change
    again = indexer_from_hf(hf)
    with torch.no_grad():
        again.k_norm.bias.zero_()
        unbiased = again(x, q_resid, cos, sin, again.keys(x, cos, sin))
    assert chosen_causal(select_topk(unbiased, topk)) != chosen_causal(theirs.long())


# --- the whole model: DeepseekV32ForCausalLM -------------------------------------------------------
# Tiny V3.2 configs whose top-k is smaller than the context (the base: hidden 64, 2 layers, q_lora_rank
# 48, the first layer dense, 2 groups of 4 experts with 1 kept, index_head_dim 16, RoPE part 8).
MODEL_CASES = {
    "topk4-moe-2-groups": (dict(index_n_heads=8, index_topk=4), 20),
    "topk6-all-dense": (dict(index_n_heads=8, index_topk=6, first_k_dense_replace=2), 24),
    "topk6-moe-4-groups-3-layers": (dict(index_n_heads=8, index_topk=6, index_head_dim=24,
                                         num_hidden_layers=3, n_routed_experts=16, n_group=4, topk_group=2,
                                         num_experts_per_tok=3), 32),
}


def tiny_hf(seed: int = 0, **changes):
    """A DeepseekV32ForCausalLM with Hugging Face's init, every norm weight and bias (the indexer's
    k_norm too) moved off its default, and a non-zero router selection bias."""
    from transformers import DeepseekV32ForCausalLM

    torch.manual_seed(seed)
    hf = DeepseekV32ForCausalLM(tiny_dsa_hf_config(**changes)).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name or "bias" in name:
                p.add_(torch.randn_like(p) * 0.1)
        for m in hf.modules():
            if hasattr(m, "e_score_correction_bias"):
                m.e_score_correction_bias.normal_(0, 0.05)
    return hf


def no_ties(model: Transformer, idx: torch.Tensor) -> bool:
    """No k-th place tie in any layer's index scores for ``idx`` (ours equal HF's scores, see above)."""
    record_stats(model)
    with torch.no_grad():
        model(idx)
    ties = sum(tied_at_k(m.stats.index_scores, m.index_topk) for m in dsa_layers(model))
    record_stats(model, on=False)
    return ties == 0


@pytest.mark.parametrize("case", MODEL_CASES)
def test_from_hf_logits_agree(case):
    changes, T = MODEL_CASES[case]
    hf = tiny_hf(**changes)
    ours = from_hf(hf)
    cfg = ours.config
    assert cfg.is_sparse_attention and cfg.n_layers == hf.config.num_hidden_layers
    assert (cfg.index_n_heads, cfg.index_head_dim, cfg.index_topk) == (8, changes.get("index_head_dim", 16),
                                                                      changes["index_topk"])
    assert cfg.is_moe == (case != "topk6-all-dense")
    assert all(isinstance(layer.attn, SparseMLA) for layer in ours.layers)
    if cfg.is_moe:
        hf_bias = hf.model.layers[-1].mlp.gate.e_score_correction_bias
        torch.testing.assert_close(ours.layers[-1].ffn.gate.bias, hf_bias)
        assert isinstance(ours.layers[-1].ffn, MoE) and cfg.n_expert_groups == hf.config.n_group > 1
    hf_k_norm = hf.model.layers[0].self_attn.indexer.k_norm
    torch.testing.assert_close(ours.layers[0].attn.indexer.k_norm.bias, hf_k_norm.bias)
    idx = torch.randint(0, 256, (2, T))
    assert no_ties(ours, idx)
    with torch.no_grad():
        theirs = hf(idx).logits
        for path in ["gather", "masked"]:
            set_dsa_phase(ours, "inference", path)
            helpers.assert_close(ours(idx), theirs, atol=1e-4, rtol=1e-4, name=f"{case} {path}")
        # the selection bites: attending densely (k = T) gives other logits
        set_index_topk(ours, T)
        assert not torch.allclose(ours(idx), theirs, atol=1e-3)


@pytest.mark.parametrize("case", ["topk4-moe-2-groups", "topk6-all-dense",
                                  pytest.param("topk6-moe-4-groups-3-layers", marks=pytest.mark.slow)])
def test_greedy_tokens_equal_hf_generate(case):
    changes, T = MODEL_CASES[case]
    hf = tiny_hf(seed=1, **changes)
    ours = from_hf(hf)
    prompt, n = torch.randint(0, 256, (1, 8)), T - 8
    theirs = hf_generate(hf, prompt, n)
    assert theirs.shape == (1, T) and len(set(theirs[0, 8:].tolist())) > 1  # a real sequence to match
    assert no_ties(ours, theirs)  # every prefill and decode row of the sequence has a unique top-k
    assert torch.equal(helpers.generate(ours, prompt, n), theirs)  # cached: latent + indexer-key cache
    assert torch.equal(helpers.generate(ours, prompt, n, use_cache=False), theirs)
    assert torch.equal(hf_generate(hf, prompt, n, use_cache=False), theirs)


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """The same names and bit-identical tensors (MTP modules left out)."""
    sa = {k: v for k, v in a.state_dict().items() if not k.startswith("mtp.")}
    sb = {k: v for k, v in b.state_dict().items() if not k.startswith("mtp.")}
    assert list(sa) == list(sb)
    for name, p in sa.items():
        assert torch.equal(p, sb[name]), name


@pytest.mark.parametrize("case", ["topk4-moe-2-groups", "topk6-all-dense"])
def test_round_trip_through_ours_is_exact(case):
    changes, T = MODEL_CASES[case]
    hf = tiny_hf(**changes)
    ours = from_hf(hf)
    back = to_hf(ours)  # dispatches to dsa_to_hf
    assert type(back).__name__ == "DeepseekV32ForCausalLM"
    assert back.config.mlp_layer_types == hf.config.mlp_layer_types
    assert_same_state(hf, back)  # the checkpoint's own (interleaved) RoPE rows, bit for bit
    assert_same_state(ours, from_hf(back))
    idx = torch.randint(0, 256, (2, T))
    with torch.no_grad():
        assert torch.equal(back(idx).logits, hf(idx).logits)


OUR_CASES = {
    "moe-sigmoid-groups": dict(n_routed_experts=8, n_expert_groups=2, n_limited_groups=1, n_shared_experts=1,
                               n_dense_layers=1, n_layers=3, score_func="sigmoid", balance="loss_free",
                               moe_inter_dim=16, route_scale=2.5),
    "dense": dict(),
}


@pytest.mark.parametrize("case", OUR_CASES)
def test_our_dsa_model_exports(case):
    cfg = preset("test", attn_type="mla", q_lora_rank=24, index_n_heads=8, index_topk=4, **OUR_CASES[case])
    ours = randomise(Transformer(cfg), std=0.1)
    with torch.no_grad():
        for layer in ours.layers:
            if isinstance(layer.ffn, MoE):
                layer.ffn.gate.bias.normal_(0, 0.05)
    hf = to_hf(ours)
    assert hf.config.first_k_dense_replace == (cfg.n_dense_layers if cfg.is_moe else cfg.n_layers)
    again = from_hf(hf)
    assert_same_state(ours, again)
    # every field read back (a dense model's router fields are never read and come back as V3's)
    names = [f.name for f in dataclasses.fields(cfg)]
    differs = {n for n in names if getattr(again.config, n) != getattr(cfg, n)}
    assert differs <= (set() if cfg.is_moe else {"n_activated_experts", "score_func", "balance"})
    idx = torch.randint(0, cfg.vocab_size, (2, 20))
    assert no_ties(ours, idx)
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours(idx), atol=1e-5, rtol=1e-5)


# --- what we refuse, by field name ------------------------------------------------------------------
@pytest.mark.parametrize("changes, field", [
    (dict(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                           "original_max_position_embeddings": 16}), "rope_type"),
    (dict(mlp_layer_types=["sparse", "sparse"]), "mlp_layer_types"),
    (dict(attention_bias=True), "attention_bias"),
    (dict(q_lora_rank=0), "q_lora_rank"),
    (dict(q_lora_rank=None), "q_lora_rank"),
    (dict(index_head_dim=4), "index_head_dim"),
    (dict(hidden_act="gelu"), "hidden_act"),
    (dict(num_key_value_heads=2), "num_key_value_heads"),
])
def test_unsupported_configs_are_refused(changes, field):
    from transformers import DeepseekV32ForCausalLM

    hf = DeepseekV32ForCausalLM(tiny_dsa_hf_config()).eval()
    cfg = tiny_dsa_hf_config()
    for k, v in changes.items():  # set after construction, past transformers' validators (q_lora_rank=None)
        vars(cfg)[k] = v
    hf.config = cfg
    with pytest.raises(ValueError, match=field):
        from_hf(hf)
    with pytest.raises(ValueError, match=field):
        dsa_config(cfg)


def test_unexportable_configs_are_refused():
    with pytest.raises(ValueError, match="DSA config"):
        dsa_hf_config(preset("test", attn_type="mla", q_lora_rank=24))
    with pytest.raises(ValueError, match="score_func"):
        dsa_hf_config(preset("test", attn_type="mla", q_lora_rank=24, index_n_heads=4, n_routed_experts=4))
