"""helpers.interop.common: the package face, the registries, the name tables and the copy loop."""

from types import SimpleNamespace

import pytest
import torch

import helpers.interop as interop
from helpers import Transformer, preset
from helpers.interop import (
    Rule,
    copy_weights,
    fuse_experts,
    nested,
    plain_rope_theta,
    swiglu,
    translate,
    unfuse_experts,
)

# Every public name of the former single-module helpers/interop.py, still importable from the package.
OLD_NAMES = [
    "CONVERTERS", "register", "from_hf", "llama_config", "llama_from_hf", "llama_hf_config", "tiny_llama",
    "llama_to_hf", "DEEPSEEK_FIELDS", "deepseek_config", "tiny_deepseek_hf_config", "moe_from_hf",
    "rope_deinterleave_perm", "mla_from_hf", "check_deepseek_supported", "deepseek_from_hf",
    "deepseek_hf_config", "deepseek_to_hf", "to_hf",
]


def test_package_face_keeps_every_old_name():
    missing = [name for name in OLD_NAMES if not hasattr(interop, name)]
    assert not missing
    assert set(interop.__all__) >= set(OLD_NAMES)
    assert all(hasattr(interop, name) for name in interop.__all__)
    assert {"LlamaForCausalLM", "DeepseekV3ForCausalLM", "DeepseekV3Attention", "DeepseekV3MoE"} \
        <= set(interop.CONVERTERS)
    assert set(interop.EXPORTERS) == {"mha", "mla", "dsa"}  # "dsa": MLA with DeepSeek-V3.2's indexer


def test_translate_both_ways_with_placeholders_and_rows():
    rows = torch.tensor([2, 0, 1])
    table = nested([Rule("w.weight", "proj.weight", rows), *swiglu("ffn.", "mlp.")],
                   "layers.{i}.", "model.layers.{i}.")
    ours = {"layers.0.w.weight": torch.arange(3.0), "layers.12.ffn.w3.weight": torch.ones(2),
            "layers.3.empty": torch.empty(0)}  # an empty tensor carries nothing: left out
    theirs = translate(ours, table, to_hf=True)
    assert set(theirs) == {"model.layers.0.proj.weight", "model.layers.12.mlp.up_proj.weight"}
    assert theirs["model.layers.0.proj.weight"][rows].tolist() == [0.0, 1.0, 2.0]  # ours = theirs[rows]
    back = translate(theirs, table, to_hf=False)
    assert set(back) == {"layers.0.w.weight", "layers.12.ffn.w3.weight"}
    assert all(torch.equal(back[k], ours[k]) for k in back)
    assert translate({"mtp.0.w.weight": torch.ones(1)}, table, to_hf=True, drop=("mtp.",)) == {}
    with pytest.raises(ValueError, match="no ours → Hugging Face rule.*layers.0.bias"):
        translate({"layers.0.bias": torch.ones(1)}, table, to_hf=True)


def test_fused_experts_round_trip_exactly():
    E, I, D = 3, 4, 5
    fused = {"mlp.experts.gate_up_proj": torch.randn(E, 2 * I, D),  # [gate; up] rows per expert
             "mlp.experts.down_proj": torch.randn(E, D, I),
             "mlp.shared_experts.gate_proj.weight": torch.randn(I, D)}
    per_expert = unfuse_experts(fused)
    assert len(per_expert) == 3 * E + 1
    assert torch.equal(per_expert["mlp.experts.1.gate_proj.weight"], fused["mlp.experts.gate_up_proj"][1, :I])
    assert torch.equal(per_expert["mlp.experts.2.up_proj.weight"], fused["mlp.experts.gate_up_proj"][2, I:])
    again = fuse_experts(per_expert)
    assert set(again) == set(fused) and all(torch.equal(again[k], fused[k]) for k in fused)
    assert unfuse_experts(per_expert) == per_expert  # already per expert: unchanged


def test_copy_weights_refuses_a_weight_left_out():
    ours = Transformer(preset("test"))
    state = {k: v for k, v in ours.state_dict().items() if k != "norm.weight"}
    with pytest.raises(RuntimeError, match=r"uncopied: \['norm.weight'\]"):
        copy_weights(ours, state, [Rule(name, name) for name in state], to_hf=False)


@pytest.mark.parametrize("hf_cfg, theta", [
    (SimpleNamespace(rope_parameters={"rope_type": "default", "rope_theta": 5e4}), 5e4),  # transformers 5
    (SimpleNamespace(rope_scaling=None, rope_theta=1e4), 1e4),  # transformers 4, plain RoPE
])
def test_plain_rope_theta_reads_either_release(hf_cfg, theta):
    assert plain_rope_theta(hf_cfg) == theta
    with pytest.raises(ValueError, match="no rope_theta"):
        plain_rope_theta(SimpleNamespace(rope_scaling=None))


@pytest.mark.parametrize("settings", [
    dict(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}),
    dict(rope_scaling={"type": "linear", "factor": 2.0}, rope_theta=1e4),  # the older key
    dict(rope_scaling={"rope_type": "dynamic", "factor": 2.0}, rope_theta=1e4),
])
def test_rope_scaling_is_refused_under_either_key(settings):
    with pytest.raises(ValueError, match=r"rope_type='\w+' \(RoPE scaling\) is not supported.*because"):
        plain_rope_theta(SimpleNamespace(**settings), why=", because")

