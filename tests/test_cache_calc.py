"""Cache calculator: published-model numbers equal hand computations from the released configs."""

import matplotlib
import pytest

from helpers import cache_calc as cc

matplotlib.use("Agg")

# Numbers written out from the released configs (layers, heads, head width) and DeepSeek-V2 Table 1.
# Elements per token for all layers; bytes multiply by the dtype's size.
HAND = {
    # Llama-2-7B: 32 layers, H = 32, Dh = 128, released with MHA
    ("Llama-2-7B", "MHA"): 2 * 32 * 32 * 128,
    ("Llama-2-7B", "GQA"): 2 * 32 * 8 * 128,  # G = 8 for a model released with MHA
    ("Llama-2-7B", "MQA"): 2 * 32 * 1 * 128,
    ("Llama-2-7B", "MLA"): 32 * (4 * 128 + 128 // 2),  # Dc = 4 Dh, Dr = Dh / 2
    # Llama-3-8B: 32 layers, H = 32, G = 8, Dh = 128
    ("Llama-3-8B", "MHA"): 2 * 32 * 32 * 128,
    ("Llama-3-8B", "GQA"): 2 * 32 * 8 * 128,
    ("Llama-3-8B", "MQA"): 2 * 32 * 128,
    ("Llama-3-8B", "MLA"): 32 * 576,
    # Llama-3-70B: 80 layers, H = 64, G = 8, Dh = 128
    ("Llama-3-70B", "MHA"): 2 * 80 * 64 * 128,
    ("Llama-3-70B", "GQA"): 2 * 80 * 8 * 128,
    ("Llama-3-70B", "MQA"): 2 * 80 * 128,
    ("Llama-3-70B", "MLA"): 80 * 576,
    # Mistral-7B: 32 layers, H = 32, G = 8, Dh = 128
    ("Mistral-7B", "GQA"): 2 * 32 * 8 * 128,
    # DeepSeek-V3: 61 layers, H = 128, K head 128 + 64, V head 128; MLA caches 512 + 64
    ("DeepSeek-V3", "MHA"): 61 * 128 * (192 + 128),
    ("DeepSeek-V3", "GQA"): 61 * 8 * (192 + 128),
    ("DeepSeek-V3", "MQA"): 61 * (192 + 128),
    ("DeepSeek-V3", "MLA"): 61 * (512 + 64),
}


@pytest.mark.parametrize("model,variant", sorted(HAND))
@pytest.mark.parametrize("dtype,nbytes", [("fp32", 4), ("bf16", 2), ("fp16", 2), ("int8", 1), ("fp8", 1)])
def test_published_numbers(model, variant, dtype, nbytes):
    per_token = HAND[(model, variant)] * nbytes
    assert cc.cache_bytes(model, variant, 1, 1, dtype) == per_token
    assert cc.cache_bytes(model, variant, 4096, 8, dtype) == per_token * 4096 * 8


def test_headline_values():
    assert cc.cache_bytes("Llama-2-7B", "MHA", 1, 1, "fp16") == 524_288  # 2·32·32·128·2
    assert cc.elements_per_token_per_layer("DeepSeek-V3", "MHA") == 40_960
    assert cc.elements_per_token_per_layer("DeepSeek-V3", "MLA") == 576
    # Llama-3-8B at its 8K context in bf16: exactly 1 GiB per sequence
    assert cc.cache_bytes("Llama-3-8B", "GQA", 8192, 1, "bf16") == 2 ** 30
    # MLA with Dc = 4 Dh, Dr = Dh / 2 caches like GQA with 2.25 groups (DeepSeek-V2 Table 1)
    ratio = cc.cache_bytes("Llama-2-7B", "MLA", 100) / cc.cache_bytes("Llama-2-7B", "MQA", 100)
    assert ratio == 2.25


def test_table_and_weights():
    rows = cc.cache_table("Llama-3-70B", 8192, 4, "bf16")
    assert [r.variant for r in rows] == list(cc.VARIANTS)
    assert [r.kv_heads for r in rows] == [64, 8, 1, None]
    gqa = rows[1]
    assert gqa.bytes_per_token == 2 * 80 * 8 * 128 * 2
    assert gqa.total_bytes == gqa.bytes_per_token * 8192 * 4
    assert gqa.weight_bytes == round(70.6e9 * 2)
    assert cc.weight_bytes("DeepSeek-V3", "fp8") == 671_000_000_000
    assert rows[0].total_bytes > rows[1].total_bytes > rows[3].total_bytes > rows[2].total_bytes


def test_variant_labels():
    assert cc.variant_label("Llama-2-7B", "GQA") == "GQA (G=8)"
    assert cc.variant_label("Mistral-7B", "MHA") == "MHA (G=32)"
    assert cc.variant_label("DeepSeek-V3", "MLA") == "MLA (512+64)"


@pytest.mark.parametrize("kwargs,match", [
    ({"context_len": 0}, "context_len"),
    ({"context_len": -5}, "context_len"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": -1}, "batch_size"),
    ({"dtype": "fp64"}, "unknown dtype"),
    ({"model": "GPT-5"}, "unknown model"),
    ({"variant": "MoE"}, "unknown variant"),
])
def test_bad_requests(kwargs, match):
    args = {"model": "Llama-3-8B", "variant": "GQA", "context_len": 128, "batch_size": 1, "dtype": "bf16"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cc.cache_bytes(**args)


def test_bad_table_request():
    with pytest.raises(ValueError, match="unknown model"):
        cc.cache_table("llama-3-8b", 128)
    with pytest.raises(ValueError, match="context_len"):
        cc.cache_table("Llama-3-8B", -1)


def test_static_figure_and_widget_build():
    fig = cc.cache_size_figure("DeepSeek-V3", batch_size=2, dtype="fp8", context_len=4096)
    ax = fig.axes[0]
    assert len(ax.lines) == 4 * 2 + 1  # four variant curves + their markers, and the weight line
    assert cc.context_grid(4096, 256) == [256, 512, 1024, 2048, 4096]
    assert cc.context_grid(163840)[-1] == 163840
    box = cc.calculator_widget("Mistral-7B", 4096, 2, "fp16")
    table = box.children[2].value
    expected = cc.format_bytes(cc.cache_bytes("Mistral-7B", "GQA", 4096, 2, "fp16"))
    assert "Mistral-7B" in table and expected in table
