"""helpers.interop.deepseek: DeepSeek-V3 both ways against transformers: the attention
(DeepseekV3Attention ↔ MLA, either RoPE layout), DeepSeekMoE (DeepseekV3MoE ↔ MoE, the installed
release's expert layout) and the whole DeepseekV3ForCausalLM; exact round trips and logits parity."""

import pytest
import torch
from testkit import randomise

import helpers
from helpers import Transformer, preset
from helpers.attention import rope_tables
from helpers.interop import (
    MOE_TABLE,
    copy_weights,
    deepseek_config,
    deepseek_hf_config,
    deepseek_to_hf,
    from_hf,
    mla_from_hf,
    mla_to_hf,
    moe_from_hf,
    moe_to_hf,
    tiny_deepseek_hf_config,
    to_hf,
)
from helpers.kv_cache import KVCache
from helpers.lessons.capstone import CPU_CONFIG, hf_generate
from helpers.mla import MLA
from helpers.moe import MoE

# transformers builds a zero-width shared-expert MLP when n_shared_experts=0 and warns while initialising it
pytestmark = pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")


# --- the attention: Hugging Face DeepseekV3Attention with copied weights (from test_mla) -----------
def hf_layer(q_lora_rank, rope_interleave):
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
        DeepseekV3Attention,
        DeepseekV3RotaryEmbedding,
    )

    hf_cfg = tiny_deepseek_hf_config(q_lora_rank=q_lora_rank, rope_interleave=rope_interleave)
    hf = randomise(DeepseekV3Attention(hf_cfg, layer_idx=1), std=0.1)
    return hf, DeepseekV3RotaryEmbedding(hf_cfg)


def hf_forward(hf, rotary, x, start=0, cache=None):
    B, T, _ = x.shape
    pos = torch.arange(start, start + T).expand(B, T)
    cos, sin = rotary(x, pos)
    S = start + T
    mask = None if T == 1 else torch.full((T, S), float("-inf")).triu(start + 1)[None, None]
    with torch.no_grad():
        return hf(x, (cos, sin), mask, cache=cache)[0]


@pytest.mark.parametrize("rope_interleave", [True, False])
@pytest.mark.parametrize("q_lora_rank", [48, None])
def test_layer_equals_hf_deepseek_v3_attention(q_lora_rank, rope_interleave):
    from transformers import DynamicCache

    hf, rotary = hf_layer(q_lora_rank, rope_interleave)
    ours = from_hf(hf)  # dispatches to mla_from_hf
    assert isinstance(ours, MLA) and ours.layer_idx == 1
    assert ours.q_lora_rank == (q_lora_rank or 0)
    cfg = hf.config
    cos, sin = rope_tables(cfg.qk_rope_head_dim, cfg.max_position_embeddings, 10000.0)
    x = torch.randn(2, 9, cfg.hidden_size)
    expected = hf_forward(hf, rotary, x)
    with torch.no_grad():
        for mode in ["absorbed", "latent", "kv"]:
            torch.testing.assert_close(ours(x, cos[:9], sin[:9], mode=mode), expected, atol=1e-5, rtol=1e-5)
        # cached decoding against HF's own cache: prefill 5, then 4 single steps
        hf_cache, our_cache = DynamicCache(config=cfg), KVCache(cfg.num_hidden_layers)
        theirs = [hf_forward(hf, rotary, x[:, :5], cache=hf_cache)]
        mine = [ours(x[:, :5], cos[:5], sin[:5], cache=our_cache)]
        for t in range(5, 9):
            theirs.append(hf_forward(hf, rotary, x[:, t:t + 1], start=t, cache=hf_cache))
            mine.append(ours(x[:, t:t + 1], cos[t:t + 1], sin[t:t + 1], cache=our_cache))
    torch.testing.assert_close(torch.cat(mine, 1), torch.cat(theirs, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(theirs, 1), expected, atol=1e-5, rtol=1e-5)


def test_interleaved_weights_need_the_permutation():
    """Copying an interleaved checkpoint as if it were rotate-half gives the wrong answer."""
    hf, rotary = hf_layer(48, rope_interleave=True)
    cfg = hf.config
    x = torch.randn(1, 9, cfg.hidden_size)
    cos, sin = rope_tables(cfg.qk_rope_head_dim, cfg.max_position_embeddings, 10000.0)
    cfg.rope_interleave = False  # lie about the layout: no permutation
    unpermuted = mla_from_hf(hf)
    cfg.rope_interleave = True
    with torch.no_grad():
        assert not torch.allclose(unpermuted(x, cos[:9], sin[:9]), hf_forward(hf, rotary, x), atol=1e-3)


def test_yarn_and_mismatched_configs_are_refused():
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Attention

    yarn = tiny_deepseek_hf_config(rope_parameters={
        "rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 16,
        "rope_theta": 10000.0, "mscale": 1.0, "mscale_all_dim": 1.0, "beta_fast": 32, "beta_slow": 1})
    with pytest.raises(ValueError, match="rope_type='yarn'.*mscale"):
        mla_from_hf(DeepseekV3Attention(yarn, layer_idx=0))
    hf, _ = hf_layer(48, True)
    with pytest.raises(ValueError, match="kv_lora_rank"):
        mla_from_hf(hf, cfg=preset("test", attn_type="mla", dim=64, q_lora_rank=48, kv_lora_rank=16))


# --- DeepSeekMoE: Hugging Face DeepseekV3MoE with copied weights (from test_moe) ---------------
MOE_CASES = {
    "groups-norm": dict(n_group=2, topk_group=1),
    "groups-unnormalised": dict(n_group=4, topk_group=2, norm_topk_prob=False, routed_scaling_factor=1.7),
    "16-experts-k3": dict(n_routed_experts=16, num_experts_per_tok=3, n_group=4, topk_group=2,
                          routed_scaling_factor=0.6, n_shared_experts=2),
    "no-groups": dict(n_group=1, topk_group=1),
}


def hf_moe(bias_mean: float = 0.0, **changes):
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE

    hcfg = tiny_deepseek_hf_config(**changes)
    hcfg._experts_implementation = "eager"
    hf = DeepseekV3MoE(hcfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(std=0.2)
        hf.gate.e_score_correction_bias.normal_(bias_mean, 0.1)  # nonzero, so the bias must be copied
    return hf


@pytest.mark.parametrize("bias_mean", [0.0, -1.0], ids=["bias~0", "bias~-1"])
@pytest.mark.parametrize("case", list(MOE_CASES))
def test_moe_equals_hugging_face(case, bias_mean):
    """Same output, experts and gates. With the bias around -1 almost every selection score is negative,
    so the group limit must mask dropped groups with -inf on both sides (a 0.0 fill would pick them)."""
    from helpers.moe import group_limit_mask

    hf = hf_moe(bias_mean, **MOE_CASES[case])
    ours = from_hf(hf)
    assert ours.cfg == deepseek_config(hf.config)
    assert ours.cfg.n_expert_groups == hf.config.n_group and ours.cfg.score_func == "sigmoid"
    torch.testing.assert_close(ours.gate.bias, hf.gate.e_score_correction_bias)
    x = torch.randn(2, 16, hf.config.hidden_size)
    with torch.no_grad():
        ours_out, hf_out = ours(x), hf(x)
        torch.testing.assert_close(ours_out.out, hf_out, atol=1e-5, rtol=1e-5)
        # the router alone: same experts and same gate values (HF's top-k is unsorted)
        _, hf_w, hf_i = hf.gate(x)
        r = ours.gate(x.view(-1, hf.config.hidden_size))
        hf_sorted, hf_order = hf_i.sort(-1)
        ours_sorted, ours_order = r.indices.sort(-1)
        assert torch.equal(ours_sorted, hf_sorted)
        torch.testing.assert_close(r.weights.gather(1, ours_order), hf_w.gather(1, hf_order))
    cfg = ours.cfg
    if bias_mean < 0 and cfg.n_limited_groups < cfg.n_expert_groups:  # teeth: a 0.0 fill would differ
        biased = r.scores + ours.gate.bias
        dropped = ~group_limit_mask(biased, cfg.n_expert_groups, cfg.n_limited_groups)
        zero_filled = biased.masked_fill(dropped, 0.0).topk(cfg.n_activated_experts).indices.sort(-1).values
        assert (zero_filled != ours_sorted).any(-1).float().mean() > 0.5
    # reusable with an explicit config (the full-model converter passes its own)
    again = moe_from_hf(hf, ours.cfg)
    with torch.no_grad():
        torch.testing.assert_close(again(x).out, hf_out, atol=1e-5, rtol=1e-5)


def test_hf_bias_matters():
    """Without copying e_score_correction_bias the selection differs: the parity test has teeth."""
    hf = hf_moe(n_group=2, topk_group=1)
    with torch.no_grad():
        hf.gate.e_score_correction_bias.normal_(std=0.5)
    ours = from_hf(hf)
    with torch.no_grad():
        ours.gate.bias.zero_()
    x = torch.randn(2, 16, hf.config.hidden_size)
    with torch.no_grad():
        assert not torch.allclose(ours(x).out, hf(x), atol=1e-4)


# --- the whole model: DeepseekV3ForCausalLM (from test_capstone) -------------------------------------
# Tiny DeepseekV3 configs covering what from_hf must accept (the base: q_lora_rank 48, 2 groups of 4
# experts with 1 kept, norm_topk_prob, routed_scaling_factor 2.5, one dense layer, interleaved RoPE).
MODEL_CASES = {
    "base": {},
    "no-q-lora-unnormed-rotate-half": dict(q_lora_rank=None, norm_topk_prob=False, rope_interleave=False,
                                           num_hidden_layers=3, first_k_dense_replace=0,
                                           routed_scaling_factor=1.5),
    "4-groups-tied-eps-theta": dict(n_routed_experts=16, n_group=4, topk_group=2, num_experts_per_tok=4,
                                    n_shared_experts=2, num_hidden_layers=3, first_k_dense_replace=2,
                                    tie_word_embeddings=True, rms_norm_eps=1e-5,
                                    rope_parameters={"rope_type": "default", "rope_theta": 50000.0}),
    "all-dense": dict(first_k_dense_replace=2),
}


def tiny_hf(seed: int = 0, **changes):
    """A random tiny DeepseekV3ForCausalLM whose routers carry a non-zero selection bias. Weights drawn
    with std 0.2 (not 0.02) give greedy sequences that wander instead of repeating one token, with top-2
    logit gaps ~1e-3, far above float32 noise."""
    from transformers import DeepseekV3ForCausalLM

    changes.setdefault("initializer_range", 0.2)
    torch.manual_seed(seed)
    hf = DeepseekV3ForCausalLM(tiny_deepseek_hf_config(**changes)).eval()
    with torch.no_grad():
        for m in hf.modules():
            if hasattr(m, "e_score_correction_bias"):
                m.e_score_correction_bias.normal_(0, 0.05)
    return hf


@pytest.mark.parametrize("case", MODEL_CASES)
def test_from_hf_logits_agree(case):
    hf = tiny_hf(**MODEL_CASES[case])
    ours = from_hf(hf)
    assert ours.config.attn_type == "mla" and ours.config.n_layers == hf.config.num_hidden_layers
    idx = torch.randint(0, 256, (2, 24))
    with torch.no_grad():
        theirs = hf(idx).logits
        helpers.assert_close(ours(idx), theirs, atol=1e-4, rtol=1e-4, name=case)
        assert theirs.std() > 0.05  # the logits carry signal, not a near-constant


def test_from_hf_builds_the_structure():
    hf = tiny_hf(**MODEL_CASES["4-groups-tied-eps-theta"])
    ours = from_hf(hf)
    cfg = ours.config
    moe_fields = (cfg.n_dense_layers, cfg.n_routed_experts, cfg.n_expert_groups, cfg.n_limited_groups)
    assert moe_fields == (2, 16, 4, 2)
    assert cfg.tie_embeddings and ours.head.weight is ours.tok_emb.weight
    assert (cfg.rope_theta, cfg.norm_eps, cfg.score_func) == (50000.0, 1e-5, "sigmoid")
    assert [type(layer.ffn).__name__ for layer in ours.layers] == ["MLP", "MLP", "MoE"]
    hf_bias = hf.model.layers[2].mlp.gate.e_score_correction_bias
    torch.testing.assert_close(ours.layers[2].ffn.gate.bias, hf_bias)
    dense = from_hf(tiny_hf(**MODEL_CASES["all-dense"])).config
    assert not dense.is_moe and dense.n_shared_experts == 0


@pytest.mark.parametrize("case", ["base",
                                  pytest.param("no-q-lora-unnormed-rotate-half", marks=pytest.mark.slow),
                                  pytest.param("4-groups-tied-eps-theta", marks=pytest.mark.slow)])
def test_greedy_tokens_equal_hf_generate(case):
    hf = tiny_hf(seed=1, **MODEL_CASES[case])
    ours = from_hf(hf)
    prompt = torch.randint(0, 256, (1, 8))
    theirs = hf_generate(hf, prompt, 32)
    assert theirs.shape == (1, 40)
    assert torch.equal(helpers.generate(ours, prompt, 32), theirs)  # cached (latent cache, absorbed)
    assert torch.equal(helpers.generate(ours, prompt, 32, use_cache=False), theirs)
    assert torch.equal(hf_generate(hf, prompt, 32, use_cache=False), theirs)
    assert len(set(theirs[0, 8:].tolist())) > 1  # not one token repeated: a real sequence to match


@pytest.mark.parametrize("interleave", [False, True])
def test_round_trip_to_hf(interleave):
    hf = tiny_hf(**MODEL_CASES["base"])
    ours = from_hf(hf)
    back = to_hf(ours, rope_interleave=interleave)
    assert type(back).__name__ == "DeepseekV3ForCausalLM" and back.config.rope_interleave == interleave
    idx = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(back(idx).logits, ours(idx), atol=1e-5, rtol=1e-5)
    if interleave:  # the checkpoint layout: the very same tensors as the original
        for (name, p), q in zip(hf.state_dict().items(), back.state_dict().values()):
            torch.testing.assert_close(p, q, msg=name)
    again = from_hf(back)
    for (name, p), q in zip(ours.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)


def test_to_hf_exports_our_own_model():
    cfg = CPU_CONFIG.replace(dim=48, n_heads=4, q_lora_rank=0, max_seq_len=64)
    ours = Transformer(cfg).eval()
    with torch.no_grad():
        for layer in ours.layers[cfg.n_dense_layers:]:
            layer.ffn.gate.bias.normal_(0, 0.05)
    hf = to_hf(ours)
    assert hf.config.first_k_dense_replace == 1 and hf.config.num_mtp_layers == 0  # MTP is not exported
    idx = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours(idx), atol=1e-5, rtol=1e-5)


def test_to_hf_dispatches_plain_models_to_llama():
    ours = Transformer(preset("test", n_kv_heads=2)).eval()
    hf = to_hf(ours)
    assert type(hf).__name__ == "LlamaForCausalLM"
    idx = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours(idx), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="n_routed_experts"):
        to_hf(Transformer(preset("test", n_routed_experts=4)))


@pytest.mark.parametrize("changes, field", [
    (dict(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                           "original_max_position_embeddings": 16}), "rope_type"),
    (dict(num_key_value_heads=2), "num_key_value_heads"),
    (dict(attention_bias=True), "attention_bias"),
    (dict(hidden_act="gelu"), "hidden_act"),
    (dict(n_routed_experts=8, n_group=8, topk_group=2), "n_group"),
])
def test_unsupported_configs_are_refused(changes, field):
    from transformers import DeepseekV3ForCausalLM

    cfg = tiny_deepseek_hf_config()
    for k, v in changes.items():  # set after construction: some would not even build in transformers
        setattr(cfg, k, v)
    hf = DeepseekV3ForCausalLM(tiny_deepseek_hf_config()).eval()
    hf.config = cfg
    with pytest.raises(ValueError, match=field):
        from_hf(hf)


def test_unexportable_configs_are_refused():
    with pytest.raises(ValueError, match="score_func"):
        deepseek_hf_config(CPU_CONFIG.replace(score_func="softmax"))
    with pytest.raises(ValueError, match="n_expert_groups"):
        deepseek_hf_config(CPU_CONFIG.replace(n_expert_groups=8, n_limited_groups=2))


# --- ours → Hugging Face → ours: exact round trips, logits parity, strongly negative router bias ----
OUR_CASES = {
    "moe-groups-q-lora-eps": dict(q_lora_rank=24, n_layers=3, n_dense_layers=1, n_routed_experts=8,
                                  n_expert_groups=2, n_limited_groups=1, n_shared_experts=1, route_scale=2.5,
                                  norm_eps=1e-5),
    "moe-no-q-lora-no-shared-tied": dict(n_routed_experts=4, n_shared_experts=0, norm_topk_prob=False,
                                         route_scale=1.5, tie_embeddings=True),
    "dense-with-mtp": dict(q_lora_rank=16, mtp_depth=1),
}


def our_model(bias_mean: float = 0.0, **changes) -> Transformer:
    """A randomised MLA (+ DeepSeekMoE) model of ours whose routers carry a selection bias around
    ``bias_mean``."""
    cfg = preset("test", attn_type="mla", score_func="sigmoid", balance="loss_free", moe_inter_dim=16,
                 **changes)
    model = randomise(Transformer(cfg), std=0.1)
    with torch.no_grad():
        for layer in model.layers:
            if isinstance(layer.ffn, MoE):
                layer.ffn.gate.bias.normal_(bias_mean, 0.05)
    return model


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module, skip: str = "mtp.") -> None:
    """The same names and bit-identical tensors (names starting with ``skip`` left out)."""
    sa = {k: v for k, v in a.state_dict().items() if not k.startswith(skip)}
    sb = {k: v for k, v in b.state_dict().items() if not k.startswith(skip)}
    assert list(sa) == list(sb)
    for name, p in sa.items():
        assert torch.equal(p, sb[name]), name


@pytest.mark.parametrize("interleave", [False, True], ids=["rotate-half", "interleaved"])
@pytest.mark.parametrize("case", OUR_CASES)
def test_deepseek_to_hf_round_trip_is_exact(case, interleave):
    ours = our_model(**OUR_CASES[case])
    cfg = ours.config
    hf = deepseek_to_hf(ours, rope_interleave=interleave)
    assert hf.config.rope_interleave == interleave and hf.config.num_mtp_layers == 0
    if cfg.is_moe:  # the installed release's expert layout (fused 3-D tensors in transformers >= 5)
        experts = hf.model.layers[-1].mlp.experts
        assert hasattr(experts, "gate_up_proj") or isinstance(experts, torch.nn.ModuleList)
    again = from_hf(hf, mtp_depth=cfg.mtp_depth)
    if cfg.is_moe:
        assert again.config == cfg  # every field read back
    assert_same_state(ours, again)
    for mine, back in zip(ours.layers, again.layers):
        assert back.attn.kv_norm.eps == mine.attn.kv_norm.eps == cfg.norm_eps
    assert_same_state(hf, to_hf(again, rope_interleave=interleave))  # and HF → ours → HF


@pytest.mark.parametrize("bias_mean", [0.0, -1.0], ids=["bias~0", "bias~-1"])
@pytest.mark.parametrize("case", OUR_CASES)
def test_deepseek_to_hf_logits_agree(case, bias_mean):
    ours = our_model(bias_mean, **OUR_CASES[case]).eval()
    hf = to_hf(ours, rope_interleave=True)
    if ours.config.is_moe:
        assert hf.model.layers[-1].mlp.gate.e_score_correction_bias.max() < bias_mean + 0.5
    idx = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        theirs = hf(idx).logits
        torch.testing.assert_close(theirs, ours(idx), atol=1e-5, rtol=1e-5)
        assert theirs.std() > 0.05  # the logits carry signal


def test_from_hf_logits_agree_with_strongly_negative_bias():
    """Every biased score below zero: a group mask that filled with 0 instead of -inf would pick the
    experts of the groups it drops (older transformers releases did); both sides must agree."""
    hf = tiny_hf(**MODEL_CASES["4-groups-tied-eps-theta"])
    with torch.no_grad():
        for m in hf.modules():
            if hasattr(m, "e_score_correction_bias"):
                m.e_score_correction_bias.normal_(-1.0, 0.05)
    ours = from_hf(hf)
    hf_bias = hf.model.layers[2].mlp.gate.e_score_correction_bias
    assert hf_bias.max() < -0.5
    torch.testing.assert_close(ours.layers[2].ffn.gate.bias, hf_bias)
    idx = torch.randint(0, 256, (2, 24))
    with torch.no_grad():
        helpers.assert_close(ours(idx), hf(idx).logits, atol=1e-4, rtol=1e-4, name="bias~-1")


@pytest.mark.parametrize("bias_mean", [0.0, -1.0], ids=["bias~0", "bias~-1"])
def test_moe_to_hf_round_trip_and_parity(bias_mean):
    from helpers.moe import group_limit_mask

    cfg = deepseek_config(tiny_deepseek_hf_config(**MOE_CASES["16-experts-k3"]))
    ours = randomise(MoE(cfg))
    with torch.no_grad():
        ours.gate.bias.normal_(bias_mean, 0.05)
    hf = moe_to_hf(ours)
    assert type(hf).__name__ == "DeepseekV3MoE"
    torch.testing.assert_close(hf.gate.e_score_correction_bias, ours.gate.bias)
    x = torch.randn(2, 16, cfg.dim)
    with torch.no_grad():
        torch.testing.assert_close(hf(x), ours(x).out, atol=1e-5, rtol=1e-5)
        r = ours.gate(x.view(-1, cfg.dim))
    assert_same_state(ours, moe_from_hf(hf, cfg))
    # teeth for the negative case: filling the dropped groups with 0 would change the selection
    biased = r.scores + ours.gate.bias
    dropped = ~group_limit_mask(biased, cfg.n_expert_groups, cfg.n_limited_groups)
    zero_filled = biased.masked_fill(dropped, 0.0).topk(cfg.n_activated_experts).indices.sort(-1).values
    changed = (zero_filled != r.indices.sort(-1).values).any(-1).float().mean()
    assert (changed > 0.5) if bias_mean < 0 else (changed == 0)


def test_older_module_list_expert_layout_converts_too():
    """transformers < 5 keeps a layer's experts as a ModuleList of MLPs: the same table copies our
    experts into that layout and back, expert by expert, equal to the slices of the fused tensors."""
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MLP

    fused = hf_moe(**MOE_CASES["groups-norm"])
    ours = moe_from_hf(fused)
    old = hf_moe(**MOE_CASES["groups-norm"])
    I = old.config.moe_intermediate_size
    old.experts = torch.nn.ModuleList(DeepseekV3MLP(old.config, intermediate_size=I)
                                      for _ in range(old.config.n_routed_experts))
    copy_weights(old, ours.state_dict(), MOE_TABLE, to_hf=True)
    for e, expert in enumerate(old.experts):
        assert torch.equal(expert.gate_proj.weight, fused.experts.gate_up_proj[e, :I])
        assert torch.equal(expert.up_proj.weight, fused.experts.gate_up_proj[e, I:])
        assert torch.equal(expert.down_proj.weight, fused.experts.down_proj[e])
    assert_same_state(ours, moe_from_hf(old, ours.cfg))


@pytest.mark.parametrize("rope_interleave", [True, False])
@pytest.mark.parametrize("q_lora_rank", [24, 0])
def test_mla_to_hf_round_trip_and_parity(q_lora_rank, rope_interleave):
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3RotaryEmbedding

    cfg = preset("test", attn_type="mla", q_lora_rank=q_lora_rank, norm_eps=1e-5)
    ours = randomise(MLA(cfg, layer_idx=1), std=0.1)
    hf = mla_to_hf(ours, rope_interleave=rope_interleave)
    assert hf.layer_idx == 1 and hf.config.rope_interleave == rope_interleave
    assert hf.kv_a_layernorm.variance_epsilon == 1e-5
    cos, sin = rope_tables(cfg.qk_rope_head_dim, cfg.max_seq_len, cfg.rope_theta)
    x = torch.randn(2, 9, cfg.dim)
    with torch.no_grad():
        torch.testing.assert_close(hf_forward(hf, DeepseekV3RotaryEmbedding(hf.config), x),
                                   ours(x, cos[:9], sin[:9]), atol=1e-5, rtol=1e-5)
    back = mla_from_hf(hf)
    assert_same_state(ours, back)
    assert back.kv_norm.eps == 1e-5 and back.layer_idx == 1
