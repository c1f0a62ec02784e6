"""Build our models from Hugging Face ``transformers`` models with copied weights (and back).

The peer is the independent reference: if our module, loaded with the peer's weights, gives the
peer's logits, both implement the same function. ``from_hf`` dispatches on the model's class; each
architecture has a converter registered in ``CONVERTERS`` (Llama; DeepSeek-V3's attention, its MoE
layer and the whole ``DeepseekV3ForCausalLM``). ``to_hf`` goes the other way: MLA models export to
``DeepseekV3ForCausalLM``, plain MHA/GQA models to ``LlamaForCausalLM``.

- ``common``: the registries, the config checks, and the name tables (``Rule``) with the one copy loop
  (``copy_weights``) that every converter uses in both directions.
- ``llama``: Llama both ways.
- ``deepseek``: DeepSeek-V3 both ways: MLA, DeepSeekMoE (either expert layout), the whole model.
- ``deepseek_v32``: DeepSeek-V3.2 both ways: V3 plus the lightning indexer (sparse attention).
"""

from .common import (
    CONVERTERS,
    DECODER_FIELDS,
    EXPORTERS,
    Rule,
    check_fields,
    copy_weights,
    decoder_table,
    exporter,
    from_hf,
    fuse_experts,
    load_exact,
    nested,
    plain_rope_theta,
    register,
    renamed,
    swiglu,
    to_hf,
    translate,
    unfuse_experts,
)
from .deepseek import (
    DEEPSEEK_FIELDS,
    MOE_TABLE,
    check_deepseek_supported,
    deepseek_config,
    deepseek_from_hf,
    deepseek_hf_config,
    deepseek_table,
    deepseek_to_hf,
    mla_from_hf,
    mla_table,
    mla_to_hf,
    moe_from_hf,
    moe_to_hf,
    rope_deinterleave_perm,
    tiny_deepseek_hf_config,
)
from .deepseek_v32 import (
    DSA_FIELDS,
    INDEXER_TABLE,
    check_dsa_supported,
    dsa_config,
    dsa_from_hf,
    dsa_hf_config,
    dsa_table,
    dsa_to_hf,
    indexer_from_hf,
    tiny_dsa_hf_config,
)
from .llama import (
    LLAMA_FIELDS,
    LLAMA_TABLE,
    llama_config,
    llama_from_hf,
    llama_hf_config,
    llama_to_hf,
    tiny_llama,
)

__all__ = [
    # the registries and the machinery (common)
    "CONVERTERS", "EXPORTERS", "register", "exporter", "from_hf", "to_hf", "check_fields", "plain_rope_theta",
    "DECODER_FIELDS", "Rule", "nested", "renamed", "swiglu", "decoder_table", "translate", "load_exact",
    "unfuse_experts", "fuse_experts", "copy_weights",
    # Llama
    "LLAMA_FIELDS", "LLAMA_TABLE", "llama_config", "llama_from_hf", "llama_hf_config", "llama_to_hf",
    "tiny_llama",
    # DeepSeek-V3
    "DEEPSEEK_FIELDS", "MOE_TABLE", "deepseek_config", "tiny_deepseek_hf_config", "check_deepseek_supported",
    "deepseek_hf_config", "rope_deinterleave_perm", "mla_table", "deepseek_table", "moe_from_hf",
    "moe_to_hf", "mla_from_hf", "mla_to_hf", "deepseek_from_hf", "deepseek_to_hf",
    # DeepSeek-V3.2 (sparse attention)
    "DSA_FIELDS", "INDEXER_TABLE", "check_dsa_supported", "dsa_config", "dsa_from_hf", "dsa_hf_config",
    "dsa_table", "dsa_to_hf", "indexer_from_hf", "tiny_dsa_hf_config",
]
