"""Llama both ways: our plain MHA/GQA/MQA ``Transformer`` ↔ ``transformers.LlamaForCausalLM``."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..model import Transformer
from .common import (
    DECODER_FIELDS,
    check_fields,
    copy_weights,
    decoder_table,
    exporter,
    read_config,
    register,
    renamed,
    write_config,
)

# Hugging Face LlamaConfig field → our ModelConfig field (head_dim and rope_theta are read apart).
LLAMA_FIELDS = {**DECODER_FIELDS, "num_key_value_heads": "n_kv_heads"}

# Our weight names ↔ LlamaForCausalLM's: the shared decoder skeleton plus the four attention projections.
LLAMA_TABLE = decoder_table(renamed([("wq", "q_proj"), ("wk", "k_proj"), ("wv", "v_proj"), ("wo", "o_proj")]))


def llama_config(hf_cfg, **overrides) -> ModelConfig:
    """Our ``ModelConfig`` for a Hugging Face ``LlamaConfig``; unsupported settings (biases, another
    activation, RoPE scaling) raise ``ValueError`` naming the field."""
    check_fields(hf_cfg, attention_bias=False, mlp_bias=False, hidden_act="silu", pretraining_tp=1)
    head_dim = getattr(hf_cfg, "head_dim", None)
    if head_dim == hf_cfg.hidden_size // hf_cfg.num_attention_heads:
        head_dim = None  # the default D / H: keep the config canonical
    return read_config(hf_cfg, LLAMA_FIELDS, **{"head_dim": head_dim, **overrides})


@register("LlamaForCausalLM")
@torch.no_grad()
def llama_from_hf(hf_model, **overrides) -> Transformer:
    cfg = llama_config(hf_model.config, **overrides)
    ours = Transformer(cfg).to(dtype=hf_model.dtype)
    copy_weights(ours, hf_model.state_dict(), LLAMA_TABLE, to_hf=False)
    return ours.to(hf_model.device).eval()


def llama_hf_config(cfg: ModelConfig):
    """A ``transformers.LlamaConfig`` with the sizes of our (MHA/GQA) config."""
    from transformers import LlamaConfig

    if cfg.attn_type != "mha" or cfg.is_moe or cfg.mtp_depth:
        raise ValueError("llama_hf_config needs a plain MHA/GQA config (attn_type='mha', no MoE/MTP)")
    return write_config(LlamaConfig, cfg, LLAMA_FIELDS, num_key_value_heads=cfg.kv_heads, head_dim=cfg.hd,
                        attention_bias=False, mlp_bias=False)


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
    copy_weights(hf, model.state_dict(), LLAMA_TABLE, to_hf=True)
    return hf.to(model.device)


@exporter("mha")
def _export_llama(model: Transformer, **kwargs):
    cfg = model.config
    if cfg.is_moe or cfg.mtp_depth:
        raise ValueError(f"to_hf: an attn_type='mha' model with n_routed_experts={cfg.n_routed_experts} / "
                         f"mtp_depth={cfg.mtp_depth} has no transformers counterpart here; export MLA "
                         "models (DeepseekV3ForCausalLM) or plain MHA/GQA ones (LlamaForCausalLM)")
    return llama_to_hf(model, **kwargs)
