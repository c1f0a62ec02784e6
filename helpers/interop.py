"""Build our models from Hugging Face ``transformers`` models with copied weights (and back).

The peer is the independent reference: if our module, loaded with the peer's weights, gives the
peer's logits, both implement the same function. ``from_hf`` dispatches on the model's class; each
architecture has a converter registered in ``CONVERTERS`` (Llama; DeepSeek-V3's attention, its MoE
layer and the whole ``DeepseekV3ForCausalLM``). ``to_hf`` goes the other way: MLA models export to
``DeepseekV3ForCausalLM``, plain MHA/GQA models to ``LlamaForCausalLM``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .config import ModelConfig
from .model import Transformer

CONVERTERS: dict[str, Callable] = {}


def register(*class_names: str):
    def wrap(fn):
        for name in class_names:
            CONVERTERS[name] = fn
        return fn
    return wrap


def from_hf(hf_model, **overrides):
    """Our model with the weights of ``hf_model``; ``overrides`` change config fields we do not read
    from the Hugging Face config (e.g. ``attn_impl``)."""
    name = type(hf_model).__name__
    if name not in CONVERTERS:
        raise ValueError(f"from_hf does not support {name}; supported: {sorted(CONVERTERS)}")
    return CONVERTERS[name](hf_model, **overrides)


def _rope_theta(hf_cfg) -> float:
    params = getattr(hf_cfg, "rope_parameters", None) or {}
    scaling = getattr(hf_cfg, "rope_scaling", None) or {}
    rope_type = params.get("rope_type", scaling.get("rope_type", "default"))
    if rope_type not in (None, "default"):
        raise ValueError(f"rope_type={rope_type!r} (RoPE scaling) is not supported; only 'default'")
    theta = params.get("rope_theta", getattr(hf_cfg, "rope_theta", None))
    if theta is None:
        raise ValueError("the Hugging Face config has no rope_theta")
    return float(theta)


def _check_unsupported(hf_cfg, **expected) -> None:
    for key, want in expected.items():
        have = getattr(hf_cfg, key, want)
        if have != want:
            raise ValueError(f"Hugging Face config field {key}={have!r} is not supported (need {want!r})")


def llama_config(hf_cfg, **overrides) -> ModelConfig:
    _check_unsupported(hf_cfg, attention_bias=False, mlp_bias=False, hidden_act="silu",
                       pretraining_tp=1)
    head_dim = getattr(hf_cfg, "head_dim", None)
    if head_dim == hf_cfg.hidden_size // hf_cfg.num_attention_heads:
        head_dim = None  # the default D / H: keep the config canonical
    fields = dict(
        vocab_size=hf_cfg.vocab_size, dim=hf_cfg.hidden_size, n_layers=hf_cfg.num_hidden_layers,
        n_heads=hf_cfg.num_attention_heads, n_kv_heads=hf_cfg.num_key_value_heads,
        head_dim=head_dim, inter_dim=hf_cfg.intermediate_size,
        max_seq_len=hf_cfg.max_position_embeddings, rope_theta=_rope_theta(hf_cfg),
        norm_eps=hf_cfg.rms_norm_eps, tie_embeddings=bool(hf_cfg.tie_word_embeddings),
    )
    fields.update(overrides)
    return ModelConfig(**fields)


@register("LlamaForCausalLM")
@torch.no_grad()
def llama_from_hf(hf_model, **overrides) -> Transformer:
    cfg = llama_config(hf_model.config, **overrides)
    ours = Transformer(cfg).to(dtype=hf_model.dtype)
    src = hf_model.model
    ours.tok_emb.weight.copy_(src.embed_tokens.weight)
    for mine, theirs in zip(ours.layers, src.layers):
        mine.attn_norm.weight.copy_(theirs.input_layernorm.weight)
        mine.ffn_norm.weight.copy_(theirs.post_attention_layernorm.weight)
        a = theirs.self_attn
        for ours_name, hf_name in [("wq", "q_proj"), ("wk", "k_proj"), ("wv", "v_proj"), ("wo", "o_proj")]:
            getattr(mine.attn, ours_name).weight.copy_(getattr(a, hf_name).weight)
        m = theirs.mlp
        mine.ffn.w1.weight.copy_(m.gate_proj.weight)
        mine.ffn.w3.weight.copy_(m.up_proj.weight)
        mine.ffn.w2.weight.copy_(m.down_proj.weight)
    ours.norm.weight.copy_(src.norm.weight)
    if not cfg.tie_embeddings:
        ours.head.weight.copy_(hf_model.lm_head.weight)
    return ours.to(hf_model.device).eval()


def llama_hf_config(cfg: ModelConfig):
    """A ``transformers.LlamaConfig`` with the sizes of our (MHA/GQA) config."""
    from transformers import LlamaConfig

    if cfg.attn_type != "mha" or cfg.is_moe or cfg.mtp_depth:
        raise ValueError("llama_hf_config needs a plain MHA/GQA config (attn_type='mha', no MoE/MTP)")
    return LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.inter_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.kv_heads, head_dim=cfg.hd, max_position_embeddings=cfg.max_seq_len,
        rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta, tie_word_embeddings=cfg.tie_embeddings,
        attention_bias=False, mlp_bias=False, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )


def tiny_llama(cfg: ModelConfig, seed: int = 0):
    """A randomly initialised Hugging Face ``LlamaForCausalLM`` of our config's sizes (float32, eager)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    hf_cfg = llama_hf_config(cfg)
    hf_cfg._attn_implementation = "eager"
    return LlamaForCausalLM(hf_cfg).eval()


@torch.no_grad()
def llama_to_hf(model: Transformer):
    """Our baseline model → a Hugging Face ``LlamaForCausalLM`` with the same weights."""
    hf = tiny_llama(model.config)
    src = hf.model
    src.embed_tokens.weight.copy_(model.tok_emb.weight)
    for mine, theirs in zip(model.layers, src.layers):
        theirs.input_layernorm.weight.copy_(mine.attn_norm.weight)
        theirs.post_attention_layernorm.weight.copy_(mine.ffn_norm.weight)
        for ours_name, hf_name in [("wq", "q_proj"), ("wk", "k_proj"), ("wv", "v_proj"), ("wo", "o_proj")]:
            getattr(theirs.self_attn, hf_name).weight.copy_(getattr(mine.attn, ours_name).weight)
        theirs.mlp.gate_proj.weight.copy_(mine.ffn.w1.weight)
        theirs.mlp.up_proj.weight.copy_(mine.ffn.w3.weight)
        theirs.mlp.down_proj.weight.copy_(mine.ffn.w2.weight)
    src.norm.weight.copy_(model.norm.weight)
    if not model.config.tie_embeddings:
        hf.lm_head.weight.copy_(model.head.weight)
    return hf.to(model.device)


# --- DeepSeek-V3 ----------------------------------------------------------------------------------
# Field map, Hugging Face DeepseekV3Config → our ModelConfig (DeepSeek's own ModelArgs names).
DEEPSEEK_FIELDS = {
    "vocab_size": "vocab_size", "hidden_size": "dim", "intermediate_size": "inter_dim",
    "moe_intermediate_size": "moe_inter_dim", "num_hidden_layers": "n_layers",
    "num_attention_heads": "n_heads", "n_shared_experts": "n_shared_experts",
    "n_routed_experts": "n_routed_experts", "routed_scaling_factor": "route_scale",
    "kv_lora_rank": "kv_lora_rank", "qk_rope_head_dim": "qk_rope_head_dim",
    "v_head_dim": "v_head_dim", "qk_nope_head_dim": "qk_nope_head_dim",
    "n_group": "n_expert_groups", "topk_group": "n_limited_groups",
    "num_experts_per_tok": "n_activated_experts", "first_k_dense_replace": "n_dense_layers",
    "norm_topk_prob": "norm_topk_prob", "rms_norm_eps": "norm_eps",
    "max_position_embeddings": "max_seq_len", "tie_word_embeddings": "tie_embeddings",
}


def deepseek_config(hf_cfg, **overrides) -> ModelConfig:
    """Our ``ModelConfig`` for a Hugging Face ``DeepseekV3Config``: MLA attention, sigmoid-scored
    DeepSeekMoE with aux-loss-free balancing. Unsupported settings raise ``ValueError`` naming the field.
    (``rope_interleave`` is handled by the weight converters, which permute the RoPE rows.)"""
    _check_unsupported(hf_cfg, attention_bias=False, hidden_act="silu", pretraining_tp=1)
    fields = {ours: getattr(hf_cfg, theirs) for theirs, ours in DEEPSEEK_FIELDS.items()}
    fields["q_lora_rank"] = hf_cfg.q_lora_rank or 0
    fields["n_routed_experts"] = fields["n_routed_experts"] or 0
    fields["n_shared_experts"] = fields["n_shared_experts"] or 0
    fields["rope_theta"] = _rope_theta(hf_cfg)
    fields.update(attn_type="mla", score_func="sigmoid", balance="loss_free",
                  n_kv_heads=None, head_dim=None)
    fields["tie_embeddings"] = bool(fields["tie_embeddings"])
    fields.update(overrides)
    return ModelConfig(**fields)


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


@register("DeepseekV3MoE")
@torch.no_grad()
def moe_from_hf(hf_moe, cfg: ModelConfig | None = None, **overrides):
    """Our ``helpers.moe.MoE`` with the weights of a Hugging Face ``DeepseekV3MoE``: router weight,
    ``e_score_correction_bias`` → our selection bias, experts (fused ``gate_up_proj`` = [w1; w3]) and the
    shared experts. ``cfg`` defaults to ``deepseek_config(hf_moe.config, **overrides)``."""
    from .moe import MoE

    cfg = cfg if cfg is not None else deepseek_config(hf_moe.config, **overrides)
    weight = hf_moe.gate.weight
    ours = MoE(cfg).to(dtype=weight.dtype)
    ours.gate.weight.copy_(weight)
    ours.gate.bias.copy_(hf_moe.gate.e_score_correction_bias)
    ex, inter = hf_moe.experts, cfg.moe_inter_dim
    for e, mine in enumerate(ours.experts):
        if hasattr(ex, "gate_up_proj"):  # transformers >= 5: experts fused into 3-D tensors
            mine.w1.weight.copy_(ex.gate_up_proj[e, :inter])
            mine.w3.weight.copy_(ex.gate_up_proj[e, inter:])
            mine.w2.weight.copy_(ex.down_proj[e])
        else:  # older releases: a ModuleList of DeepseekV3MLP
            mine.w1.weight.copy_(ex[e].gate_proj.weight)
            mine.w3.weight.copy_(ex[e].up_proj.weight)
            mine.w2.weight.copy_(ex[e].down_proj.weight)
    if ours.shared_experts is not None:
        s = hf_moe.shared_experts
        ours.shared_experts.w1.weight.copy_(s.gate_proj.weight)
        ours.shared_experts.w3.weight.copy_(s.up_proj.weight)
        ours.shared_experts.w2.weight.copy_(s.down_proj.weight)
    return ours.to(weight.device).eval()


def rope_deinterleave_perm(rope_dim: int) -> torch.Tensor:
    """Row order that turns DeepSeek's interleaved RoPE pairs (x0, x1), (x2, x3), ... into our
    rotate-half layout (x0, x2, ..., x1, x3, ...): exactly the reordering HF applies to q_pe and k_pe
    before rotating when ``rope_interleave=True``. Permuting the weight rows once does it for free."""
    return torch.cat([torch.arange(0, rope_dim, 2), torch.arange(1, rope_dim, 2)])


def _check_plain_rope(hf_cfg) -> None:
    params = getattr(hf_cfg, "rope_parameters", None) or getattr(hf_cfg, "rope_scaling", None) or {}
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in (None, "default"):
        raise ValueError(f"rope_type={rope_type!r} is not supported by our MLA: YaRN (DeepSeek-V3's "
                         "long-context setting) changes the RoPE frequencies and multiplies the softmax "
                         "scale by mscale²; only plain RoPE (rope_type='default') is implemented")


@register("DeepseekV3Attention")
@torch.no_grad()
def mla_from_hf(hf_attn, cfg: ModelConfig | None = None, mode: str = "absorbed", **overrides):
    """Our ``helpers.mla.MLA`` with the weights of a Hugging Face ``DeepseekV3Attention``.

    ``cfg`` defaults to ``deepseek_config(hf_attn.config, **overrides)`` (a full-model converter passes
    its own). With ``rope_interleave=True`` (HF's default, DeepSeek's checkpoint layout) the RoPE rows
    of the query up-projection (per head) and of ``kv_a_proj_with_mqa`` (its last Dr rows) are permuted
    so our rotate-half RoPE gives HF's result. The layer index is HF's."""
    from .mla import MLA

    hf_cfg = hf_attn.config
    _check_plain_rope(hf_cfg)
    cfg = deepseek_config(hf_cfg, **overrides) if cfg is None else cfg
    wanted = {"dim": hf_cfg.hidden_size, "n_heads": hf_cfg.num_attention_heads,
              "q_lora_rank": hf_cfg.q_lora_rank or 0, "kv_lora_rank": hf_cfg.kv_lora_rank,
              "qk_nope_head_dim": hf_cfg.qk_nope_head_dim, "qk_rope_head_dim": hf_cfg.qk_rope_head_dim,
              "v_head_dim": hf_cfg.v_head_dim}
    wrong = {k: (getattr(cfg, k), v) for k, v in wanted.items() if getattr(cfg, k) != v}
    if wrong:
        raise ValueError(f"cfg does not match the Hugging Face layer (ours, theirs): {wrong}")
    dtype = hf_attn.kv_b_proj.weight.dtype
    ours = MLA(cfg, hf_attn.layer_idx, mode=mode).to(device=hf_attn.kv_b_proj.weight.device, dtype=dtype)
    H, Dn, Dr, Dc = cfg.n_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.kv_lora_rank
    perm = rope_deinterleave_perm(Dr) if hf_cfg.rope_interleave else torch.arange(Dr)

    def q_rows(w: torch.Tensor) -> torch.Tensor:  # (H·(Dn+Dr), in): reorder each head's RoPE rows
        w = w.view(H, Dn + Dr, -1)  # (H, Dn + Dr, in)
        return torch.cat([w[:, :Dn], w[:, Dn:][:, perm]], dim=1).reshape(H * (Dn + Dr), -1)

    if cfg.q_lora_rank == 0:
        ours.wq.weight.copy_(q_rows(hf_attn.q_proj.weight))
    else:
        ours.wq_a.weight.copy_(hf_attn.q_a_proj.weight)
        ours.q_norm.weight.copy_(hf_attn.q_a_layernorm.weight)
        ours.q_norm.eps = hf_attn.q_a_layernorm.variance_epsilon
        ours.wq_b.weight.copy_(q_rows(hf_attn.q_b_proj.weight))
    w = hf_attn.kv_a_proj_with_mqa.weight  # (Dc + Dr, D): [latent rows; RoPE key rows]
    ours.wkv_a.weight.copy_(torch.cat([w[:Dc], w[Dc:][perm]], dim=0))
    ours.kv_norm.weight.copy_(hf_attn.kv_a_layernorm.weight)
    ours.kv_norm.eps = hf_attn.kv_a_layernorm.variance_epsilon
    ours.wkv_b.weight.copy_(hf_attn.kv_b_proj.weight)
    ours.wo.weight.copy_(hf_attn.o_proj.weight)
    return ours.train(hf_attn.training)


# --- DeepSeek-V3, the whole model (lesson 06) ----------------------------------------------------------
def check_deepseek_supported(hf_cfg) -> None:
    """Raise ``ValueError`` naming the field if a ``DeepseekV3Config`` asks for something our model does
    not implement: RoPE scaling (YaRN, DeepSeek-V3's long-context setting), K/V head repetition, biases,
    another activation, another router (the older remote-code configs' ``scoring_func``/``topk_method``),
    or groups too small for V3's top-2 group score."""
    _check_plain_rope(hf_cfg)
    _check_unsupported(hf_cfg, attention_bias=False, hidden_act="silu", pretraining_tp=1,
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


def _is_moe_layer(hf_cfg, layer_idx: int) -> bool:
    return layer_idx >= (hf_cfg.first_k_dense_replace or 0)


@register("DeepseekV3ForCausalLM")
@torch.no_grad()
def deepseek_from_hf(hf_model, **overrides) -> Transformer:
    """Our DeepSeek-V3-shaped ``Transformer`` with the weights of a ``DeepseekV3ForCausalLM``.

    Embedding, per layer the two norms, MLA (``mla_from_hf``, RoPE rows de-interleaved when
    ``rope_interleave``), the dense MLP of the first ``first_k_dense_replace`` layers and DeepSeekMoE
    after (``moe_from_hf``, router bias included), the final norm and the head. The Hugging Face model
    has no MTP module (the released checkpoints keep it as layer 61, which transformers skips), so ours
    gets none unless ``overrides`` ask for ``mtp_depth`` (then freshly initialised)."""
    hf_cfg = hf_model.config
    check_deepseek_supported(hf_cfg)
    if all(not _is_moe_layer(hf_cfg, i) for i in range(hf_cfg.num_hidden_layers)):
        overrides = {"n_routed_experts": 0, "n_shared_experts": 0, "n_dense_layers": 0,
                     "n_expert_groups": 1, "n_limited_groups": 1, **overrides}  # a dense MLA model
    cfg = deepseek_config(hf_cfg, **overrides)
    ours = Transformer(cfg).to(dtype=hf_model.dtype)
    src = hf_model.model
    ours.tok_emb.weight.copy_(src.embed_tokens.weight)
    for i, (mine, theirs) in enumerate(zip(ours.layers, src.layers)):
        mine.attn_norm.weight.copy_(theirs.input_layernorm.weight)
        mine.ffn_norm.weight.copy_(theirs.post_attention_layernorm.weight)
        mine.attn = mla_from_hf(theirs.self_attn, cfg)
        if cfg.layer_is_moe(i):
            mine.ffn = moe_from_hf(theirs.mlp, cfg)
        else:
            m = theirs.mlp
            mine.ffn.w1.weight.copy_(m.gate_proj.weight)
            mine.ffn.w3.weight.copy_(m.up_proj.weight)
            mine.ffn.w2.weight.copy_(m.down_proj.weight)
    ours.norm.weight.copy_(src.norm.weight)
    if not cfg.tie_embeddings:
        ours.head.weight.copy_(hf_model.lm_head.weight)
    return ours.to(device=hf_model.device, dtype=hf_model.dtype).eval()


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
    moe = dict(n_routed_experts=E, n_shared_experts=cfg.n_shared_experts, n_group=cfg.n_expert_groups,
               topk_group=cfg.n_limited_groups, num_experts_per_tok=cfg.n_activated_experts,
               first_k_dense_replace=cfg.n_dense_layers)
    if not cfg.is_moe:  # every layer dense: the MoE fields are never read
        moe = dict(n_routed_experts=2, n_shared_experts=1, n_group=1, topk_group=1, num_experts_per_tok=1,
                   first_k_dense_replace=cfg.n_layers)
    hf_cfg = DeepseekV3Config(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.inter_dim,
        moe_intermediate_size=cfg.moe_inter_dim, num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_heads,
        routed_scaling_factor=cfg.route_scale, kv_lora_rank=cfg.kv_lora_rank,
        q_lora_rank=cfg.q_lora_rank or None, qk_rope_head_dim=cfg.qk_rope_head_dim,
        v_head_dim=cfg.v_head_dim, qk_nope_head_dim=cfg.qk_nope_head_dim, norm_topk_prob=cfg.norm_topk_prob,
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        rope_interleave=rope_interleave, tie_word_embeddings=cfg.tie_embeddings, num_mtp_layers=0,
        bos_token_id=None, eos_token_id=None, pad_token_id=None, **moe)
    hf_cfg._attn_implementation = "eager"
    return hf_cfg


@torch.no_grad()
def deepseek_to_hf(model: Transformer, rope_interleave: bool = False):
    """Our MLA (+ DeepSeekMoE) model → a ``DeepseekV3ForCausalLM`` with the same weights (float32 or our
    dtype, our device). The MTP modules are left out: transformers' DeepSeek-V3 has none. Every Hugging
    Face parameter is first filled with NaN, so one we forgot to copy cannot hide: it raises."""
    from transformers import DeepseekV3ForCausalLM

    from .mla import MLA
    from .moe import MoE

    cfg = model.config
    hf_cfg = deepseek_hf_config(cfg, rope_interleave)
    hf = DeepseekV3ForCausalLM(hf_cfg).to(device=model.device, dtype=model.tok_emb.weight.dtype).eval()
    for p in hf.parameters():
        p.fill_(float("nan"))
    H, Dn, Dr, Dc = cfg.n_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.kv_lora_rank
    perm = rope_deinterleave_perm(Dr) if rope_interleave else torch.arange(Dr)
    inv = perm.argsort()  # ours[perm] = theirs  ⇔  theirs = ours[perm.argsort()]

    def q_rows(w: torch.Tensor) -> torch.Tensor:  # (H·(Dn+Dr), in): back to the checkpoint's RoPE order
        w = w.view(H, Dn + Dr, -1)  # (H, Dn + Dr, in)
        return torch.cat([w[:, :Dn], w[:, Dn:][:, inv]], dim=1).reshape(H * (Dn + Dr), -1)

    src = hf.model
    src.embed_tokens.weight.copy_(model.tok_emb.weight)
    for i, (mine, theirs) in enumerate(zip(model.layers, src.layers)):
        theirs.input_layernorm.weight.copy_(mine.attn_norm.weight)
        theirs.post_attention_layernorm.weight.copy_(mine.ffn_norm.weight)
        a, t = mine.attn, theirs.self_attn
        if not isinstance(a, MLA):
            raise ValueError(f"layer {i} attention is {type(a).__name__}, expected MLA")
        if cfg.q_lora_rank == 0:
            t.q_proj.weight.copy_(q_rows(a.wq.weight))
        else:
            t.q_a_proj.weight.copy_(a.wq_a.weight)
            t.q_a_layernorm.weight.copy_(a.q_norm.weight)
            t.q_a_layernorm.variance_epsilon = a.q_norm.eps
            t.q_b_proj.weight.copy_(q_rows(a.wq_b.weight))
        w = a.wkv_a.weight  # (Dc + Dr, D)
        t.kv_a_proj_with_mqa.weight.copy_(torch.cat([w[:Dc], w[Dc:][inv]], dim=0))
        t.kv_a_layernorm.weight.copy_(a.kv_norm.weight)
        t.kv_a_layernorm.variance_epsilon = a.kv_norm.eps
        t.kv_b_proj.weight.copy_(a.wkv_b.weight)
        t.o_proj.weight.copy_(a.wo.weight)
        f, m = mine.ffn, theirs.mlp
        if isinstance(f, MoE):
            m.gate.weight.copy_(f.gate.weight)
            m.gate.e_score_correction_bias.copy_(f.gate.bias)
            for e, expert in enumerate(f.experts):
                m.experts.gate_up_proj[e].copy_(torch.cat([expert.w1.weight, expert.w3.weight], dim=0))
                m.experts.down_proj[e].copy_(expert.w2.weight)
            shared = f.shared_experts
            if shared is not None:
                m.shared_experts.gate_proj.weight.copy_(shared.w1.weight)
                m.shared_experts.up_proj.weight.copy_(shared.w3.weight)
                m.shared_experts.down_proj.weight.copy_(shared.w2.weight)
        else:
            m.gate_proj.weight.copy_(f.w1.weight)
            m.up_proj.weight.copy_(f.w3.weight)
            m.down_proj.weight.copy_(f.w2.weight)
    src.norm.weight.copy_(model.norm.weight)
    if not cfg.tie_embeddings:
        hf.lm_head.weight.copy_(model.head.weight)
    missed = [n for n, p in hf.named_parameters() if p.numel() and not torch.isfinite(p).all()]
    if missed:
        raise RuntimeError(f"to_hf left Hugging Face parameters uncopied: {missed[:5]}")
    return hf


def to_hf(model: Transformer, **kwargs):
    """Export our model to transformers: MLA models → ``DeepseekV3ForCausalLM`` (``deepseek_to_hf``),
    plain MHA/GQA models → ``LlamaForCausalLM`` (``llama_to_hf``)."""
    cfg = model.config
    if cfg.attn_type == "mla":
        return deepseek_to_hf(model, **kwargs)
    if cfg.is_moe or cfg.mtp_depth:
        raise ValueError(f"to_hf: an attn_type='mha' model with n_routed_experts={cfg.n_routed_experts} / "
                         f"mtp_depth={cfg.mtp_depth} has no transformers counterpart here; export MLA "
                         "models (DeepseekV3ForCausalLM) or plain MHA/GQA ones (LlamaForCausalLM)")
    return llama_to_hf(model, **kwargs)
