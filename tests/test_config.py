import pytest

from helpers.config import PRESETS, ModelConfig, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid(name):
    cfg = preset(name)
    assert cfg.dim == cfg.hd * cfg.n_heads or cfg.head_dim is not None


def test_derived_sizes():
    cfg = ModelConfig(dim=64, n_heads=8, n_kv_heads=2)
    assert (cfg.hd, cfg.kv_heads) == (8, 2)
    assert ModelConfig(dim=64, n_heads=8).kv_heads == 8


@pytest.mark.parametrize("changes, words", [
    (dict(dim=30, n_heads=4), ["dim=30", "n_heads=4"]),
    (dict(dim=0), ["dim=0"]),
    (dict(n_layers=-1), ["n_layers=-1"]),
    (dict(n_heads=4, n_kv_heads=3), ["n_heads=4", "n_kv_heads=3"]),
    (dict(attn_type="linear"), ["attn_type='linear'"]),
    (dict(n_routed_experts=4, n_activated_experts=5), ["n_activated_experts=5", "n_routed_experts=4"]),
    (dict(n_routed_experts=6, n_expert_groups=4), ["n_routed_experts=6", "n_expert_groups=4"]),
    (dict(balance="magic"), ["balance='magic'"]),
    (dict(qk_rope_head_dim=7), ["qk_rope_head_dim=7"]),
])
def test_invalid_configs_name_fields_and_values(changes, words):
    with pytest.raises(ValueError) as err:
        ModelConfig(**changes)
    for w in words:
        assert w in str(err.value)


def test_frozen_and_replace_validates():
    cfg = preset("test")
    with pytest.raises(AttributeError):
        cfg.dim = 128
    assert cfg.replace(n_kv_heads=2).kv_heads == 2
    with pytest.raises(ValueError, match="n_kv_heads=3"):
        cfg.replace(n_kv_heads=3)
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        cfg.replace(dimm=3)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")
