"""helpers.viz.diagram: the architecture figure carries the configuration's numbers, draws the MTP module only
when there is one, keeps its text inside its boxes and apart, and refuses what is not a ModelConfig."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from matplotlib.patches import FancyBboxPatch
from matplotlib.text import Text

from helpers.config import ModelConfig, preset
from helpers.lessons.capstone import CPU_CONFIG
from helpers.viz.diagram import attention_name, draw_architecture


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def boxes(fig, gid):
    return [p for p in fig.findobj(FancyBboxPatch) if p.get_gid() == gid]


def layout_problems(fig, tol: float = 1.0) -> list[tuple]:
    """Text outside the figure, spilling over the smallest box around its centre, or overlapping text."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    drawn = [(t, t.get_window_extent(renderer)) for t in fig.findobj(Text)
             if t.get_text() and t.get_visible()]
    frames = [p.get_window_extent(renderer) for p in fig.findobj(FancyBboxPatch)]
    problems = []
    for t, e in drawn:
        if e.x0 < -tol or e.y0 < -tol or e.x1 > fig.bbox.x1 + tol or e.y1 > fig.bbox.y1 + tol:
            problems.append(("outside the figure", t.get_text()))
        cx, cy = (e.x0 + e.x1) / 2, (e.y0 + e.y1) / 2
        around = [b for b in frames if b.x0 <= cx <= b.x1 and b.y0 <= cy <= b.y1]
        if around:
            b = min(around, key=lambda b: b.width * b.height)
            if e.x0 < b.x0 - tol or e.x1 > b.x1 + tol or e.y0 < b.y0 - tol or e.y1 > b.y1 + tol:
                problems.append(("spills over its box", t.get_text()))
    for i, (t, e) in enumerate(drawn):
        problems += [("overlap", t.get_text(), u.get_text()) for u, f in drawn[i + 1:] if e.overlaps(f)]
    return problems


def test_mla_moe_mtp_model_carries_its_numbers():
    cfg = CPU_CONFIG  # lesson 06: MLA, a dense first block then DeepSeekMoE, one MTP module
    fig = draw_architecture(cfg)
    s = texts(fig)
    for number in (f"E = {cfg.n_routed_experts}", f"K = {cfg.n_activated_experts}",
                   f"Ns = {cfg.n_shared_experts}", f"Dc = {cfg.kv_lora_rank}", f"Dr = {cfg.qk_rope_head_dim}",
                   f"Dq = {cfg.q_lora_rank}",
                   f"L = {cfg.n_layers}", f"D = {cfg.dim}", f"H = {cfg.n_heads}", f"Dm = {cfg.mtp_depth}",
                   f"Dc + Dr = {cfg.kv_lora_rank + cfg.qk_rope_head_dim}", f"λ = {cfg.mtp_lambda:g}",
                   f"{cfg.n_expert_groups} groups, keep {cfg.n_limited_groups}", f"I = {cfg.inter_dim}"):
        assert number in s, number
    for part in ("multi-head latent attention", "DeepSeekMoE", "selection bias", "shared experts",
                 "embedding (shared)", "output head (shared)", "token after next", "next-token loss",
                 "final RMSNorm", "block 0: MLA + dense MLP", "block 1: MLA + MoE", "block 2: MLA + MoE"):
        assert part in s, part
    assert boxes(fig, "mtp")  # the MTP module is drawn ...
    assert len(boxes(fig, "cached")) == 2  # ... and MLA caches the latent and the RoPE key
    assert layout_problems(fig) == []
    assert tuple(fig.get_size_inches()) == pytest.approx((12.55, 6.2))


def test_dense_mha_model_has_no_moe_and_no_mtp():
    cfg = preset("tiny")
    fig = draw_architecture(cfg)
    s = texts(fig)
    assert attention_name(cfg) == "MHA" and "multi-head attention (MHA)" in s
    assert f"2·G·Dh = {2 * cfg.n_heads * cfg.hd}" in s and f"I = {cfg.inter_dim}" in s
    assert f"L = {cfg.n_layers}" in s and "dense MLP (SwiGLU)" in s
    assert "DeepSeekMoE" not in s and "MTP" not in s and "E = " not in s
    assert boxes(fig, "mtp") == [] and len(boxes(fig, "cached")) == 1  # K and V, no latent
    assert layout_problems(fig) == []
    assert fig.get_size_inches()[0] < 12  # no MTP column


@pytest.mark.parametrize("changes, name", [(dict(n_kv_heads=2), "GQA"), (dict(n_kv_heads=1), "MQA")])
def test_grouped_attention_is_named(changes, name):
    cfg = preset("tiny", **changes)
    fig = draw_architecture(cfg)
    assert attention_name(cfg) == name and f"({name})" in texts(fig)
    assert f"G = {cfg.kv_heads}" in texts(fig)
    assert layout_problems(fig) == []


def test_many_experts_layers_and_mtp_depths_still_fit():
    cfg = CPU_CONFIG.replace(n_layers=12, n_dense_layers=3, n_routed_experts=64, n_expert_groups=8,
                             n_limited_groups=4, n_activated_experts=6, mtp_depth=2, q_lora_rank=0)
    fig = draw_architecture(cfg)
    s = texts(fig)
    assert "blocks 0–2: MLA + dense MLP" in s and "blocks 3–11: MLA + MoE" in s  # grouped beyond 8 blocks
    assert "E = 64" in s and "…" in s and "63" in s and "Dm = 2" in s and "Dq = 0" in s
    assert layout_problems(fig) == []


def test_draws_into_a_given_axes():
    fig = plt.figure(figsize=(12.55, 6.2))
    ax = fig.add_axes((0, 0, 1, 1))
    assert draw_architecture(CPU_CONFIG, ax=ax) is fig
    assert not ax.axison and ax.patches


def test_bad_input_raises():
    with pytest.raises(TypeError, match="ModelConfig, got dict"):
        draw_architecture({"dim": 64})
    with pytest.raises(TypeError, match="ModelConfig, got str"):
        draw_architecture("mla")
    with pytest.raises(TypeError, match="Axes"):
        draw_architecture(ModelConfig(), ax="left")
