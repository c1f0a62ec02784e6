"""DeepSeek-V3.2 both ways: our DSA ``Transformer`` (MLA + lightning indexer, ``helpers.dsa``) ↔
``DeepseekV32ForCausalLM``, and one indexer ↔ ``DeepseekV32Indexer``.

DeepSeek-V3.2 is DeepSeek-V3 plus an indexer per attention layer, so the name table is DeepSeek-V3's
(``deepseek.deepseek_table``) with the indexer's five tensors added. Two layout facts: the main MLA is
always in DeepSeek's interleaved RoPE layout (``DeepseekV32Config`` has no ``rope_interleave`` switch),
so its RoPE rows are de-interleaved as for V3 with ``rope_interleave=True``; the indexer's RoPE part is
already half-split (rotate-half), our layout, so its rows are copied as they are.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..model import Transformer
from .common import Rule, check_fields, copy_weights, decoder_table, exporter, nested, register, write_config
from .deepseek import (
    DEEPSEEK_FIELDS,
    MOE_TABLE,
    _copy_eps,
    _layer_attention,
    check_deepseek_supported,
    deepseek_config,
    mla_table,
)

# Hugging Face DeepseekV32Config field → ours (on top of DeepSeek-V3's).
DSA_FIELDS = {**DEEPSEEK_FIELDS, "index_n_heads": "index_n_heads", "index_head_dim": "index_head_dim",
              "index_topk": "index_topk"}
INDEXER_TABLE = [Rule("wq_b.weight", "wq_b.weight"), Rule("wk.weight", "wk.weight"),
                 Rule("k_norm.weight", "k_norm.weight"), Rule("k_norm.bias", "k_norm.bias"),
                 Rule("weights_proj.weight", "weights_proj.weight")]


def dsa_table(cfg: ModelConfig) -> list[Rule]:
    """The whole V3.2 model: V3's table (interleaved RoPE rows) with the indexer inside each attention."""
    attention = [*mla_table(cfg, rope_interleave=True), *nested(INDEXER_TABLE, "indexer.", "indexer.")]
    return decoder_table(attention, MOE_TABLE)


def check_dsa_supported(hf_cfg) -> None:
    """V3's checks (``check_deepseek_supported``), plus what V3.2 adds: an indexer on the query latent,
    its RoPE part inside its width, and one MLP kind per layer as ``first_k_dense_replace`` says."""
    check_deepseek_supported(hf_cfg)
    check_fields(hf_cfg, mlp_bias=False)
    if not hf_cfg.q_lora_rank:
        raise ValueError("Hugging Face config field q_lora_rank must be set: the indexer reads the query "
                         "latent")
    if hf_cfg.index_head_dim < hf_cfg.qk_rope_head_dim:
        raise ValueError(f"Hugging Face config fields index_head_dim={hf_cfg.index_head_dim} < "
                         f"qk_rope_head_dim={hf_cfg.qk_rope_head_dim}: the indexer's RoPE part must fit")
    n_dense = min(hf_cfg.first_k_dense_replace or 0, hf_cfg.num_hidden_layers)
    want = ["dense"] * n_dense + ["sparse"] * (hf_cfg.num_hidden_layers - n_dense)
    if list(hf_cfg.mlp_layer_types) != want:
        raise ValueError(f"Hugging Face config field mlp_layer_types={hf_cfg.mlp_layer_types} is not "
                         "supported: "
                         f"our model has the first first_k_dense_replace={n_dense} layers dense, then MoE")


def dsa_config(hf_cfg, **overrides) -> ModelConfig:
    """Our ``ModelConfig`` for a ``DeepseekV32Config`` (unsupported fields raise, naming the field)."""
    check_dsa_supported(hf_cfg)
    extra = {"index_n_heads": hf_cfg.index_n_heads, "index_head_dim": hf_cfg.index_head_dim,
             "index_topk": hf_cfg.index_topk}
    if (hf_cfg.first_k_dense_replace or 0) >= hf_cfg.num_hidden_layers:
        extra.update(n_routed_experts=0, n_shared_experts=0, n_dense_layers=0, n_expert_groups=1,
                     n_limited_groups=1)  # a dense model: the MoE fields are never read
    return deepseek_config(hf_cfg, **{**extra, **overrides})


def tiny_dsa_hf_config(**changes):
    """A tiny ``transformers.DeepseekV32Config`` (float32, eager) whose top-k (4) is smaller than its
    context, so the sparse path is exercised."""
    from transformers import DeepseekV32Config

    base = dict(vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1,
                n_routed_experts=8, routed_scaling_factor=2.5, kv_lora_rank=32, q_lora_rank=48,
                qk_rope_head_dim=8, v_head_dim=16, qk_nope_head_dim=16, n_group=2, topk_group=1,
                num_experts_per_tok=2, first_k_dense_replace=1, norm_topk_prob=True,
                index_topk=4, index_head_dim=16, index_n_heads=2, max_position_embeddings=64,
                bos_token_id=None, eos_token_id=None, pad_token_id=None, tie_word_embeddings=False)
    base.update(changes)
    cfg = DeepseekV32Config(**base)
    cfg._attn_implementation = "eager"
    return cfg


def dsa_hf_config(cfg: ModelConfig):
    """A ``transformers.DeepseekV32Config`` with the sizes of our DSA config (eager attention)."""
    from transformers import DeepseekV32Config

    if not cfg.is_sparse_attention:
        raise ValueError("dsa_hf_config needs a DSA config (attn_type='mla', index_n_heads > 0)")
    if cfg.is_moe and cfg.score_func != "sigmoid":
        raise ValueError(f"score_func={cfg.score_func!r} cannot be exported: Hugging Face scores with a "
                         "sigmoid")
    dense = {} if cfg.is_moe else dict(n_routed_experts=2, n_shared_experts=1, n_group=1, topk_group=1,
                                       num_experts_per_tok=1, first_k_dense_replace=cfg.n_layers)
    hf_cfg = write_config(DeepseekV32Config, cfg, DSA_FIELDS, num_key_value_heads=cfg.n_heads,
                          q_lora_rank=cfg.q_lora_rank, **dense)
    hf_cfg._attn_implementation = "eager"
    return hf_cfg


@register("DeepseekV32Indexer")
@torch.no_grad()
def indexer_from_hf(hf_indexer, cfg: ModelConfig | None = None, **overrides):
    """Our ``helpers.dsa.Indexer`` with the weights of a ``DeepseekV32Indexer``."""
    from ..dsa import Indexer

    cfg = cfg if cfg is not None else dsa_config(hf_indexer.config, **overrides)
    weight = hf_indexer.wk.weight
    ours = Indexer(cfg).to(device=weight.device, dtype=weight.dtype)
    copy_weights(ours, hf_indexer.state_dict(), INDEXER_TABLE, to_hf=False)
    ours.k_norm.eps = hf_indexer.k_norm.eps
    return ours.eval()


@register("DeepseekV32ForCausalLM")
@torch.no_grad()
def dsa_from_hf(hf_model, **overrides) -> Transformer:
    """Our DSA ``Transformer`` with the weights of a ``DeepseekV32ForCausalLM``: V3's weights (RoPE
    rows de-interleaved) and each layer's indexer."""
    cfg = dsa_config(hf_model.config, **overrides)
    ours = Transformer(cfg).to(device=hf_model.device, dtype=hf_model.dtype)
    copy_weights(ours, hf_model.state_dict(), dsa_table(cfg), to_hf=False, skip=("mtp.",))
    _copy_eps(_layer_attention(ours, hf_model), to_hf=False)
    return ours.eval()


@torch.no_grad()
@exporter("dsa")
def dsa_to_hf(model: Transformer):
    """Our DSA model → a ``DeepseekV32ForCausalLM`` with the same weights (our dtype and device); MTP
    modules are left out (transformers has none). Every Hugging Face weight must be copied."""
    from transformers import DeepseekV32ForCausalLM

    cfg = model.config
    hf = DeepseekV32ForCausalLM(dsa_hf_config(cfg)).to(device=model.device, dtype=model.tok_emb.weight.dtype)
    copy_weights(hf, model.state_dict(), dsa_table(cfg), to_hf=True, skip=("mtp.",))
    _copy_eps(_layer_attention(model, hf), to_hf=True)
    return hf.eval()
