"""The KV cache's memory bill for published models (lesson 01, section 5; DeepSeek-V2 Table 1).

Elements cached per token and layer, for a model with H query heads of width Dh:

==========  ==================  ===============================================================
variant     per token per layer  here
==========  ==================  ===============================================================
MHA         2 · H · Dh           every query head has its own K and V head
GQA         2 · G · Dh           G K/V heads as released; G = 8 for models released with MHA
MQA         2 · Dh               one K/V head shared by all query heads
MLA         Dc + Dr              a latent of Dc = 4·Dh plus one RoPE key of Dr = Dh/2 (the DeepSeek-V2
                                 Table 1 setting, 4.5·Dh); DeepSeek-V3 uses its released 512 + 64
==========  ==================  ===============================================================

DeepSeek-V3's keys and values have different widths (K: Dn + Dr = 128 + 64, V: Dv = 128), so its
MHA-equivalent is ``H · (Dn + Dr) + H · Dv = 128 · (192 + 128) = 40,960`` elements per token per layer
and its GQA/MQA variants use the same ``(Dn + Dr) + Dv`` per K/V head. Bytes = elements × layers ×
tokens × batch × bytes per element. Weight memory = parameters × bytes per element (all parameters,
so for an MoE model the memory to hold it, not the compute per token).

**Sliding windows.** A model whose layers attend only to the last ``sliding_window`` positions (the
config field; here Mistral-7B v0.1, 4,096) needs to keep only those: its rolling cache stops growing at
the window, so the positions cached are ``min(S, sliding_window)`` (``cached_positions``). Every model
in the table is either windowed on every layer or on none.

``calculator_widget()`` is the live calculator (ipywidgets); ``cache_size_figure()`` draws the same
plot statically for readers without a kernel.

Shape letters (``docs/GLOSSARY.md``): l layers, H query heads, G KV heads, Dh head width, Dc KV latent
width, Dr RoPE key width, Dn / Dv non-RoPE key / value head width, B batch, S context length (tokens
cached, or the sliding window where that is smaller).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..kv_cache import kv_elements_per_token, mla_elements_per_token
from ..published import PUBLISHED, PublishedModel, get_published
from ..viz.live import show_widget
from ..viz.style import PALETTE  # one colour per variant, the same in every lesson (and "weights")

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1, "fp8": 1}
VARIANTS = ("MHA", "GQA", "MQA", "MLA")
GQA_GROUPS_FOR_MHA_MODELS = 8  # G used for the GQA variant of a model released with MHA
GIB = 2 ** 30


def bytes_per_element(dtype: str) -> int:
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {list(DTYPE_BYTES)}")
    return DTYPE_BYTES[dtype]


def _model(model: str | PublishedModel) -> PublishedModel:
    return model if isinstance(model, PublishedModel) else get_published(model)


def kv_head_width(m: PublishedModel) -> int:
    """Elements one K/V head pair caches per token: ``Dh + Dh``, or ``(Dn + Dr) + Dv`` for MLA models."""
    if m.uses_mla:
        return kv_elements_per_token(1, 1, m.qk_nope_head_dim + m.qk_rope_head_dim, m.v_head_dim)
    return kv_elements_per_token(1, 1, m.head_dim)


def variant_kv_heads(model: str | PublishedModel, variant: str) -> int | None:
    """G for the MHA/GQA/MQA variants (``None`` for MLA, which caches a latent instead of heads)."""
    m = _model(model)
    if variant == "MHA":
        return m.n_heads
    if variant == "GQA":
        return m.n_kv_heads if m.n_kv_heads < m.n_heads else GQA_GROUPS_FOR_MHA_MODELS
    if variant == "MQA":
        return 1
    if variant == "MLA":
        return None
    raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")


def mla_dims(model: str | PublishedModel) -> tuple[int, int]:
    """(Dc, Dr): the released ranks for an MLA model, else Dc = 4·Dh and Dr = Dh/2 (DeepSeek-V2 Table 1)."""
    m = _model(model)
    if m.uses_mla:
        return m.kv_lora_rank, m.qk_rope_head_dim
    return 4 * m.head_dim, m.head_dim // 2


def elements_per_token_per_layer(model: str | PublishedModel, variant: str) -> int:
    m = _model(model)
    g = variant_kv_heads(m, variant)
    if g is None:
        return mla_elements_per_token(1, *mla_dims(m))
    return g * kv_head_width(m)


def _check_positive(**values) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name}={v!r} must be a positive int")


def cached_positions(model: str | PublishedModel, context_len: int) -> int:
    """Positions each layer keeps at a context of S tokens: S, or the sliding window once S exceeds it."""
    _check_positive(context_len=context_len)
    window = _model(model).sliding_window
    return context_len if window is None else min(context_len, window)


def window_note(model: str | PublishedModel, context_len: int) -> str:
    """'' or, when a sliding window caps the cache at this context, a line that says so."""
    m = _model(model)
    if cached_positions(m, context_len) == context_len:
        return ""
    return (f"capped at the {m.sliding_window:,}-token window: every layer keeps only the last "
            f"{m.sliding_window:,} positions of the {context_len:,}")


def cache_bytes(model: str | PublishedModel, variant: str, context_len: int, batch_size: int = 1,
                dtype: str = "bf16") -> int:
    """Bytes of the whole cache: elements per token per layer × layers × positions cached × B × bytes
    per element (positions cached: S, or the sliding window if the model has one and S exceeds it)."""
    _check_positive(context_len=context_len, batch_size=batch_size)
    m = _model(model)
    return (elements_per_token_per_layer(m, variant) * m.n_layers * cached_positions(m, context_len)
            * batch_size * bytes_per_element(dtype))


def weight_bytes(model: str | PublishedModel, dtype: str = "bf16") -> int:
    """Bytes to hold every parameter at ``dtype``."""
    return round(_model(model).n_params * bytes_per_element(dtype))


@dataclass(frozen=True)
class CacheSize:
    model: str
    variant: str  # MHA, GQA, MQA or MLA
    kv_heads: int | None  # G for MHA/GQA/MQA, None for MLA
    elements_per_token_per_layer: int
    bytes_per_token: int  # all layers, one sequence, per cached position
    total_bytes: int  # × positions cached × batch
    weight_bytes: int  # the model's parameters at the same dtype
    context_len: int  # S asked for
    cached_positions: int  # S, or the sliding window when it is smaller

    @property
    def capped(self) -> bool:
        """True when a sliding window keeps the cache below the context length."""
        return self.cached_positions < self.context_len

    @property
    def total_gib(self) -> float:
        return self.total_bytes / GIB

    @property
    def cache_over_weights(self) -> float:
        return self.total_bytes / self.weight_bytes


def cache_table(model: str, context_len: int, batch_size: int = 1, dtype: str = "bf16") -> list[CacheSize]:
    """One ``CacheSize`` per variant (MHA, GQA, MQA, MLA) of a published model."""
    m = get_published(model)
    wb = weight_bytes(m, dtype)
    rows = []
    for variant in VARIANTS:
        per_layer = elements_per_token_per_layer(m, variant)
        rows.append(CacheSize(m.name, variant, variant_kv_heads(m, variant), per_layer,
                              per_layer * m.n_layers * bytes_per_element(dtype),
                              cache_bytes(m, variant, context_len, batch_size, dtype), wb,
                              context_len, cached_positions(m, context_len)))
    return rows


def variant_label(model: str, variant: str) -> str:
    """E.g. 'GQA (G=8)', 'MLA (512+64)'."""
    g = variant_kv_heads(model, variant)
    if g is None:
        dc, dr = mla_dims(model)
        return f"MLA ({dc}+{dr})"
    return f"{variant} (G={g})"


def format_bytes(n: float) -> str:
    for unit, size in [("TiB", 2 ** 40), ("GiB", GIB), ("MiB", 2 ** 20), ("KiB", 2 ** 10)]:
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def format_table(model: str, context_len: int, batch_size: int = 1, dtype: str = "bf16") -> str:
    """A plain-text table of ``cache_table`` (for notebooks; the widget shows the same as HTML), with a
    line under the title when a sliding window caps the cache."""
    rows = cache_table(model, context_len, batch_size, dtype)
    note = window_note(model, context_len)
    lines = [f"{model}: context {context_len:,} tokens, batch {batch_size}, {dtype}; "
             f"weights {format_bytes(rows[0].weight_bytes)}", *([f"cache {note}"] if note else []),
             f"{'variant':<14}{'elem/token/layer':>18}{'bytes/token':>14}{'cache':>13}{'cache/weights':>15}"]
    for r in rows:
        lines.append(f"{variant_label(model, r.variant):<14}{r.elements_per_token_per_layer:>18,}"
                     f"{r.bytes_per_token:>14,}{format_bytes(r.total_bytes):>13}{r.cache_over_weights:>15.3f}")
    return "\n".join(lines)


# --- plots ----------------------------------------------------------------------------------------
def context_grid(max_len: int, start: int = 256) -> list[int]:
    """Powers of two from ``start`` up to ``max_len`` (``max_len`` itself included)."""
    _check_positive(max_len=max_len, start=start)
    grid = [2 ** k for k in range(int(math.log2(start)), int(math.log2(max_len)) + 1) if 2 ** k >= start]
    if not grid or grid[-1] != max_len:
        grid.append(max_len)
    return grid


def plot_contexts(model: str | PublishedModel, max_len: int | None = None, start: int = 256) -> list[int]:
    """The x samples of a plot: ``context_grid`` from ``start`` to ``max_len`` (default: the model's
    released context), evenly spaced on a log axis, plus the sliding window so the bend is drawn where
    it is."""
    m = _model(model)
    grid = context_grid(max_len or m.max_seq_len, start)
    if m.sliding_window is not None and grid[0] < m.sliding_window < grid[-1]:
        grid = sorted(set(grid) | {m.sliding_window})
    return grid


def _short(n: int) -> str:
    return f"{n // 2 ** 20}M" if n >= 2 ** 20 else f"{n // 2 ** 10}K" if n >= 2 ** 10 else str(n)


def _weights_label(model: str | PublishedModel, dtype: str) -> str:
    return f"model weights ({format_bytes(weight_bytes(model, dtype))})"


def _window_label(m: PublishedModel) -> str:
    return f"sliding window ({m.sliding_window:,} tokens)"


def cache_size_figure(model: str, batch_size: int = 1, dtype: str = "bf16",
                      context_len: int | None = None, max_len: int | None = None, ax=None):
    """Static matplotlib figure: cache GiB against context length for the four variants, the weight
    memory as a dashed line, a marker at ``context_len`` and, for a windowed model, a dotted line at the
    window (where its curves flatten). Returns the figure."""
    import matplotlib.pyplot as plt

    m = get_published(model)
    contexts = plot_contexts(m, max_len)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
    else:
        fig = ax.figure
    for variant in VARIANTS:
        gib = [cache_bytes(m, variant, s, batch_size, dtype) / GIB for s in contexts]
        ax.plot(contexts, gib, marker="o", ms=3, color=PALETTE[variant], label=variant_label(model, variant))
        if context_len is not None:
            ax.plot([context_len], [cache_bytes(m, variant, context_len, batch_size, dtype) / GIB],
                    "o", ms=8, mfc="none", color=PALETTE[variant])
    ax.axhline(weight_bytes(m, dtype) / GIB, color=PALETTE["weights"], ls="--",
               label=_weights_label(m, dtype))
    if m.sliding_window is not None and m.sliding_window < contexts[-1]:
        ax.axvline(m.sliding_window, color="gray", ls=":", lw=1, label=_window_label(m))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context length S (tokens)")
    ax.set_ylabel("memory (GiB)")
    ax.set_title(f"{model}: KV cache, batch {batch_size}, {dtype}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")  # curves rise to the upper right
    fig.tight_layout()
    return fig


CALCULATOR_FALLBACK_TEXT = ("Interactive cache calculator: run this cell in Jupyter; the static figure "
                            "below shows the same")


class Calculator:
    """The live calculator's parts: ``controls`` (model, context, batch, dtype widgets), ``table`` (an
    HTML widget), ``figure`` (a plotly ``FigureWidget``) and ``widget``, the box holding them.

    Displaying it (``display(calc)`` or a cell ending in it) shows the widget through
    ``helpers.viz.live.show_widget``, whose plain-text fallback is the one line ``CALCULATOR_FALLBACK_TEXT``:
    that line, not the widget's ``VBox(children=...)`` repr, is what a saved notebook shows on GitHub.
    """

    def __init__(self, widget, controls: dict, table, figure):
        self.widget, self.controls, self.table, self.figure = widget, controls, table, figure

    def _ipython_display_(self) -> None:
        show_widget(self.widget, CALCULATOR_FALLBACK_TEXT)

    def __repr__(self) -> str:
        return CALCULATOR_FALLBACK_TEXT


def _table_html(name: str, rows: list[CacheSize], dtype: str) -> str:
    cells = "".join(
        f"<tr><td>{variant_label(name, r.variant)}</td><td>{r.elements_per_token_per_layer:,}</td>"
        f"<td>{r.bytes_per_token:,}</td><td><b>{format_bytes(r.total_bytes)}</b></td>"
        f"<td>{r.cache_over_weights:.3f}</td></tr>" for r in rows)
    note = window_note(name, rows[0].context_len)
    return (f"<b>{name}</b>: weights {format_bytes(rows[0].weight_bytes)} at {dtype}"
            + (f"<br><i>cache {note}</i>" if note else "")
            + "<table><tr><th>variant</th><th>elements/token/layer</th><th>bytes/token</th>"
            f"<th>cache</th><th>cache / weights</th></tr>{cells}</table>")


def calculator_widget(model: str = "Llama-3-8B", context_len: int = 8192, batch_size: int = 1,
                      dtype: str = "bf16") -> Calculator:
    """The live calculator: model dropdown, context slider (powers of two), batch and dtype; shows the
    per-variant numbers and a plotly plot of cache size against context next to the weight memory.

    The plot's x axis (log) runs from 256 tokens to the model's released context (or to the chosen
    context, if that is longer), so the curves fill it; a windowed model's curves flatten at its window,
    drawn as a dotted line. The slider only reports on release, so the plot redraws at most once per
    change. Returns a ``Calculator`` (see there for what a saved notebook shows)."""
    import ipywidgets as w
    import plotly.graph_objects as go

    slider_contexts = context_grid(2 ** 20)
    model_dd = w.Dropdown(options=list(PUBLISHED), value=model, description="model")
    ctx = w.SelectionSlider(options=slider_contexts,
                            value=context_len if context_len in slider_contexts else 8192,
                            description="context", continuous_update=False,
                            layout=w.Layout(width="420px"))
    batch = w.BoundedIntText(value=batch_size, min=1, max=4096, description="batch",
                             layout=w.Layout(width="180px"))
    dtype_dd = w.Dropdown(options=list(DTYPE_BYTES), value=dtype, description="dtype",
                          layout=w.Layout(width="180px"))
    table = w.HTML()
    fig = go.FigureWidget()
    for variant in VARIANTS:  # traces 0-3: one curve per variant
        fig.add_scatter(x=[], y=[], mode="lines+markers", name=variant, line=dict(color=PALETTE[variant]))
    fig.add_scatter(x=[], y=[], mode="lines", name="model weights",  # trace 4
                    line=dict(color=PALETTE["weights"], dash="dash"))
    fig.add_scatter(x=[], y=[], mode="lines", name="sliding window", visible=False,  # trace 5
                    line=dict(color="gray", dash="dot", width=1))
    fig.add_scatter(x=[], y=[], mode="markers", name="chosen context", showlegend=False,  # trace 6
                    marker=dict(size=11, symbol="circle-open", color="black"))
    fig.update_layout(height=380, width=760, margin=dict(l=60, r=20, t=40, b=50),
                      xaxis=dict(type="log", title="context length S (tokens)"),
                      yaxis=dict(type="log", title="memory (GiB)"))

    def redraw(_=None):
        name, s, b, dt = model_dd.value, ctx.value, max(1, int(batch.value)), dtype_dd.value
        m = get_published(name)
        rows = cache_table(name, s, b, dt)
        table.value = _table_html(name, rows, dt)
        xs = plot_contexts(m, max(m.max_seq_len, s))  # 256 .. the longer of the released and chosen context
        curves = [[cache_bytes(m, variant, c, b, dt) / GIB for c in xs] for variant in VARIANTS]
        weights = weight_bytes(m, dt) / GIB
        lo, hi = math.log10(xs[0]), math.log10(xs[-1])
        pad = 0.03 * (hi - lo)  # room for the end markers
        ticks = xs if len(xs) <= 9 else xs[::2]
        with fig.batch_update():
            for trace, variant, ys in zip(fig.data, VARIANTS, curves):
                trace.x, trace.y, trace.name = xs, ys, variant_label(name, variant)
            fig.data[4].x, fig.data[4].y = [xs[0], xs[-1]], [weights, weights]
            fig.data[4].name = _weights_label(m, dt)
            windowed = m.sliding_window is not None and xs[0] < m.sliding_window < xs[-1]
            fig.data[5].visible = windowed  # (read back inside batch_update, it would give the old value)
            if windowed:
                ys = [y for c in curves for y in c] + [weights]
                fig.data[5].x, fig.data[5].y = [m.sliding_window] * 2, [min(ys), max(ys)]
                fig.data[5].name = _window_label(m)
            fig.data[6].x = [s] * len(VARIANTS)
            fig.data[6].y = [r.total_bytes / GIB for r in rows]
            fig.layout.xaxis.range = [lo - pad, hi + pad]  # a log axis's range is in log10 units
            fig.layout.xaxis.tickvals, fig.layout.xaxis.ticktext = ticks, [_short(c) for c in ticks]
            fig.layout.title = f"{name}: KV cache, batch {b}, {dt}"

    for widget in (model_dd, ctx, batch, dtype_dd):
        widget.observe(redraw, names="value")
    redraw()
    box = w.VBox([w.HBox([model_dd, dtype_dd, batch]), ctx, table, fig])
    return Calculator(box, dict(model=model_dd, context=ctx, batch=batch, dtype=dtype_dd), table, fig)
