"""Decode against the memory-bandwidth roofline: how close does one decode step come to the time it
takes just to read what it must read?

A decode step of one attention layer reads every weight of the layer once and the whole KV cache of
every sequence in the batch once; at a long context the cache dominates. The fastest the step can run
on this machine is therefore ``bytes / bandwidth`` (the memory roof), unless its arithmetic takes
longer (``FLOPs / peak FLOP/s``, the compute roof). Williams, Waterman & Patterson, "Roofline" (CACM
2009); STREAM: McCalpin 1995.

Figures (one CPU thread throughout, ``THREADS``, the setting the ``kv`` suite decodes on; float32):

* ``roofline.copy_gb_s``, ``roofline.triad_gb_s``, ``roofline.read_gb_s``: STREAM-style kernels in
  torch on arrays of ``STREAM_MB`` MB each (several times the 32 MB L3 of the course's machine):
  copy ``c = a`` (counted as 2 arrays moved), triad ``a = b + s·c`` (3 arrays), and read ``sum(a)``
  (1 array: decode mostly reads, so this is its natural roof). Each is the best (fastest) of the
  repeats, which take turns (``helpers.timing.interleaved``). STREAM's byte counts: a write-allocate
  read of the destination is not counted.
* ``roofline.bandwidth_gb_s``: the largest of those three, the bound used below (the most this
  machine was seen to sustain, so the bound is not loose).
* ``roofline.peak_gflop_s``: the best of a few ``MATMUL_N``-square float32 matrix products, an
  estimate of peak FLOP/s; ``roofline.ridge_flop_per_byte`` = peak / bandwidth, the arithmetic
  intensity above which a kernel is compute-bound.
* For each path and batch (``[absorbed,b1]``, ``[absorbed,b8]``, ``[kv,b1]``, ...), one decode step
  (one new token per sequence) of ONE attention layer with ``CONTEXT`` cached positions:
  ``roofline.ms_per_step@32768[...]`` (best of the turns; a step makes B tokens, one per
  sequence), ``roofline.mb_per_step@32768[...]`` (weights + cache read, ``step_bytes``),
  ``roofline.flop_per_byte@32768[...]`` (arithmetic intensity, ``step_flops / step_bytes``) and
  ``roofline.fraction_of_bound@32768[...]`` = (bytes / bandwidth) / measured time: 1 means the step
  ran at the memory roof.
* ``roofline.model_fraction_of_bound[tiny]``, ``[small]``: a whole model's greedy decode step (the
  flat plan ``generate`` takes, batch 1, ``MODEL_CONTEXT`` cached positions) placed on the same roof:
  (float32 weights + cache) / bandwidth / measured time; with ``roofline.model_ms_per_step``,
  ``roofline.model_mb_per_step`` and the profiler's shares of the step
  (``roofline.model_share[size,part]``: matrix products, the attention kernel, other operators, the
  time between operators), which say where the rest of the step goes.
* ``roofline.fraction_of_bound@32768``: the headline figure, the fused single-pass absorbed path
  (``absorbed-fused``, ``helpers.fused_mla``) at batch 1; it runs the compiled C++ loop where one
  could be built and the torch fallback elsewhere (``helpers.fused_mla.backend()`` says which).

``--quick`` measures the absorbed path at batch 1 and 8 and the other paths at batch 1, in fewer
rounds (4 instead of 5 for the decode steps, ``STEP_ROUNDS_QUICK``; the STREAM kernels 3 instead of 5,
the peak 2).

The paths, all ``helpers`` modules in float32 (``PATHS`` names each one's ``attn_impl``), with the
same model width and heads, sized after DeepSeek-V3's per-head shapes (Dc 512, Dr 64, Dn 128, Dv 128)
but with 4 heads and D = 512, so that the cache of a 32K context (75 MB per sequence for MLA's
latents) dwarfs the ~3-6 MB of weights and a step takes tens of milliseconds on a CPU:

* ``absorbed``: ``helpers.mla.MLA`` in mode ``"absorbed"``, caching ``Dc + Dr`` = 576 elements per
  token and attending over the latents (explicit attention, two passes over the cache);
  ``absorbed-fused``: the same layer through ``helpers.fused_mla`` (one pass, online softmax);
  ``absorbed-sdpa``: the same through SDPA;
* ``kv``: the same layer in mode ``"kv"``, caching the expanded per-head K and V, ``H·(Dn + Dr + Dv)``
  = 1,280 elements per token (explicit attention);
* ``gqa``: ``helpers.attention.Attention`` with H = 4 query heads, G = 2 K/V heads of Dh = 128,
  ``2·G·Dh`` = 512 elements per token (about MLA's cache), through SDPA.

What the figures showed (``--quick``, idle 2-core machine, one thread): ~29 GB/s and ~75 GFLOP/s
(ridge ~2.5 FLOP/byte); the absorbed path ran at ~0.13 of its memory bound at batch 1 (21 ms for
81 MB), the expanded-K/V path ~0.2, GQA ~0.1, absorbed through SDPA ~0.02. Why the absorbed path sits
so far below the roof: it reads its latents twice per step (scores, then the weighted sum; a fused
kernel such as FlashMLA reads them once, so 0.5 is its ceiling as written), and both of its products
have only H·T = 4 rows. For such skinny products torch's CPU matmul is compute-inefficient: the score
product runs at ~9 GB/s written latents-first (``c_kv @ qᵀ``, as ``helpers.mla`` now does; ~4 GB/s as
``q @ c_kvᵀ``) and the weighted sum ``p @ c_kv`` at ~5-7 GB/s however it is split, against ~27 GB/s
for a plain read of the same array. Its intensity, ~3.5 FLOP/byte at 4 heads (about H FLOP per byte
in general: every float32 latent meets every head twice), sits just above this CPU's ridge, so on one
core the step is as much compute- as memory-limited; with DeepSeek-V3's 128 heads it is ~120
FLOP/byte, and absorption turns a memory-bound step into one that does real arithmetic per byte read.

The fused single pass (``absorbed-fused``) reads each latent once. On an AMD EPYC (Zen 3, AVX2, 2026-12;
~20-22 GB/s, ~84 GFLOP/s, ridge ~3.7) its step took ~7.3 ms, ~0.5 of the bound (0.48-0.56 over three
``--quick`` runs): ~5.9 ms in the loop, ~1.4 ms in the layer's projections and the ~60 other operators
of a step. In the loop, the arithmetic alone (latents already cached) takes ~3.7 ms and a plain read of
the cache ~3.9 ms; one core overlaps the two only in part (``helpers.fused_mla``). On a Sapphire Rapids
core (AVX-512) it reached ~0.51.

Clock: every figure here is timed in CPU time of the one computing thread (``helpers.timing``,
``cpu_time=True``), which still counts the cycles a core stalls waiting for memory, but not the time
other processes hold the core: on a shared machine a wall-clock "best of" favours short kernels (a
5 ms STREAM pass often runs undisturbed, a 100 ms decode step rarely does), which would bias every
fraction low. Other processes still compete for the memory bus, so on a busy machine the bandwidth
and the decode steps both read low, and their ratio is what to trust.

Each cache is a ``StaticKVCache`` holding ``CONTEXT`` random positions (speed does not depend on the
values); a timed call appends one position and crops it off again.
"""

from __future__ import annotations

import torch

from ..decode_cost import (  # noqa: F401  (KINDS, the formulas: their old home)
    KINDS,
    StepCost,
    attention_flops_per_position,
    cache_elements_per_token,
)
from ..decode_cost import layer_step_cost as step_cost  # noqa: F401  (its old name here)
from ..kv_cache import kv_elements_per_token
from ..timing import (  # the roofs and the decode step are measured there (this module was their home)
    DECODE_CONTEXT,
    DECODE_GQA_CONFIG,
    DECODE_MLA_CONFIG,
    DECODE_PATHS,
    ROOF_CPU_TIME,
    ROOF_THREADS,
    decode_step,
    interleaved,
    peak_flops,
    stream_bandwidth,
    torch_threads,
)
from ..timing import decode_layer as make_layer  # noqa: F401  (its old name here)

THREADS = ROOF_THREADS  # one thread
CPU_TIME = ROOF_CPU_TIME  # see "Clock" in the module docstring
CONTEXT = DECODE_CONTEXT
BATCHES = (1, 8)
STREAM_MB = 128  # per array
# --quick's turns per decode step: one timed call each, so the best of 2 (as at first) swung by ±10%
# between runs on a shared machine (0.41-0.54 for the headline); 4 turns add ~2 s to the suite
STEP_ROUNDS_QUICK = 4
MATMUL_N = 1024
# name: (which attention, attn_impl): ``helpers.timing.DECODE_PATHS``. torch's SDPA kernel on the CPU falls
# back to its unfused "math" path when the value width differs from the key width (MLA: Dv ≠ Dn + Dr, and
# the absorbed path's Dc ≠ Dc + Dr), which scales a copy of all keys; the absorbed SDPA path also
# concatenates [c_kv; k_pe] into a new tensor every step. So the MLA paths are measured with the readable
# "explicit" attention (two passes over the latents: scores, then the weighted sum), and the SDPA
# version of the absorbed path is kept as its own figure to show what those copies cost.
PATHS = DECODE_PATHS
# One MLA layer with DeepSeek-V3's per-head shapes, few heads; and a GQA layer of the same width.
MLA_CONFIG, GQA_CONFIG = DECODE_MLA_CONFIG, DECODE_GQA_CONFIG


# --- the whole model against the roof --------------------------------------------------------------------
MODEL_SIZES = ("tiny", "small")
MODEL_CONTEXT = 512  # cached positions for the whole-model step (the kv suite's generation length)


def model_step(size: str, context: int = MODEL_CONTEXT) -> tuple[float, float, dict[str, float]]:
    """One greedy decode step of a whole ``preset(size)`` model (batch 1, ``context`` cached positions)
    through the flat decode plan ``generate`` uses: (ms per step, MB it must read: every float32 weight
    once plus the cache, the profiler's shares of the step's time, ``helpers.bench.kv.PROFILE_PARTS``)."""
    from ..config import preset
    from ..model import Transformer
    from .kv import decode_step_profile

    torch.manual_seed(0)
    model = Transformer(preset(size, max_seq_len=context + 2)).eval()
    cfg = model.config
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    cache_bytes = (context + 1) * kv_elements_per_token(cfg.n_layers, cfg.kv_heads, cfg.hd) * 4
    profile = decode_step_profile(model, fast=True, context=context)
    return profile.ms_per_step, (weight_bytes + cache_bytes) / 1e6, profile.shares


def run(quick: bool, context: int = CONTEXT, batches: tuple[int, ...] = BATCHES,
        paths: tuple[str, ...] = tuple(PATHS), stream_mb: int = STREAM_MB) -> dict[str, float]:
    results: dict[str, float] = {}
    with torch_threads(THREADS):
        bw = stream_bandwidth(stream_mb * 2 ** 20 // 4, rounds=3 if quick else 5)
        bandwidth = max(bw.values()) * 1e9  # bytes/s
        peak = peak_flops(rounds=2 if quick else 5)
        results.update({f"roofline.{name}_gb_s": v for name, v in bw.items()})
        results["roofline.bandwidth_gb_s"] = bandwidth / 1e9
        results["roofline.peak_gflop_s"] = peak / 1e9
        results["roofline.ridge_flop_per_byte"] = peak / bandwidth
        steps, costs = {}, {}
        for path in paths:
            # --quick: the two absorbed paths at every batch, the others at the first batch only
            for b in batches if path.startswith("absorbed") and path != "absorbed-sdpa" or not quick \
                    else batches[:1]:
                tag = f"{path},b{b}"
                steps[tag], costs[tag] = decode_step(path, b, context)
        best = interleaved(steps, rounds=STEP_ROUNDS_QUICK if quick else 5, min_run_time=0, threads=THREADS,
                           cpu_time=CPU_TIME)
    at = f"@{context}"
    for tag, cost in costs.items():
        seconds = best[tag].min
        results[f"roofline.ms_per_step{at}[{tag}]"] = seconds * 1e3
        results[f"roofline.mb_per_step{at}[{tag}]"] = cost.bytes / 1e6
        results[f"roofline.flop_per_byte{at}[{tag}]"] = cost.intensity
        results[f"roofline.fraction_of_bound{at}[{tag}]"] = cost.bytes / bandwidth / seconds
    for size in MODEL_SIZES:  # the whole model's decode step on the same roof, and where its time goes
        with torch_threads(THREADS):
            ms, mb, shares = model_step(size)
        results[f"roofline.model_ms_per_step[{size}]"] = ms
        results[f"roofline.model_mb_per_step[{size}]"] = mb
        results[f"roofline.model_fraction_of_bound[{size}]"] = mb * 1e6 / bandwidth / (ms / 1e3)
        for part, share in shares.items():
            results[f"roofline.model_share[{size},{part.replace(' ', '_')}]"] = share
    # the headline: the course's fastest absorbed decode at batch 1, the fused single pass where it ran
    for path in ("absorbed-fused", "absorbed"):
        headline = f"roofline.fraction_of_bound{at}[{path},b{batches[0]}]"
        if headline in results:
            results[f"roofline.fraction_of_bound{at}"] = results[headline]
            break
    return results
