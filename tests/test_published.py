"""helpers.published: real models' sizes, DeepSeek-V3's written once and read by both of its users."""

import pytest

from helpers.published import PUBLISHED, V3, deepseek_v3_config, get_published


def test_v3_config_and_calculator_entry_read_the_same_numbers():
    cfg, entry = deepseek_v3_config(), get_published("DeepSeek-V3")
    for name, value in V3.items():
        assert getattr(cfg, name) == value, name
    assert (entry.n_layers, entry.dim, entry.n_heads) == (cfg.n_layers, cfg.dim, cfg.n_heads)
    assert (entry.kv_lora_rank, entry.qk_rope_head_dim) == (cfg.kv_lora_rank, cfg.qk_rope_head_dim)
    assert entry.uses_mla and cfg.attn_type == "mla"


def test_published_numbers_from_the_report():
    """DeepSeek-V3 report §4.2 and Table 1 of DeepSeek-V2: 61 layers, 256 routed experts, 8 active,
    a 512 + 64 = 576-element latent cache per token per layer."""
    cfg = deepseek_v3_config()
    assert (cfg.n_layers, cfg.n_routed_experts, cfg.n_activated_experts) == (61, 256, 8)
    assert cfg.kv_lora_rank + cfg.qk_rope_head_dim == 576


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="known models"):
        get_published("GPT-5")
    assert "Llama-3-8B" in PUBLISHED
