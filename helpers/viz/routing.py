"""Lesson 04's routing pictures, drawn after training: the record a ``RoutingMonitor`` keeps
(``RoutingHistory``) and its static figures (``plot_routing``, ``plot_load_over_time``, ``plot_bias`` and
the heatmaps the capstone's dashboard reuses). Static, so they show on GitHub, in CI and on the site; the
live widget that fills the record is ``helpers.viz.widgets``.

Shape letters (``docs/GLOSSARY.md``): Lm MoE layers, E routed experts, St recorded steps.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch

from ..moe import load_entropy, max_vio
from .style import color as course_color
from .style import expert_colors

TITLE = "Routing: share of tokens per expert"  # the live widget's title too (RoutingMonitor.TITLE)


@dataclass
class RoutingHistory:
    """Per-step routing record of a training run."""

    n_experts: int
    n_activated: int  # K
    step: list[int] = field(default_factory=list)
    counts: list[torch.Tensor] = field(default_factory=list)  # per step: (L, E) tokens per expert
    bias: list[torch.Tensor] = field(default_factory=list)  # per step: (L, E) selection bias after it
    layer_names: list[str] = field(default_factory=list)  # per MoE layer: its module path, "layers.1.ffn"

    def layer_label(self, i: int) -> str:
        """``"MoE layer i (block j)"``, the block read from the layer's module path when it has one."""
        name = self.layer_names[i] if i < len(self.layer_names) else ""
        block = re.search(r"(?:^|layers\.)(\d+)\.", name)
        return f"MoE layer {i} (block {block.group(1)})" if block else f"MoE layer {i}"

    def counts_array(self) -> torch.Tensor:
        return torch.stack(self.counts)  # (St, Lm, E)

    def bias_array(self) -> torch.Tensor:
        return torch.stack(self.bias)  # (St, Lm, E)

    @property
    def max_vio(self) -> torch.Tensor:
        """MaxVio_batch per step and layer, (St, Lm)."""
        return max_vio(self.counts_array())

    @property
    def entropy(self) -> torch.Tensor:
        """Load entropy (bits) per step and layer, (St, Lm)."""
        return load_entropy(self.counts_array())

    def recent_share(self, last: int) -> torch.Tensor:
        """Share (%) of the routed assignments each expert got over the last ``last`` steps, (L, E)."""
        c = torch.stack(self.counts[-last:]).sum(0).double()  # (L, E)
        return 100 * c / c.sum(-1, keepdim=True).clamp_min(1)

# --- static figures ---------------------------------------------------------------------------------
def moving_average(values: torch.Tensor, window: int) -> torch.Tensor:
    """Trailing mean over ``window`` steps along dim 0 (the first steps average what exists so far)."""
    if window <= 1:
        return values
    v = values.double()
    c = torch.cat([torch.zeros_like(v[:1]), v.cumsum(0)])  # (S+1, ...)
    idx = torch.arange(1, len(v) + 1)
    lo = (idx - window).clamp_min(0)
    return (c[idx] - c[lo]) / (idx - lo).view(-1, *([1] * (v.ndim - 1)))


def plot_routing(history: RoutingHistory, *, last: int = 10, title: str = "", smooth: int = 1, fig=None):
    """The live widget's final state as a matplotlib figure: bars per expert per layer (share of the
    routed assignments over the ``last`` steps), then load entropy and MaxVio_batch over steps
    (``smooth`` > 1 draws a trailing moving average of that many steps)."""
    import matplotlib.pyplot as plt

    if not history.step:
        raise ValueError("plot_routing needs a history with at least one recorded step")
    share = history.recent_share(last)  # (L, E)
    L, E = share.shape
    K = history.n_activated
    fig = fig or plt.figure(figsize=(4.2 * max(L, 2), 5.4))
    grid = fig.add_gridspec(2, max(L, 2), height_ratios=[1.2, 1], hspace=0.6, wspace=0.3)
    for i in range(L):
        ax = fig.add_subplot(grid[0, i] if L > 1 else grid[0, :])
        ax.bar(range(E), share[i].tolist(), color=expert_colors(E))
        ax.axhline(100 / E, ls="--", color="gray", lw=1, label="uniform")
        ax.set(ylim=(0, 100 / K * 1.05), xlabel="expert", title=f"MoE layer {i}",
               xticks=range(E))
        if i == 0:
            ax.set_ylabel("% of routed tokens")
            ax.legend(loc="upper right", fontsize=8)
    half = max(L, 2) // 2
    ax_e, ax_v = fig.add_subplot(grid[1, :half]), fig.add_subplot(grid[1, half:])
    ent, vio = moving_average(history.entropy, smooth), moving_average(history.max_vio, smooth)  # (St, Lm)
    for i, c in enumerate(expert_colors(L)):
        ax_e.plot(history.step, ent[:, i].tolist(), color=c, label=f"layer {i}")
        ax_v.plot(history.step, vio[:, i].tolist(), color=c, label=f"layer {i}")
    ax_e.axhline(math.log2(E), ls="--", color="gray", lw=1)
    ax_e.set(xlabel="step", ylabel="bits", title="load entropy (dashed: balanced)",
             ylim=(0, math.log2(E) * 1.05))
    suffix = f", {smooth}-step mean" if smooth > 1 else ""
    ax_v.set(xlabel="step", ylabel="(max − mean) / mean", title="MaxVio (batch)" + suffix,
             ylim=(0, E / K - 1 + 0.1))
    ax_e.legend(fontsize=8)
    fig.suptitle(title or TITLE + f" — last {min(last, len(history.step))} steps")
    return fig


def plot_load_over_time(loads: torch.Tensor, ax=None, *, title: str = "", step_label: str = "step",
                        smooth: int = 1):
    """Stacked area of each expert's share of the load over steps; loads (St, E) counts (``smooth`` > 1:
    a trailing moving average of that many steps)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    loads = moving_average(loads.double(), smooth)
    share = 100 * loads / loads.sum(-1, keepdim=True).clamp_min(1)  # (St, E)
    E = share.shape[1]
    ax.stackplot(range(share.shape[0]), share.T.tolist(), colors=expert_colors(E),
                 labels=[f"expert {e}" for e in range(E)])
    ax.set(xlim=(0, share.shape[0] - 1), ylim=(0, 100), xlabel=step_label, ylabel="% of routed tokens",
           title=title)
    return ax


def legend_outside(ax, **kwargs):
    """A legend just right of ``ax``, outside its data area and tick labels (lay the figure out with
    ``layout="constrained"`` so it makes room)."""
    kwargs = {"loc": "upper left", "bbox_to_anchor": (1.02, 1), "borderaxespad": 0.0, "fontsize": 8,
              **kwargs}
    return ax.legend(**kwargs)


def draw_share_heatmap(ax, history: RoutingHistory, last: int = 10):
    """Each expert's share (%) of a layer's routed assignments over the last ``last`` steps, as an
    Lm × E heatmap: white is the uniform share 100/E, red an overloaded expert, blue an idle one; the
    cells carry the numbers when they fit. Returns the image (for a colour bar)."""
    from matplotlib.colors import TwoSlopeNorm

    share = history.recent_share(last).float()  # (Lm, E)
    L, E = share.shape
    uniform = 100 / E
    norm = TwoSlopeNorm(vmin=0.0, vcenter=uniform, vmax=max(2 * uniform, share.max().item()))
    image = ax.imshow(share.numpy(), cmap="RdBu_r", norm=norm, aspect="auto", interpolation="nearest")
    if E <= 16 and L <= 8:  # numbers in the cells
        fmt = "{:.1f}" if E <= 8 else "{:.0f}"
        for i in range(L):
            for e in range(E):
                v = share[i, e].item()
                dark = abs(norm(v) - 0.5) > 0.3
                ax.text(e, i, fmt.format(v), ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    ax.set_xticks(range(E))
    ax.set_yticks(range(L), [history.layer_label(i).replace(" (", "\n(") for i in range(L)])
    ax.set_xlabel("routed expert")
    ax.grid(False)
    return image


def draw_bias_heatmap(ax, history: RoutingHistory, layer: int, vmax: float | None = None):
    """Layer ``layer``'s selection biases b_i as an expert × step heatmap (orange: b_i > 0, the expert
    is picked more readily; purple: b_i < 0), colour scale symmetric about 0 up to ``vmax`` (default:
    the largest |b_i| of the layer). Returns the image (for a colour bar)."""
    b = history.bias_array()[:, layer].float()  # (St, E)
    E = b.shape[1]
    vmax = vmax if vmax is not None else b.abs().max().item()
    vmax = vmax if vmax > 0 else 1.0  # all zero: any scale shows white
    steps = history.step
    image = ax.imshow(b.T.numpy(), cmap="PuOr_r", vmin=-vmax, vmax=vmax, aspect="auto",
                      interpolation="nearest", extent=(steps[0] - 0.5, steps[-1] + 0.5, E - 0.5, -0.5))
    if E <= 16:
        ax.set_yticks(range(E))
    ax.set(xlabel="step", title=history.layer_label(layer))
    ax.title.set_fontsize(10)
    ax.grid(False)
    if not b.abs().max().item():
        ax.text(0.5, 0.5, "b = 0 throughout\n(this balance mode\nuses no bias)", transform=ax.transAxes,
                ha="center", va="center", fontsize=9, color="gray")
    return image


BIAS_KINDS = ("lines", "band", "heatmap")


def plot_bias(history: RoutingHistory, *, title: str = "selection bias b over training", fig=None,
              kind: str = "lines"):
    """The aux-loss-free biases over steps, one panel per MoE layer.

    ``kind="lines"``: one line per expert, in the expert's colour (legend at the right; lesson 04);
    ``"band"``: the spread over the experts, min–max band and mean (readable with many experts);
    ``"heatmap"``: one expert × step heatmap per layer with one labelled colour bar (which expert was
    pushed which way, and when)."""
    import matplotlib.pyplot as plt

    if kind not in BIAS_KINDS:
        raise ValueError(f"kind={kind!r} must be one of {BIAS_KINDS}")
    if not history.step:
        raise ValueError("plot_bias needs a history with at least one recorded step")
    bias = history.bias_array()  # (St, Lm, E)
    S, L, E = bias.shape
    fig = fig or plt.figure(figsize=(4.2 * max(L, 2) + 1.2, 3.2))
    if fig.get_layout_engine() is None:
        fig.set_layout_engine("constrained")
    axes = fig.subplots(1, L, squeeze=False, sharey=kind == "heatmap")[0]
    if kind == "heatmap":
        vmax = bias.abs().max().item()
        for i, ax in enumerate(axes):
            image = draw_bias_heatmap(ax, history, i, vmax)
        axes[0].set_ylabel("routed expert")
        fig.colorbar(image, ax=list(axes), label="selection bias b_i", shrink=0.9)
    elif kind == "band":
        color = course_color("loss_free")
        for i, ax in enumerate(axes):
            b = bias[:, i].double()  # (St, E)
            ax.fill_between(history.step, b.min(-1).values.tolist(), b.max(-1).values.tolist(), color=color,
                            alpha=0.3, lw=0, label="min–max over the experts")
            ax.plot(history.step, b.mean(-1).tolist(), color=color, lw=1.5, label="mean over the experts")
            ax.axhline(0, color="gray", lw=0.8)
            ax.set(xlabel="step", ylabel="b_i", title=history.layer_label(i))
        legend_outside(axes[-1])
    else:
        colors = expert_colors(E)
        for i, ax in enumerate(axes):
            for e in range(E):
                ax.plot(history.step, bias[:, i, e].tolist(), color=colors[e], lw=1.2, label=f"expert {e}")
            ax.axhline(0, color="gray", lw=0.8)
            ax.set(xlabel="step", ylabel="b_i", title=history.layer_label(i))
        legend_outside(axes[-1], ncol=1 if E <= 10 else 2, title="routed expert", title_fontsize=8)
    fig.suptitle(title)
    return fig


@dataclass(frozen=True)
class RouterPlane:
    """What ``plot_router_plane`` drew: the top-1 expert over a grid of 2-D inputs and the MoE's output
    along a circle through them."""

    region: torch.Tensor  # (n_grid, n_grid): the top-1 expert of each grid point, rows along x₂
    theta: torch.Tensor  # (n_circle,): the circle's angles
    out: torch.Tensor  # (n_circle,): MoE output, coordinate 1, around the circle
    indices: torch.Tensor  # (n_circle,): the expert chosen around the circle

    @property
    def jumps(self) -> int:
        """How many times the chosen expert changes around the circle (borders crossed)."""
        return int((self.indices[1:] != self.indices[:-1]).sum())

    @property
    def owners(self) -> int:
        """How many experts own some region of the grid."""
        return len(set(self.region.flatten().tolist()))


@torch.no_grad()
def plot_router_plane(moe, *, extent: float = 3.0, radius: float = 2.0, n_grid: int = 120,
                      n_circle: int = 400, axes=None) -> RouterPlane:
    """Lesson 04's picture of a top-1 router on 2-D inputs (``moe.cfg.dim`` must be 2): left, which
    expert each input of the square ``[-extent, extent]²`` goes to, each expert's gate vector numbered at
    its tip, and a dashed circle of ``radius``; right, the MoE's output (coordinate 1) around that circle,
    coloured by expert: it jumps where the circle crosses a border. ``axes``: two matplotlib axes (a new
    figure if None). Returns the ``RouterPlane`` drawn."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    if moe.cfg.dim != 2:
        raise ValueError(f"plot_router_plane needs a router on 2-D inputs, got dim={moe.cfg.dim}")
    E = moe.cfg.n_routed_experts
    grid = torch.linspace(-extent, extent, n_grid)
    gy, gx = torch.meshgrid(grid, grid, indexing="ij")
    plane = torch.stack([gx.flatten(), gy.flatten()], 1)  # (N, 2)
    theta = torch.linspace(0, 2 * math.pi, n_circle)
    circle = radius * torch.stack([theta.cos(), theta.sin()], 1)  # (n_circle, 2)
    region = moe(plane.view(1, -1, 2)).indices[..., 0].view(n_grid, n_grid)  # (n_grid, n_grid)
    along = moe(circle.view(1, -1, 2))
    drawn = RouterPlane(region, theta, along.out[0, :, 0], along.indices[0, :, 0])

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10.5, 3.8))
    ax1, ax2 = axes
    colors = expert_colors(E)
    ax1.imshow(region, origin="lower", extent=(-extent, extent, -extent, extent), cmap=ListedColormap(colors),
               vmin=-0.5, vmax=E - 0.5)
    ax1.plot(circle[:, 0], circle[:, 1], "k--", lw=1)
    for e in range(E):
        ax1.annotate(f"{e}", moe.gate.weight[e].tolist(), fontsize=11, ha="center", color="white",
                     weight="bold")
    ax1.set(title="top-1 expert for each input x = (x₁, x₂)", xlabel="x₁", ylabel="x₂")
    ax1.grid(False)
    for e in range(E):
        m = drawn.indices == e
        ax2.scatter(theta[m], drawn.out[m], s=5, color=colors[e], label=f"expert {e}")
    ax2.set(title="output around the circle: jumps where the expert changes", xlabel="angle (radians)",
            ylabel="MoE output, coordinate 1")
    ax2.legend(fontsize=8, markerscale=2)
    return drawn
