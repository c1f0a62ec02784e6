"""Cache calculator: published-model numbers equal hand computations from the released configs; a
sliding window caps the cache; the live plot's curves are named and fill their axis."""

import math
import re

import matplotlib
import pytest

from helpers.lessons import cache_calc as cc
from helpers.published import PUBLISHED

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
    calc = cc.calculator_widget("Mistral-7B", 4096, 2, "fp16")
    table = calc.table.value
    expected = cc.format_bytes(cc.cache_bytes("Mistral-7B", "GQA", 4096, 2, "fp16"))
    assert "Mistral-7B" in table and expected in table and "window" not in table
    calc.controls["context"].value = 32768
    assert "capped at the 4,096-token window" in calc.table.value


# --- sliding windows ------------------------------------------------------------------------------
def test_only_mistral_7b_v01_has_a_window():
    # config.json "sliding_window": Mistral-7B-v0.1 4096; Llama-2/3 and DeepSeek-V3 have none
    windows = {name: m.sliding_window for name, m in PUBLISHED.items() if m.sliding_window is not None}
    assert windows == {"Mistral-7B": 4096}


@pytest.mark.parametrize("variant", cc.VARIANTS)
def test_a_windowed_cache_stops_growing_at_the_window(variant):
    at = {s: cc.cache_bytes("Mistral-7B", variant, s, 2, "bf16") for s in (2048, 4096, 4097, 32768)}
    assert at[32768] == at[4097] == at[4096] == 2 * at[2048]
    assert cc.cached_positions("Mistral-7B", 32768) == 4096 and cc.cached_positions("Mistral-7B", 100) == 100


@pytest.mark.parametrize("model", ["Llama-2-7B", "Llama-3-8B", "DeepSeek-V3"])
def test_a_cache_without_a_window_grows_linearly(model):
    one = cc.cache_bytes(model, "GQA", 1)
    for s in cc.context_grid(PUBLISHED[model].max_seq_len):
        assert cc.cache_bytes(model, "GQA", s) == s * one
    assert cc.window_note(model, PUBLISHED[model].max_seq_len) == ""


def test_the_table_says_when_the_window_caps_the_cache():
    rows = cc.cache_table("Mistral-7B", 32768)
    assert all(r.capped and r.cached_positions == 4096 for r in rows)
    assert rows[1].total_bytes == rows[1].bytes_per_token * 4096
    assert not any(r.capped for r in cc.cache_table("Mistral-7B", 4096))
    assert "capped at the 4,096-token window" in cc.format_table("Mistral-7B", 32768)
    assert "window" not in cc.format_table("Mistral-7B", 4096)
    assert "window" not in cc.format_table("Llama-3-8B", 8192)


def test_static_figure_flattens_after_the_window():
    fig = cc.cache_size_figure("Mistral-7B", context_len=16384)
    ax = fig.axes[0]
    gqa = next(line for line in ax.lines if line.get_label() == "GQA (G=8)")
    xs, ys = list(gqa.get_xdata()), list(gqa.get_ydata())
    assert 4096 in xs and xs[-1] == 32768
    assert len({y for x, y in zip(xs, ys) if x >= 4096}) == 1  # flat from the window on
    assert ys[xs.index(2048)] * 2 == ys[xs.index(4096)]
    labels = ax.get_legend_handles_labels()[1]
    assert "sliding window (4,096 tokens)" in labels and any(lb.startswith("model weights") for lb in labels)


# --- the live calculator's plot ------------------------------------------------------------------
def plotted(calc):
    return [t for t in calc.figure.data if t.visible is not False]


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_every_trace_is_named_and_the_curves_fill_the_axis(model):
    calc = cc.calculator_widget("Llama-3-8B", 4096)
    calc.controls["model"].value = model
    names = [t.name for t in calc.figure.data]
    assert all(n and not re.fullmatch(r"trace \d+", n) for n in names), names
    assert any(n.startswith("model weights") for n in names)
    lo, hi = calc.figure.layout.xaxis.range  # log10 units
    span = hi - lo
    for trace in plotted(calc)[:4]:  # the four variant curves
        logs = [math.log10(x) for x in trace.x]
        assert logs[0] - lo < 0.05 * span and hi - logs[-1] < 0.05 * span  # from one end to the other
        assert max(b - a for a, b in zip(logs, logs[1:])) < span / 3  # and spread, not bunched
    assert trace.x[0] == 256 and trace.x[-1] == PUBLISHED[model].max_seq_len
    window = calc.figure.data[5]
    assert (window.visible is not False) == (model == "Mistral-7B")


def test_the_axis_reaches_a_chosen_context_beyond_the_release():
    calc = cc.calculator_widget("Llama-2-7B", 4096)
    calc.controls["context"].value = 2 ** 17
    xs = calc.figure.data[0].x
    assert xs[-1] == 2 ** 17 and math.log10(xs[-1]) <= calc.figure.layout.xaxis.range[1]
    assert list(calc.figure.data[6].x) == [2 ** 17] * 4  # the chosen-context markers


def test_a_saved_notebook_shows_one_line_not_the_widget_repr(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append(obj))
    calc = cc.calculator_widget("Llama-2-7B", 4096)
    assert repr(calc) == cc.CALCULATOR_FALLBACK_TEXT and "\n" not in repr(calc)
    calc._ipython_display_()  # what display(calc) and a cell ending in calc call
    (bundle,) = shown
    assert bundle["text/plain"] == cc.CALCULATOR_FALLBACK_TEXT
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == calc.widget.model_id
