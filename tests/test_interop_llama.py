"""helpers.interop.llama: Llama both ways against transformers' LlamaForCausalLM."""

import pytest
import torch

from helpers.config import ModelConfig
from helpers.interop import from_hf, llama_to_hf, tiny_llama

CONFIGS = [
    ModelConfig(dim=32, n_layers=2, n_heads=4, inter_dim=64, max_seq_len=32),
    ModelConfig(dim=48, n_layers=1, n_heads=6, n_kv_heads=2, inter_dim=80, max_seq_len=32,
                rope_theta=500000.0, norm_eps=1e-5),
    ModelConfig(dim=32, n_layers=3, n_heads=2, n_kv_heads=1, head_dim=8, inter_dim=40, max_seq_len=32,
                tie_embeddings=True),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["mha", "gqa-theta", "mqa-tied-headdim"])
def test_llama_logits_agree(cfg):
    hf = tiny_llama(cfg, seed=1)
    ours = from_hf(hf)
    def spelled_out(c):
        return c.replace(n_kv_heads=c.kv_heads, head_dim=c.hd)

    assert spelled_out(ours.config) == spelled_out(cfg)  # every field that matters was read from HF
    idx = torch.randint(0, cfg.vocab_size, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), hf(idx).logits, atol=1e-5, rtol=1e-5)


def test_round_trip_to_hf():
    cfg = CONFIGS[1]
    ours = from_hf(tiny_llama(cfg, seed=2))
    back = llama_to_hf(ours)
    idx = torch.randint(0, cfg.vocab_size, (1, 16))
    with torch.no_grad():
        torch.testing.assert_close(back(idx).logits, ours(idx), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["mha", "gqa-theta", "mqa-tied-headdim"])
def test_round_trips_are_exact(cfg):
    """HF → ours → HF and ours → HF → ours give the very same tensors, name for name."""
    hf = tiny_llama(cfg, seed=3)
    back = llama_to_hf(from_hf(hf))
    assert list(back.state_dict()) == list(hf.state_dict())
    for (name, p), q in zip(hf.state_dict().items(), back.state_dict().values()):
        assert torch.equal(p, q), name
    ours = from_hf(back)
    again = from_hf(llama_to_hf(ours))
    for (name, p), q in zip(ours.state_dict().items(), again.state_dict().values()):
        assert torch.equal(p, q), name


def test_unsupported_models_and_fields():
    with pytest.raises(ValueError, match="does not support"):
        from_hf(torch.nn.Linear(2, 2))
    hf = tiny_llama(CONFIGS[0])
    hf.config.attention_bias = True
    with pytest.raises(ValueError, match="attention_bias"):
        from_hf(hf)


def test_rope_scaling_is_refused():
    hf = tiny_llama(CONFIGS[0])
    hf.config.rope_parameters = {"rope_type": "llama3", "factor": 8.0, "rope_theta": 10000.0}
    with pytest.raises(ValueError, match="rope_type='llama3'"):
        from_hf(hf)
