"""The course's one visual vocabulary: a colour per mechanism, the same in every lesson and helper.

``PALETTE`` maps each mechanism or arm that a lesson compares to its colour. A mechanism keeps its
colour everywhere: MHA is the same blue in lesson 01's cache calculator, lesson 02's GQA runs, lesson
03's frontier and lesson 06's bill. Grey is the arm *without* the lesson's mechanism (lesson 00's
baseline, generation without a cache, MoE without balancing, a model without MTP); near-black and
light grey are for reference lines and initial states. Categorical colours (experts, K/V groups,
layers) come from ``expert_colors`` / ``group_colors`` (matplotlib's tab10, tab20 for more than ten
groups); ``shades`` and ``latent_colors`` give light-to-dark variants of one mechanism's colour (the
MLA latent widths of lesson 03).

``use_course_style()`` sets the matplotlib defaults every lesson uses (it replaces the
``plt.rcParams.update`` each notebook used to carry).
"""

from __future__ import annotations

_BASELINE = "#636363"  # grey: the arm without the lesson's mechanism
_MHA = "#4c72b0"
_MAIN = "#08519c"  # dark blue: our model's next-token loss
_REFERENCE = "#1a1a1a"  # near-black: fits and reference lines

PALETTE: dict[str, str] = {
    # the arm without the lesson's mechanism; "none" is the MoE balance mode of that name
    "baseline": _BASELINE,
    "none": _BASELINE,
    # attention variants (lessons 01-03, 06; helpers.lessons.cache_calc)
    "MHA": _MHA,
    "GQA": "#55a868",
    "MQA": "#c44e52",
    "MLA": "#8172b2",  # latent widths: latent_colors()
    # GQA made from an MHA checkpoint (lesson 02, uptraining): mean-pooled, or first head kept
    "uptrained": "#b8860b",
    "first_head": "#937860",
    # the KV cache (lesson 01): an MHA model's cache, its quantised forms, keys and values
    "kv_cache": _MHA,
    "int8": "#64b5cd",
    "int4": "#2b7a9b",
    "K": "#ccb974",
    "V": "#da8bc3",
    # MoE load balancing (lessons 04, 06): besides "none" above
    "aux": "#dd8452",
    "seq_aux": "#b07aa1",
    "loss_free": "#2a9d8f",
    # multi-token prediction (lessons 05, 06): the main model's loss, the MTP module's, faint train twins
    "main": _MAIN,
    "main_train": "#9ecae1",
    "MTP": "#e6550d",
    "MTP_train": "#fdae6b",
    "MTP_depth2": "#fd8d3c",
    "leak": "#d62728",  # lesson 05: the leaky wiring ...
    "ok": "#31a354",  # ... and the correct one
    # sparse attention (lesson 07): DSA's top-k attention and its lightning indexer (dense MLA is "MLA")
    "DSA": "#dd3497",
    "indexer": "#7a0177",
    # distillation (lesson 08): the student taught by the teacher's logits, or by its written text
    "logit_KD": "#1b9e77",
    "sequence_KD": "#7570b3",
    # our implementation against the Hugging Face reference (lessons 00, 06)
    "ours": _MAIN,
    "hf": "#f2b701",
    # roles: fits and reference lines, the weight memory next to a cache, a model at initialisation
    "reference": _REFERENCE,
    "weights": _REFERENCE,
    "init": "#999999",
    # FP8 training (lesson 09): E4M3 with 1×128 tiles, E5M2, and 128×128 blocks
    "fp8": "#e7298a",
    "fp8_e5m2": "#66a61e",
    "fp8_block": "#a6761d",
    # expert parallelism (lesson 10): node-limited routing, and the all-to-all on the communication stream
    "node_limited": "#6a3d9a",
    "all_to_all": "#fb9a99",
}

# matplotlib's tab10 and tab20: one colour per expert, K/V group or layer
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
         "#bcbd22", "#17becf"]
TAB20 = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
         "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7",
         "#bcbd22", "#dbdb8d", "#17becf", "#9edae5"]
EXPERT_COLORS = TAB10

# what each notebook used to set by hand
COURSE_RCPARAMS = {"figure.dpi": 80, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                   "axes.spines.right": False}


def color(name: str) -> str:
    """``PALETTE[name]`` with an error that lists the names."""
    if name not in PALETTE:
        raise KeyError(f"no course colour {name!r}; choose one of {sorted(PALETTE)}")
    return PALETTE[name]


def expert_colors(n_experts: int) -> list[str]:
    """One colour per expert (tab10, repeating after ten)."""
    return [TAB10[i % len(TAB10)] for i in range(n_experts)]


def group_colors(n_groups: int) -> list[str]:
    """One colour per K/V group (tab10; tab20 for more than ten groups, repeating after twenty)."""
    table = TAB10 if n_groups <= len(TAB10) else TAB20
    return [table[g % len(table)] for g in range(n_groups)]


def _mix(hex_color: str, other: tuple[float, float, float], t: float) -> str:
    rgb = [int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    mixed = [(1 - t) * c + t * o for c, o in zip(rgb, other)]
    return "#" + "".join(f"{round(255 * c):02x}" for c in mixed)


def shades(name_or_hex: str, n: int, *, light: float = 0.5, dark: float = 0.4) -> list[str]:
    """``n`` shades of one colour (a ``PALETTE`` name or ``#rrggbb``), from light (mixed ``light`` of
    the way to white) to dark (``dark`` of the way to black), evenly spaced."""
    base = name_or_hex if name_or_hex.startswith("#") else color(name_or_hex)
    if n < 1:
        raise ValueError(f"n={n} must be at least 1")
    if n == 1:
        return [base]
    out = []
    for i in range(n):
        t = -light + (light + dark) * i / (n - 1)  # -light .. +dark
        out.append(_mix(base, (1.0, 1.0, 1.0), -t) if t < 0 else _mix(base, (0.0, 0.0, 0.0), t))
    return out


def latent_colors(widths, name: str = "MLA") -> dict[int, str]:
    """A shade of ``name``'s colour per latent width, light for the narrowest, dark for the widest
    (lesson 03's MLA runs with Dc = Dh, 2·Dh, 4·Dh)."""
    ordered = sorted(set(widths))
    return dict(zip(ordered, shades(name, len(ordered))))


def use_course_style(dpi: int = 80, **overrides) -> None:
    """Set the course's matplotlib defaults: ``COURSE_RCPARAMS`` at ``dpi`` (lesson 04 draws at 72), plus
    any further rcParams in ``overrides`` (``use_course_style(**{"lines.linewidth": 2})``)."""
    import matplotlib.pyplot as plt

    plt.rcParams.update({**COURSE_RCPARAMS, "figure.dpi": dpi, **overrides})
