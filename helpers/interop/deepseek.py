"""DeepSeek-V3 both ways: our MLA (+ DeepSeekMoE) ``Transformer`` ↔ ``DeepseekV3ForCausalLM``, and the
single layers (``DeepseekV3Attention`` ↔ our ``MLA``, ``DeepseekV3MoE`` ↔ our ``MoE``).

One name table serves every direction and level: MLA's weights (RoPE rows de-interleaved when the
checkpoint layout ``rope_interleave`` is on), the MoE's router, experts and shared experts, inside the
decoder skeleton shared with Llama. The table names one expert at a time: transformers >= 5 fuses a
layer's experts into two 3-D tensors, which the copy loop (``common.copy_weights``) splits into the
per-expert names of older releases on the way in and fuses again on the way out.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..model import Transformer
from .common import (
    DECODER_FIELDS,
    EXPORTERS,
    Rule,
    check_fields,
    copy_weights,
    decoder_table,
    exporter,
    plain_rope_theta,
    read_config,
    register,
    swiglu,
    write_config,
)

# Hugging Face DeepseekV3Config field → our ModelConfig field (DeepSeek's own ModelArgs names).
DEEPSEEK_FIELDS = {
    **DECODER_FIELDS, "moe_intermediate_size": "moe_inter_dim", "n_shared_experts": "n_shared_experts",
    "n_routed_experts": "n_routed_experts", "routed_scaling_factor": "route_scale",
    "kv_lora_rank": "kv_lora_rank", "qk_rope_head_dim": "qk_rope_head_dim",
    "v_head_dim": "v_head_dim", "qk_nope_head_dim": "qk_nope_head_dim",
    "n_group": "n_expert_groups", "topk_group": "n_limited_groups",
    "num_experts_per_tok": "n_activated_experts", "first_k_dense_replace": "n_dense_layers",
    "norm_topk_prob": "norm_topk_prob",
}
YARN = (": YaRN (DeepSeek-V3's long-context setting) changes the RoPE frequencies and multiplies the "
        "softmax scale by mscale², which our MLA does not")


# --- configs --------------------------------------------------------------------------------------
def deepseek_config(hf_cfg, **overrides) -> ModelConfig:
    """Our ``ModelConfig`` for a Hugging Face ``DeepseekV3Config``: MLA attention, sigmoid-scored
    DeepSeekMoE with aux-loss-free balancing. Unsupported settings raise ``ValueError`` naming the field.
    (``rope_interleave`` is handled by the weight converters, which permute the RoPE rows.)"""
    check_fields(hf_cfg, attention_bias=False, hidden_act="silu", pretraining_tp=1)
    fixed = dict(q_lora_rank=hf_cfg.q_lora_rank or 0, n_routed_experts=hf_cfg.n_routed_experts or 0,
                 n_shared_experts=hf_cfg.n_shared_experts or 0, attn_type="mla", score_func="sigmoid",
                 balance="loss_free", n_kv_heads=None, head_dim=None)
    return read_config(hf_cfg, DEEPSEEK_FIELDS, YARN, **{**fixed, **overrides})


def tiny_deepseek_hf_config(**changes):
    """A tiny ``transformers.DeepseekV3Config`` (float32-friendly sizes) for peer checks."""
    from transformers import DeepseekV3Config

    base = dict(vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1,
                n_routed_experts=8, routed_scaling_factor=2.5, kv_lora_rank=32, q_lora_rank=48,
                qk_rope_head_dim=8, v_head_dim=16, qk_nope_head_dim=16, n_group=2, topk_group=1,
                num_experts_per_tok=2, first_k_dense_replace=1, norm_topk_prob=True,
                max_position_embeddings=64, rope_interleave=True, bos_token_id=None,
                eos_token_id=None, pad_token_id=None, tie_word_embeddings=False)
    base.update(changes)
    cfg = DeepseekV3Config(**base)
    cfg._attn_implementation = "eager"
    return cfg


def check_deepseek_supported(hf_cfg) -> None:
    """Raise ``ValueError`` naming the field if a ``DeepseekV3Config`` asks for something our model does
    not implement: RoPE scaling (YaRN, DeepSeek-V3's long-context setting), K/V head repetition, biases,
    another activation, another router (the older remote-code configs' ``scoring_func``/``topk_method``),
    or groups too small for V3's top-2 group score."""
    plain_rope_theta(hf_cfg, YARN)
    check_fields(hf_cfg, attention_bias=False, hidden_act="silu", pretraining_tp=1,
                 scoring_func="sigmoid", topk_method="noaux_tc")
    kv_heads = getattr(hf_cfg, "num_key_value_heads", None)
    if kv_heads not in (None, hf_cfg.num_attention_heads):
        raise ValueError(f"Hugging Face config field num_key_value_heads={kv_heads} is not supported: MLA "
                         f"needs it equal to num_attention_heads={hf_cfg.num_attention_heads} (every head "
                         "reads the shared latent)")
    n_moe = hf_cfg.num_hidden_layers - (hf_cfg.first_k_dense_replace or 0)
    if n_moe > 0:
        E, groups = hf_cfg.n_routed_experts or 0, hf_cfg.n_group or 1
        if E <= 0:
            raise ValueError(f"Hugging Face config field n_routed_experts={E} must be positive when "
                             f"first_k_dense_replace={hf_cfg.first_k_dense_replace} leaves MoE layers")
        if E % groups or E // groups < 2:
            raise ValueError(f"Hugging Face config fields n_routed_experts={E}, n_group={groups}: each group "
                             "needs at least 2 experts (a group is scored by its top-2 experts)")


def deepseek_hf_config(cfg: ModelConfig, rope_interleave: bool = False):
    """A ``transformers.DeepseekV3Config`` with the sizes of our MLA (+ DeepSeekMoE) config.

    ``rope_interleave=False`` keeps our rotate-half RoPE layout; ``True`` gives DeepSeek's checkpoint
    layout (``to_hf`` then interleaves the RoPE rows). MTP modules have no place in it (see ``to_hf``)."""
    from transformers import DeepseekV3Config

    if cfg.attn_type != "mla":
        raise ValueError(f"deepseek_hf_config needs attn_type='mla', got attn_type={cfg.attn_type!r} "
                         "(plain MHA/GQA models export as Llama: llama_hf_config)")
    if cfg.is_moe and cfg.score_func != "sigmoid":
        raise ValueError(f"score_func={cfg.score_func!r} cannot be exported: DeepseekV3TopkRouter scores "
                         "with a sigmoid")
    E = cfg.n_routed_experts
    if cfg.is_moe and cfg.n_expert_groups > 1 and E // cfg.n_expert_groups < 2:
        raise ValueError(f"n_routed_experts={E}, n_expert_groups={cfg.n_expert_groups}: Hugging Face scores "
                         "a group by its top-2 experts, so each group needs at least 2")
    if cfg.is_moe and cfg.n_expert_groups == 1 and E < 2:
        raise ValueError(f"n_routed_experts={E}: Hugging Face's router needs at least 2 experts per group")
    dense = {} if cfg.is_moe else dict(  # every layer dense: the MoE fields are never read
        n_routed_experts=2, n_shared_experts=1, n_group=1, topk_group=1, num_experts_per_tok=1,
        first_k_dense_replace=cfg.n_layers)
    hf_cfg = write_config(DeepseekV3Config, cfg, DEEPSEEK_FIELDS, num_key_value_heads=cfg.n_heads,
                          q_lora_rank=cfg.q_lora_rank or None, rope_interleave=rope_interleave,
                          num_mtp_layers=0, **dense)
    hf_cfg._attn_implementation = "eager"
    return hf_cfg


# --- the name table -------------------------------------------------------------------------------
def rope_deinterleave_perm(rope_dim: int) -> torch.Tensor:
    """Row order that turns DeepSeek's interleaved RoPE pairs (x0, x1), (x2, x3), ... into our
    rotate-half layout (x0, x2, ..., x1, x3, ...): exactly the reordering HF applies to q_pe and k_pe
    before rotating when ``rope_interleave=True``. Permuting the weight rows once does it for free."""
    return torch.cat([torch.arange(0, rope_dim, 2), torch.arange(1, rope_dim, 2)])


def mla_table(cfg: ModelConfig, rope_interleave: bool) -> list[Rule]:
    """MLA's weights, relative to the attention module. With ``rope_interleave`` the RoPE rows are
    de-interleaved: per head in the query up-projection, the last Dr rows of ``kv_a_proj_with_mqa``."""
    q_rows = kv_rows = None
    if rope_interleave:
        Dn, Dr, Dc = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.kv_lora_rank
        perm = rope_deinterleave_perm(Dr)
        head = torch.cat([torch.arange(Dn), Dn + perm])  # one head's rows: [nope; RoPE de-interleaved]
        q_rows = (torch.arange(cfg.n_heads)[:, None] * (Dn + Dr) + head).flatten()  # (H·(Dn+Dr),)
        kv_rows = torch.cat([torch.arange(Dc), Dc + perm])  # [latent rows; RoPE key rows]
    return [Rule("wq.weight", "q_proj.weight", q_rows), Rule("wq_a.weight", "q_a_proj.weight"),
            Rule("q_norm.weight", "q_a_layernorm.weight"), Rule("wq_b.weight", "q_b_proj.weight", q_rows),
            Rule("wkv_a.weight", "kv_a_proj_with_mqa.weight", kv_rows),
            Rule("kv_norm.weight", "kv_a_layernorm.weight"), Rule("wkv_b.weight", "kv_b_proj.weight"),
            Rule("wo.weight", "o_proj.weight")]


# DeepSeekMoE's weights, relative to the MoE module: router, its selection bias, experts, shared experts.
MOE_TABLE = [Rule("gate.weight", "gate.weight"), Rule("gate.bias", "gate.e_score_correction_bias"),
             *swiglu("experts.{e}.", "experts.{e}."), *swiglu("shared_experts.", "shared_experts.")]
MLA_EPS = (("q_norm", "q_a_layernorm"), ("kv_norm", "kv_a_layernorm"))  # RMSNorm eps, not a weight


def deepseek_table(cfg: ModelConfig, rope_interleave: bool) -> list[Rule]:
    """The whole model: the decoder skeleton with MLA for attention and DeepSeekMoE beside the MLP."""
    return decoder_table(mla_table(cfg, rope_interleave), MOE_TABLE)


def _copy_eps(pairs, to_hf: bool) -> None:
    """The RMSNorm eps of MLA's two norms (an attribute, not a weight) for (our MLA, HF attention) pairs."""
    for ours, theirs in pairs:
        for mine, hf_name in MLA_EPS:
            a, b = getattr(ours, mine, None), getattr(theirs, hf_name, None)
            if a is None or b is None:
                continue
            if to_hf:
                b.variance_epsilon = a.eps
            else:
                a.eps = b.variance_epsilon


def _layer_attention(ours: Transformer, hf_model) -> list:
    return [(mine.attn, theirs.self_attn) for mine, theirs in zip(ours.layers, hf_model.model.layers)]


# --- the single layers ----------------------------------------------------------------------------
@register("DeepseekV3MoE")
@torch.no_grad()
def moe_from_hf(hf_moe, cfg: ModelConfig | None = None, **overrides):
    """Our ``helpers.moe.MoE`` with the weights of a Hugging Face ``DeepseekV3MoE``: router weight,
    ``e_score_correction_bias`` → our selection bias, experts (fused ``gate_up_proj`` = [w1; w3], or
    older releases' ModuleList) and the shared experts. ``cfg`` defaults to
    ``deepseek_config(hf_moe.config, **overrides)``."""
    from ..moe import MoE

    cfg = cfg if cfg is not None else deepseek_config(hf_moe.config, **overrides)
    weight = hf_moe.gate.weight
    ours = MoE(cfg).to(device=weight.device, dtype=weight.dtype)
    copy_weights(ours, hf_moe.state_dict(), MOE_TABLE, to_hf=False)
    return ours.eval()


@torch.no_grad()
def moe_to_hf(moe):
    """Our sigmoid-scored ``MoE`` → a Hugging Face ``DeepseekV3MoE`` with the same weights (our dtype and
    device; the experts in the installed release's layout)."""
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE

    weight = moe.gate.weight
    hf = DeepseekV3MoE(deepseek_hf_config(moe.cfg.replace(attn_type="mla")))
    hf = hf.to(device=weight.device, dtype=weight.dtype)
    copy_weights(hf, moe.state_dict(), MOE_TABLE, to_hf=True)
    return hf.eval()


@register("DeepseekV3Attention")
@torch.no_grad()
def mla_from_hf(hf_attn, cfg: ModelConfig | None = None, mode: str = "absorbed", **overrides):
    """Our ``helpers.mla.MLA`` with the weights of a Hugging Face ``DeepseekV3Attention``.

    ``cfg`` defaults to ``deepseek_config(hf_attn.config, **overrides)`` (a full-model converter passes
    its own). With ``rope_interleave=True`` (HF's default, DeepSeek's checkpoint layout) the RoPE rows
    of the query up-projection (per head) and of ``kv_a_proj_with_mqa`` (its last Dr rows) are permuted
    so our rotate-half RoPE gives HF's result. The layer index is HF's."""
    from ..mla import MLA

    hf_cfg = hf_attn.config
    plain_rope_theta(hf_cfg, YARN)
    cfg = deepseek_config(hf_cfg, **overrides) if cfg is None else cfg
    wanted = {"dim": hf_cfg.hidden_size, "n_heads": hf_cfg.num_attention_heads,
              "q_lora_rank": hf_cfg.q_lora_rank or 0, "kv_lora_rank": hf_cfg.kv_lora_rank,
              "qk_nope_head_dim": hf_cfg.qk_nope_head_dim, "qk_rope_head_dim": hf_cfg.qk_rope_head_dim,
              "v_head_dim": hf_cfg.v_head_dim}
    wrong = {k: (getattr(cfg, k), v) for k, v in wanted.items() if getattr(cfg, k) != v}
    if wrong:
        raise ValueError(f"cfg does not match the Hugging Face layer (ours, theirs): {wrong}")
    weight = hf_attn.kv_b_proj.weight
    ours = MLA(cfg, hf_attn.layer_idx, mode=mode).to(device=weight.device, dtype=weight.dtype)
    copy_weights(ours, hf_attn.state_dict(), mla_table(cfg, hf_cfg.rope_interleave), to_hf=False)
    _copy_eps([(ours, hf_attn)], to_hf=False)
    return ours.train(hf_attn.training)


@torch.no_grad()
def mla_to_hf(mla, cfg: ModelConfig | None = None, rope_interleave: bool = False):
    """Our ``MLA`` → a Hugging Face ``DeepseekV3Attention`` with the same weights and layer index (our
    dtype and device). ``cfg`` defaults to one with the layer's sizes; ``rope_interleave=True`` writes
    DeepSeek's checkpoint layout."""
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Attention

    if cfg is None:
        cfg = ModelConfig(attn_type="mla", dim=mla.dim, n_heads=mla.n_heads, q_lora_rank=mla.q_lora_rank,
                          kv_lora_rank=mla.kv_lora_rank, qk_nope_head_dim=mla.nope_dim,
                          qk_rope_head_dim=mla.rope_dim, v_head_dim=mla.v_dim)
    weight = mla.wkv_b.weight
    hf = DeepseekV3Attention(deepseek_hf_config(cfg, rope_interleave), mla.layer_idx)
    hf = hf.to(device=weight.device, dtype=weight.dtype)
    copy_weights(hf, mla.state_dict(), mla_table(cfg, rope_interleave), to_hf=True)
    _copy_eps([(mla, hf)], to_hf=True)
    return hf.train(mla.training)


# --- the whole model (lesson 06) --------------------------------------------------------------------
@register("DeepseekV3ForCausalLM")
@torch.no_grad()
def deepseek_from_hf(hf_model, **overrides) -> Transformer:
    """Our DeepSeek-V3-shaped ``Transformer`` with the weights of a ``DeepseekV3ForCausalLM``.

    Embedding, per layer the two norms, MLA (RoPE rows de-interleaved when ``rope_interleave``), the
    dense MLP of the first ``first_k_dense_replace`` layers and DeepSeekMoE after (router bias
    included), the final norm and the head. The Hugging Face model has no MTP module (the released
    checkpoints keep it as layer 61, which transformers skips), so ours gets none unless ``overrides``
    ask for ``mtp_depth`` (then freshly initialised)."""
    hf_cfg = hf_model.config
    check_deepseek_supported(hf_cfg)
    if (hf_cfg.first_k_dense_replace or 0) >= hf_cfg.num_hidden_layers:
        overrides = {"n_routed_experts": 0, "n_shared_experts": 0, "n_dense_layers": 0,
                     "n_expert_groups": 1, "n_limited_groups": 1, **overrides}  # a dense MLA model
    cfg = deepseek_config(hf_cfg, **overrides)
    ours = Transformer(cfg).to(device=hf_model.device, dtype=hf_model.dtype)
    copy_weights(ours, hf_model.state_dict(), deepseek_table(cfg, hf_cfg.rope_interleave), to_hf=False,
                 skip=("mtp.",))
    _copy_eps(_layer_attention(ours, hf_model), to_hf=False)
    return ours.eval()


@exporter("mla")
@torch.no_grad()
def deepseek_to_hf(model: Transformer, rope_interleave: bool = False):
    """Our MLA (+ DeepSeekMoE) model → a ``DeepseekV3ForCausalLM`` with the same weights (our dtype and
    device), the experts in the installed release's layout. The MTP modules are left out: transformers'
    DeepSeek-V3 has none. Every Hugging Face weight must be copied: one left over raises."""
    from transformers import DeepseekV3ForCausalLM

    from ..mla import MLA

    cfg = model.config
    if cfg.is_sparse_attention:  # MLA + lightning indexer: DeepSeek-V3.2 (always the interleaved layout)
        return EXPORTERS["dsa"](model)  # deepseek_v32.dsa_to_hf, by the registry: no import circle
    hf_cfg = deepseek_hf_config(cfg, rope_interleave)
    for i, layer in enumerate(model.layers):
        if not isinstance(layer.attn, MLA):
            raise ValueError(f"layer {i} attention is {type(layer.attn).__name__}, expected MLA")
    hf = DeepseekV3ForCausalLM(hf_cfg).to(device=model.device, dtype=model.tok_emb.weight.dtype).eval()
    copy_weights(hf, model.state_dict(), deepseek_table(cfg, rope_interleave), to_hf=True, skip=("mtp.",))
    _copy_eps(_layer_attention(model, hf), to_hf=True)
    return hf
