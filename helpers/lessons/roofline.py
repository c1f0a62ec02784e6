"""The roofline of a decode step (lesson 03, §7): is a step limited by the bytes it must read, by the
arithmetic it must do, or by neither (the overhead of calling operators)?

A step that moves ``bytes`` and does ``flops`` cannot finish before ``bytes / bandwidth`` nor before
``flops / peak``. Its **arithmetic intensity** ``I = flops / bytes`` says which wall it meets: below the
machine's **ridge point** ``peak / bandwidth`` the memory roof ``I · bandwidth`` is lower (bandwidth-
bound), above it the compute roof (compute-bound). A step that reaches neither roof by a wide margin is
spending its time elsewhere: on a small model, the overhead of calling operators (lesson 01, §4).
Williams, Waterman & Patterson, "Roofline" (CACM 2009).

Decode attention, per layer, for ``B`` sequences with ``s_q`` query positions each (the new token plus
any MTP drafts being verified) and ``S`` cached positions (``step_cost``):

* bytes: the layer's weights once, plus every sequence's cache once, ``B · S · c · bytes_per_element``
  (``c``: cached elements per token, ``helpers.decode_cost.cache_elements_per_token``);
* FLOPs: ``B · s_q · (2 · weights + S · f)``, with ``f`` the FLOPs one query spends on one cached
  position over all heads (``attention_flops_per_position``).

So the cache part's intensity is ``s_q · f / (c · bytes_per_element)``. Expanded K/V gives each cached
element to one head (about 0.5 FLOP/byte in bf16); GQA shares it among ``H/G`` heads; absorbed MLA
shares the latent among all ``h_q`` heads, about ``2 · h_q · s_q`` FLOPs per byte of bf16 latent. This
is FlashMLA's argument: with DeepSeek-V3's 128 heads one query already does ~240 FLOP/byte, past an
H800's ridge, and MTP drafts (``s_q`` = 2) double it. Batching multiplies the *weights'* intensity (one
read serves ``B`` sequences) but not the cache's (each sequence reads its own).

Machines: ``measured_machine`` (this computer, one thread: ``helpers.timing``'s STREAM-style bandwidth
and matrix-product peak, which the benchmark measures too) and ``H800_FLASHMLA`` (the roofs FlashMLA
reports reaching on an H800 SXM5: ~3,000 GB/s memory-bound, ~660 TFLOPS compute-bound, bf16;
``docs/REFERENCE`` anchors).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelConfig
from ..decode_cost import StepCost, attention_flops_per_position, step_cost  # noqa: F401  (step_cost: lesson 03's name for it, rl.step_cost)
from ..kv_cache import kv_elements_per_token
from ..timing import decode_step, interleaved, peak_flops, stream_bandwidth, torch_threads
from ..validate import check_int


@dataclass(frozen=True)
class Machine:
    name: str
    bandwidth: float  # bytes per second
    peak: float  # FLOP per second

    @property
    def ridge(self) -> float:
        """FLOPs per byte above which a kernel is compute-bound."""
        return self.peak / self.bandwidth

    def attainable(self, intensity: float) -> float:
        """The roof at ``intensity``: ``min(peak, intensity · bandwidth)`` FLOP/s."""
        return min(self.peak, intensity * self.bandwidth)

    def bound(self, intensity: float) -> str:
        return "compute-bound" if intensity >= self.ridge else "bandwidth-bound"


H800_FLASHMLA = Machine("H800 (FlashMLA's achieved roofs)", 3.0e12, 660e12)

# One attention layer shaped like DeepSeek-V3's (D 7168, q_lora_rank 1536, Dc 512, Dr 64, Dn = Dv = 128,
# 128 heads); ``v3_layer(h_q)`` changes the number of heads.
V3_LAYER = ModelConfig(dim=7168, n_heads=128, attn_type="mla", q_lora_rank=1536, kv_lora_rank=512,
                       qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, n_layers=1)
PATHS = ("absorbed", "kv", "gqa")


def v3_layer(heads: int = 128) -> ModelConfig:
    check_int("heads", heads, min_value=1)
    return V3_LAYER.replace(n_heads=heads)


def measured_machine(stream_mb: int = 64, rounds: int = 3) -> Machine:
    """This computer on one thread: the best of STREAM-style copy/triad/read and of a matrix product."""
    with torch_threads(1):
        bandwidth = max(stream_bandwidth(stream_mb * 2 ** 20 // 4, rounds=rounds).values()) * 1e9
        peak = peak_flops(rounds=rounds)
    return Machine("this CPU, one thread (measured)", bandwidth, peak)


def plot_roofline(ax, machine: Machine, points: dict, *, intensity_range=(0.05, 2e3), title: str = ""):
    """Draw ``machine``'s roofline on ``ax`` (log-log, GFLOP/s against FLOP/byte) with its ridge point,
    and ``points``: label → (intensity, achieved FLOP/s, colour)."""
    import numpy as np

    xs = np.logspace(np.log10(intensity_range[0]), np.log10(intensity_range[1]), 200)
    roof = [machine.attainable(x) / 1e9 for x in xs]
    ax.plot(xs, roof, color="black", lw=2, label=f"roofline: {machine.name}")
    ax.axvline(machine.ridge, color="black", ls=":", lw=1)
    ax.annotate(f"ridge {machine.ridge:.1f} FLOP/byte", (machine.ridge, machine.peak / 1e9),
                textcoords="offset points", xytext=(6, -14), fontsize=8)
    ax.fill_between(xs, 1e-9, roof, where=xs < machine.ridge, color="#9ecae1", alpha=0.25, lw=0)
    ax.fill_between(xs, 1e-9, roof, where=xs >= machine.ridge, color="#fdae6b", alpha=0.25, lw=0)
    for label, (intensity, achieved, color) in points.items():
        ax.plot([intensity], [achieved / 1e9], "o", ms=8, color=color, label=label)
        ax.plot([intensity, intensity], [achieved / 1e9, machine.attainable(intensity) / 1e9], color=color,
                lw=1, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(*intensity_range)
    ax.set_ylim(min([p[1] / 1e9 for p in points.values()] + [machine.peak / 1e9]) / 5, machine.peak / 1e9 * 3)
    ax.set(xlabel="arithmetic intensity (FLOP per byte moved)", ylabel="GFLOP/s",
           title=title or "decode steps against this machine's roofline")
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_fraction_of_peak(ax, machines: list[Machine], settings: dict, *, colors=None,
                          intensity_range=(0.1, 3e4)):
    """The device-free view: the fraction of peak compute each machine can reach at a given intensity
    (``min(1, I / ridge)``), one curve per machine, and ``settings``: label → ``StepCost`` (a V3-shaped
    layer at some heads, drafts, batch and context), each drawn at its intensity on every curve."""
    import numpy as np

    xs = np.logspace(np.log10(intensity_range[0]), np.log10(intensity_range[1]), 300)
    styles = ["-", "--", ":"]
    for m, ls in zip(machines, styles):
        ax.plot(xs, [min(1.0, x / m.ridge) for x in xs], ls, color="black", lw=1.5,
                label=f"{m.name}: ridge {m.ridge:.0f} FLOP/byte" if m.ridge >= 10 else
                f"{m.name}: ridge {m.ridge:.1f} FLOP/byte")
    colors = colors or {}
    for label, cost in settings.items():
        color = colors.get(label)
        for m in machines:
            ax.plot([cost.intensity], [min(1.0, cost.intensity / m.ridge)], "o", color=color, ms=7,
                    label=label if m is machines[0] else None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1e-3, 1.5)
    ax.set(xlabel="arithmetic intensity of the decode step (FLOP per byte)",
           ylabel="fraction of peak compute attainable")
    ax.legend(fontsize=7, loc="lower right")
    return ax


def measured_steps(paths=PATHS, context: int = 32768, batch: int = 1, rounds: int = 2) -> dict:
    """One real decode step of each attention path (``helpers.timing.decode_step``: one layer,
    float32, ``context`` random cached positions), timed in turns on one thread (CPU time, best of
    ``rounds``): path → (its ``StepCost``, seconds)."""
    steps, costs = {}, {}
    with torch_threads(1):
        for path in paths:
            steps[path], costs[path] = decode_step(path, batch, context)
        best = interleaved(steps, rounds, min_run_time=0, threads=1, cpu_time=True)
    return {path: (costs[path], best[path].min) for path in paths}


def model_step_cost(model, context: int, bytes_per_element: int = 4) -> StepCost:
    """A whole dense model's decode step, batch 1: every weight but the embedding table read once (2
    FLOPs each), plus the K/V cache of ``context`` positions read once (scores and weighted sum)."""
    cfg = model.config
    weights = model.num_params() - model.tok_emb.weight.numel()
    kv = kv_elements_per_token(cfg.n_layers, cfg.kv_heads, cfg.hd) * (context + 1)
    flops = 2 * weights + cfg.n_layers * (context + 1) * attention_flops_per_position("gqa", cfg)
    return StepCost(weights * bytes_per_element, kv * bytes_per_element, flops)
