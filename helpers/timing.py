"""Timing, in one place, built on ``torch.utils.benchmark``.

Every speed figure of the course (the benchmarks in ``helpers.bench`` and the lessons' timed cells) is
measured here, so "how was this timed?" has one answer:

* ``time_call(fn)``: one function on its own, a ``Timing``.
* ``interleaved({"a": f, "b": g})``: several functions side by side, a ``Timing`` each. They take
  turns, round after round, so a load change on a shared machine hits all of them alike; compare them
  by a ratio.
* ``torch_threads(n)``: run a block on ``n`` torch CPU threads, then restore the setting.
* ``stopwatch()``: the elapsed time of ONE run of something too long or too stateful to repeat (a
  training run, one step inside a decode loop). A single reading, no statistic.
* ``decode_ms_per_token``, ``hf_decode_ms_per_token``: greedy decoding speed, ours and transformers'.
* ``stream_bandwidth``, ``peak_flops``: this machine's roofs (STREAM-style bandwidth, a matrix product's
  FLOP/s); ``decode_step``: one runnable decode step of one attention layer and its cost. Lesson 03's
  roofline and the roofline benchmark both measure through these.

Which statistic: a ``Timing`` holds ``median`` (the typical call) and ``min`` (the fastest measurement,
"best of", the one least disturbed by other processes). On a busy machine they can differ by 2x, so
every figure says which one it is: the benchmarks report ``min`` and call it "best". A ratio of two
minima and a ratio of two means (e.g. total time over total time) are different numbers; never set
one next to the other without saying so.

What ``torch.utils.benchmark.Timer`` does for us: it calls ``fn`` in blocks, sized so that reading the
clock costs next to nothing; it runs on the thread count it is given and restores the old one, even
if ``fn`` raises; its clock (``synced_clock``) synchronises the accelerators (every CUDA device, and
MPS) before every reading, so we time the kernels, not just their launch; and, like Python's ``timeit``,
it switches the garbage collector off while it times.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .generate import generate

if TYPE_CHECKING:
    from torch.utils.benchmark import Measurement, Timer


def _benchmark():
    """``torch.utils.benchmark``, imported on the first timing rather than with ``import helpers``
    (it takes about 0.2 s to import, and the training loop, which imports this module, needs only
    ``synced_clock``)."""
    import torch.utils.benchmark as benchmark

    return benchmark


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for the kernels queued on ``device``: a CUDA device by its own index (``cuda:1`` is not the
    current device unless made so), Apple's MPS, nothing for the CPU. ``None``: every accelerator this
    process can see (each CUDA device, and MPS)."""
    if device is None:
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                torch.cuda.synchronize(i)
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            torch.mps.synchronize()
        return
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def synced_clock(device: torch.device | str | None = None) -> float:
    """``time.perf_counter()`` after synchronising ``device`` (by default every accelerator: see
    ``synchronize``), so a reading counts the kernels launched before it, not just their launch."""
    synchronize(device)
    return time.perf_counter()


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one timed function.

    ``median``: the median over the measurements; ``min``: the fastest measurement ("best of");
    ``iqr``: their spread (75th minus 25th percentile); ``n``: how many measurements (each one is a
    block of calls, averaged); ``measurement``: torch's own record (``print`` it for a summary).
    """

    median: float
    min: float
    iqr: float
    n: int
    measurement: Measurement

    @classmethod
    def of(cls, m: Measurement) -> Timing:
        return cls(median=m.median, min=min(m.times), iqr=m.iqr, n=len(m.times), measurement=m)

    def __str__(self) -> str:
        return (f"median {self.median * 1e3:.3f} ms, min {self.min * 1e3:.3f} ms, "
                f"IQR {self.iqr * 1e3:.3f} ms ({self.n} measurements)")


def _timer(fn: Callable[[], object], threads: int | None, cpu_time: bool, label: str) -> Timer:
    # Timer's default is ONE thread; ``threads=None`` keeps whatever torch uses now.
    if cpu_time and threads != 1:
        raise ValueError("cpu_time=True reads the calling thread's CPU time: pass threads=1")
    # wall time read after synchronising every accelerator (Timer's own clock syncs the current CUDA
    # device only, and MPS not at all)
    clock = {"timer": time.thread_time if cpu_time else synced_clock}
    return _benchmark().Timer(stmt="fn()", globals={"fn": fn}, label=label, **clock,
                 num_threads=torch.get_num_threads() if threads is None else threads)


def time_call(fn: Callable[[], object], *, min_run_time: float = 0.2, threads: int | None = None,
              cpu_time: bool = False, label: str = "") -> Timing:
    """Time ``fn()`` with ``Timer.blocked_autorange``: a few calls to warm up and pick a block size,
    then blocks of calls until ``min_run_time`` seconds have been measured.

    Why ``blocked_autorange`` and not ``adaptive_autorange``: the adaptive one keeps measuring until
    the spread (IQR / median) falls below a threshold, which on a shared, busy machine may not happen
    before its ``max_run_time``, so its cost is unpredictable. The blocked one spends a fixed budget
    and reports the spread (``Timing.iqr``) instead of waiting it out.

    ``threads``: torch CPU threads during the measurement (restored afterwards); ``None``: as now.
    ``cpu_time``: read the CPU time of the calling thread (``time.thread_time``) instead of wall time;
    needs ``threads=1``, so that torch computes on this thread. It does not count the time other
    processes hold the core, so ratios of two CPU times stay put on a busy machine. CPU-only: this
    clock does not wait for the accelerator.
    """
    timer = _timer(fn, threads, cpu_time, label)
    return Timing.of(timer.blocked_autorange(min_run_time=min_run_time))


def interleaved(fns: dict[Hashable, Callable[[], object]], rounds: int = 3, *, number: int | None = None,
                min_run_time: float = 0.05, threads: int | None = None,
                cpu_time: bool = False) -> dict[Hashable, Timing]:
    """Time several functions side by side: in each of ``rounds`` rounds every function takes one
    turn, in order, so drifting machine load hits all of them alike. Returns a ``Timing`` per name,
    pooled over all its turns.

    A turn is one ``Timer`` measurement of that function: ``blocked_autorange(min_run_time)`` (it
    warms up with at least one call, then times blocks for ``min_run_time`` seconds, at least one
    block; ``min_run_time=0``: one warm-up call, one timed call), or, if ``number`` is given,
    ``Timer.timeit(number)`` (two or more warm-up calls, then ``number`` calls timed as one block).
    ``threads`` and ``cpu_time`` as in ``time_call``.
    """
    timers = {name: _timer(fn, threads, cpu_time, str(name)) for name, fn in fns.items()}
    turns: dict[Hashable, list[Measurement]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, timer in timers.items():
            m = timer.timeit(number) if number else timer.blocked_autorange(min_run_time=min_run_time)
            turns[name].append(m)
    return {name: Timing.of(_benchmark().Measurement.merge(ms)[0]) for name, ms in turns.items()}


def interleaved_best(fns: dict, rounds: int = 3) -> dict[str, float]:
    """The best (minimum) seconds per call of each function, timed side by side by ``interleaved``."""
    return {name: t.min for name, t in interleaved(fns, rounds).items()}


@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(n)``, then restore the previous setting (also if the
    body raises). One thread gives steadier timings on a shared machine: a multi-threaded op stalls
    whenever one of its threads is descheduled, and small ops gain nothing from a second thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Stopwatch:
    """What ``stopwatch()`` yields: ``seconds`` is NaN until the ``with`` block ends."""

    seconds: float = float("nan")


@contextmanager
def stopwatch(cpu_time: bool = False) -> Iterator[Stopwatch]:
    """``with stopwatch() as clock: ...`` puts the wall time of the block in ``clock.seconds``, with the
    accelerator synchronised at both ends. One reading of one run: for a training run or a step inside
    a loop, not for comparing speeds (use ``interleaved``). ``cpu_time=True``: the calling thread's CPU
    time instead (``time.thread_time``, as in ``time_call``; CPU-only, for a block on one thread)."""
    clock = Stopwatch()
    read = time.thread_time if cpu_time else synced_clock
    start = read()
    try:
        yield clock
    finally:
        clock.seconds = read() - start


def _best_ms_per_token(fn: Callable[[], object], new_tokens: int, repeats: int) -> float:
    # one arm, `repeats` turns: each one warm-up run and one timed run
    best = interleaved({"decode": fn}, rounds=repeats, min_run_time=0)["decode"].min
    return best / new_tokens * 1e3


def decode_ms_per_token(model, prompt: torch.Tensor, new_tokens: int, repeats: int = 3) -> float:
    """Best (minimum) wall time of ``helpers.generate`` (greedy, cache on) over ``repeats`` timed
    runs, per new token, in ms."""
    return _best_ms_per_token(lambda: generate(model, prompt, new_tokens), new_tokens, repeats)


def hf_generate(hf_model, prompt: torch.Tensor, new_tokens: int, use_cache: bool = True,
                cache_implementation: str | None = None) -> torch.Tensor:
    """transformers' greedy ``generate`` for exactly ``new_tokens`` tokens (no end-of-sequence stop);
    ``cache_implementation="static"`` for its pre-allocated cache."""
    return hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, use_cache=use_cache,
                             cache_implementation=cache_implementation)


def hf_decode_ms_per_token(hf_model, prompt: torch.Tensor, new_tokens: int, repeats: int = 3) -> float:
    """The same measurement for a transformers model's ``generate``."""
    return _best_ms_per_token(lambda: hf_generate(hf_model, prompt, new_tokens), new_tokens, repeats)


# --- the machine's roofs and one measured decode step ---------------------------------------------------
# Measured here, once, for both lesson 03's roofline (``helpers.lessons.roofline``) and the benchmark
# (``helpers.bench.roofline``, their old home, which re-exports them). One thread, CPU time: see
# "Clock" in ``helpers.bench.roofline``'s docstring. STREAM: McCalpin 1995.
ROOF_THREADS = 1
ROOF_CPU_TIME = True


def stream_bandwidth(n_elements: int, rounds: int = 3) -> dict[str, float]:
    """GB/s (1e9 bytes per second) of STREAM-style copy, triad and read on float32 arrays of
    ``n_elements``; each the best (fastest) of ``rounds`` turns (``interleaved``, each turn a warm-up
    and a timed call). STREAM's byte counts: a write-allocate read of the destination is not counted."""
    a = torch.rand(n_elements)
    b = torch.rand(n_elements)
    c = torch.rand(n_elements)
    array_bytes = n_elements * a.element_size()
    kernels: dict[str, tuple[Callable[[], object], int]] = {
        "copy": (lambda: c.copy_(a), 2 * array_bytes),  # read a, write c
        "triad": (lambda: torch.add(b, c, alpha=3.0, out=a), 3 * array_bytes),  # read b, c, write a
        "read": (lambda: a.sum(), array_bytes),  # read a
    }
    best = interleaved({name: fn for name, (fn, _) in kernels.items()}, rounds, min_run_time=0,
                       threads=ROOF_THREADS, cpu_time=ROOF_CPU_TIME)
    return {name: nbytes / best[name].min / 1e9 for name, (_, nbytes) in kernels.items()}


def peak_flops(n: int = 1024, rounds: int = 3) -> float:
    """FLOP/s of the best (fastest) of ``rounds`` float32 ``n × n`` matrix products (2n³ FLOPs each)."""
    x, y = torch.randn(n, n), torch.randn(n, n)
    best = interleaved({"mm": lambda: x @ y}, rounds, min_run_time=0, threads=ROOF_THREADS,
                       cpu_time=ROOF_CPU_TIME)
    return 2 * n ** 3 / best["mm"].min


DECODE_CONTEXT = 32768
# name: (which attention, attn_impl); why the MLA paths use "explicit": ``helpers.bench.roofline.PATHS``.
DECODE_PATHS: dict[str, tuple[str, str]] = {
    "absorbed": ("absorbed", "explicit"),
    "absorbed-fused": ("absorbed", "fused"),  # one pass over the latents (helpers.fused_mla)
    "absorbed-sdpa": ("absorbed", "sdpa"),
    "kv": ("kv", "explicit"),
    "gqa": ("gqa", "sdpa"),
}


def _decode_configs():
    """One MLA layer with DeepSeek-V3's per-head shapes, few heads; and a GQA layer of the same width."""
    from .config import ModelConfig

    mla = ModelConfig(dim=512, n_heads=4, attn_type="mla", q_lora_rank=0, kv_lora_rank=512,
                      qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, n_layers=1,
                      max_seq_len=DECODE_CONTEXT + 1)
    gqa = ModelConfig(dim=512, n_heads=4, n_kv_heads=2, head_dim=128, n_layers=1,
                      max_seq_len=DECODE_CONTEXT + 1)
    return mla, gqa


DECODE_MLA_CONFIG, DECODE_GQA_CONFIG = _decode_configs()


def decode_layer(path: str):
    """The layer of a ``DECODE_PATHS`` entry and its configuration."""
    from .attention import Attention
    from .mla import MLA

    kind, impl = DECODE_PATHS[path]
    if kind == "gqa":
        cfg = DECODE_GQA_CONFIG.replace(attn_impl=impl)
        return Attention(cfg).eval(), cfg
    cfg = DECODE_MLA_CONFIG.replace(attn_impl="explicit" if impl == "fused" else impl)
    layer = MLA(cfg, mode=kind).eval()
    layer.impl = impl  # "fused" is an MLA-only decode path, not a config choice
    return layer, cfg


def decode_step(path: str, batch: int, context: int, seed: int = 0):
    """A function that runs one decode step of ``path`` (one layer, float32) against ``context`` cached
    random positions (and crops the new one off again), and the step's cost
    (``helpers.decode_cost.layer_step_cost``). Speed does not depend on the cached values."""
    from .attention import rope_tables
    from .decode_cost import layer_step_cost
    from .kv_cache import StaticKVCache

    torch.manual_seed(seed)
    layer, cfg = decode_layer(path)
    kind = DECODE_PATHS[path][0]
    rope_dim = cfg.qk_rope_head_dim if kind != "gqa" else cfg.hd
    cos, sin = rope_tables(rope_dim, context + 1, cfg.rope_theta)
    cache = StaticKVCache(1, context + 1)
    if kind == "absorbed":
        history = (torch.rand(batch, context, cfg.kv_lora_rank), torch.rand(batch, context, rope_dim))
    elif kind == "kv":
        H = cfg.n_heads
        history = (torch.rand(batch, H, context, cfg.qk_nope_head_dim + rope_dim),  # (B, H, S, Dn + Dr)
                   torch.rand(batch, H, context, cfg.v_head_dim))  # (B, H, S, Dv)
    else:
        history = tuple(torch.rand(batch, cfg.kv_heads, context, cfg.hd) for _ in range(2))  # (B, G, S, Dh)
    cache.update(0, *history)
    del history
    x = torch.randn(batch, 1, cfg.dim)  # (B, 1, D)
    new_cos, new_sin = cos[context:], sin[context:]

    @torch.inference_mode()
    def step():
        out = layer(x, new_cos, new_sin, cache)
        cache.crop(context)
        return out

    return step, layer_step_cost(kind, layer, cfg, batch, context)
