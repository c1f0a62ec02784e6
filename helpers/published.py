"""Published configurations of real models, as data (used by the cache calculators).

Sources: each model's released ``config.json`` on its official repository (Llama-2-7b-hf,
Meta-Llama-3-8B, Meta-Llama-3-70B, Mistral-7B-v0.1) and DeepSeek-V3's
``inference/configs/config_671B.json`` (numbers also in the course REFERENCE).
Parameter counts are the published totals. Only Mistral-7B (v0.1) uses sliding-window attention; no
model here mixes windowed and full-attention layers, so a window, where there is one, covers every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ModelConfig

# DeepSeek-V3's real sizes, written once: the cache calculator's entry below and ``deepseek_v3_config``
# (the same numbers as one of our ``ModelConfig``s, for the parameter and cache bills) both read them.
V3_SOURCE = "deepseek-ai/DeepSeek-V3 inference/configs/config_671B.json"
V3 = dict(
    vocab_size=129280, dim=7168, n_layers=61, n_dense_layers=3, inter_dim=18432, n_heads=128,
    max_seq_len=163840, attn_type="mla", q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
    qk_rope_head_dim=64, v_head_dim=128, n_routed_experts=256, n_activated_experts=8,
    n_shared_experts=1, moe_inter_dim=2048, n_expert_groups=8, n_limited_groups=4,
    score_func="sigmoid", route_scale=2.5, balance="loss_free+seq_aux", aux_loss_alpha=1e-4,
    bias_update_speed=1e-3, mtp_depth=1, mtp_lambda=0.3)


@dataclass(frozen=True)
class PublishedModel:
    name: str
    n_layers: int  # l
    dim: int  # D
    n_heads: int  # H
    n_kv_heads: int  # G as released (equal to H for MHA models)
    head_dim: int  # Dh (for DeepSeek-V3: the value head width Dv)
    n_params: float  # total parameters
    max_seq_len: int  # released context length
    # MLA fields: only DeepSeek-V3 has them (0 elsewhere)
    kv_lora_rank: int = 0  # Dc
    qk_nope_head_dim: int = 0  # Dn
    qk_rope_head_dim: int = 0  # Dr
    v_head_dim: int = 0  # Dv
    n_active_params: float | None = None  # per token, for MoE models
    # Sliding-window attention: every layer attends to (and a rolling cache keeps) only the last
    # ``sliding_window`` positions; None = full attention. The config field of the same name.
    sliding_window: int | None = None
    source: str = ""

    @property
    def uses_mla(self) -> bool:
        return self.kv_lora_rank > 0


PUBLISHED: dict[str, PublishedModel] = {
    m.name: m
    for m in [
        PublishedModel("Llama-2-7B", n_layers=32, dim=4096, n_heads=32, n_kv_heads=32, head_dim=128,
                       n_params=6.74e9, max_seq_len=4096, source="meta-llama/Llama-2-7b-hf config.json"),
        PublishedModel("Llama-3-8B", n_layers=32, dim=4096, n_heads=32, n_kv_heads=8, head_dim=128,
                       n_params=8.03e9, max_seq_len=8192, source="meta-llama/Meta-Llama-3-8B config.json"),
        PublishedModel("Llama-3-70B", n_layers=80, dim=8192, n_heads=64, n_kv_heads=8, head_dim=128,
                       n_params=70.6e9, max_seq_len=8192,
                       source="meta-llama/Meta-Llama-3-70B config.json"),
        # v0.1's config.json: "max_position_embeddings": 32768, "sliding_window": 4096 (on every
        # layer). v0.2 and v0.3 set "sliding_window": null; no Llama config has a window.
        PublishedModel("Mistral-7B", n_layers=32, dim=4096, n_heads=32, n_kv_heads=8, head_dim=128,
                       n_params=7.24e9, max_seq_len=32768, sliding_window=4096,
                       source="mistralai/Mistral-7B-v0.1 config.json"),
        PublishedModel("DeepSeek-V3", n_layers=V3["n_layers"], dim=V3["dim"], n_heads=V3["n_heads"],
                       n_kv_heads=V3["n_heads"], head_dim=V3["v_head_dim"], n_params=671e9,
                       max_seq_len=V3["max_seq_len"], kv_lora_rank=V3["kv_lora_rank"],
                       qk_nope_head_dim=V3["qk_nope_head_dim"], qk_rope_head_dim=V3["qk_rope_head_dim"],
                       v_head_dim=V3["v_head_dim"], n_active_params=37e9, source=V3_SOURCE),
    ]
}


def get_published(name: str) -> PublishedModel:
    """Look a model up by name; an unknown name raises ``ValueError`` listing the known ones."""
    if name not in PUBLISHED:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(PUBLISHED)}")
    return PUBLISHED[name]


def deepseek_v3_config() -> ModelConfig:
    """DeepSeek-V3's real sizes (``V3``) as one of our configs: for the parameter and cache bills only
    (never build it: 671B parameters)."""
    return ModelConfig(**V3)
