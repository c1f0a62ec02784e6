"""Lesson 01 figures: what the KV cache saves in greedy decoding, and how our lean decode loop compares
with Hugging Face's ``generate`` on the same model.

Figures, for 512 new tokens after a 16-token prompt, batch of one, float32 on the CPU; ``[tiny]`` and
``[small]`` name the model (the baseline Llama-style transformer of the ``tiny`` preset, D=96, 3
layers, 6 heads, and of the ``small`` preset, D=256, 4 layers, 8 heads; both with ``max_seq_len``
raised to 1024 so 16 + 512 positions fit; random weights, seed 0, since speed does not depend on them):

- ``kv.recompute_ms_per_token@512[tiny]``: ``generate(..., use_cache=False)``, which runs the whole
  prefix through the model for every new token, in milliseconds per new token.
- ``kv.cached_ms_per_token@512[tiny]``: ``generate(..., use_cache=True)`` (a prefill, then one token
  per step against a pre-allocated ``StaticKVCache``).
- ``kv.speedup@512[tiny]``: recompute / cached, measured in the same run.
- ``kv.hf_cached_ms_per_token@512[tiny]``: ``transformers.LlamaForCausalLM.generate`` on the same
  config with our weights copied in (``helpers.interop.llama_to_hf``), greedy, cache on (its default
  dynamic cache), its default ``sdpa`` attention, ``min_new_tokens`` = ``max_new_tokens`` so that it
  really makes 512 tokens. The run asserts that it produces exactly our tokens.
- ``kv.ours_over_hf[tiny]``: ours / HF cached ms per token (below 1: our loop is faster).
- ``kv.hf_static_ms_per_token@512[tiny]``: the same ``generate`` with ``cache_implementation="static"``
  (its pre-allocated cache, the configuration it recommends for speed; same tokens, asserted).
- ``kv.hf_best_ms_per_token@512[tiny]``: Hugging Face's fastest configuration measured here, the
  smaller of the dynamic- and the static-cache figure; ``kv.ours_over_hf_best[tiny]`` = ours / that.
  Not included: ``torch.compile``. Compiling ``forward`` of the tiny model with the static cache
  (inductor, ``dynamic=False``) works here, but its first call took 163 s on the course's busy 2-core
  machine, and afterwards it decoded no faster than the uncompiled dynamic cache (3.0 vs 3.3 ms per
  token CPU time, ours 2.0 in the same run): a step of this size is framework overhead that
  compilation of the model alone does not remove.

Timing (``helpers.timing``): each cached figure is the best (minimum) of several timed runs, ours and
HF's (both cache settings) taken in turn (``interleaved``, 2 rounds with ``--quick``, 5 in the full
run; every turn is one warm-up run and one timed run) so load changes on a shared machine hit both
alike. The full run times the recompute loop over all 512 steps once (``stopwatch``, after the cached
runs); ``--quick`` samples it instead: 16 single uncached steps, one per 32-step block at its
midpoint (a forward over the prefix that step would see, plus sampling), each timed in the same
rounds as the cached runs, best of each, then averaged: an estimate of the same per-token mean that
keeps the suite short. (The
recompute figure averages over the loop's steps, whose cost grows with the prefix; each cached figure
is one whole 512-token run, the best one.)

Threads: the suite times on ``THREADS = 1`` CPU thread (``helpers.timing.torch_threads``, restored
afterwards). On a shared 2-core machine a 2-thread PyTorch op stalls whenever one of its threads is
descheduled, and timings swung 10-50x between identical calls; on one thread they do not, and a
batch-of-one decode step has too little work per op to gain from a second thread anyway.
Both loops, ours and Hugging Face's, run under the same setting.

Clock: CPU time of the one computing thread (``helpers.timing``, ``cpu_time=True``), for every figure
of the suite. On an idle machine it equals wall time for this single-threaded work; on the course's
shared 2-core machine, busy with training sweeps (load 6-7), a wall-clock "best of two" of a 1-3 s
run was mostly a measure of when the scheduler let us run (ours/HF moved by ±0.15 between identical
runs), while CPU time does not count the time another process holds the core. Contention for caches
and memory still shows in both.

What limits the figures (``decode_step_profile``: ``torch.profiler`` on one decode step, one thread;
lesson 01 prints it): a cached step of a small model is framework overhead, not arithmetic. The
readable model (``Transformer.decode_step`` under ``torch.inference_mode()``, with the fused layer
paths of ``helpers.layers``) makes ~114 top-level operator calls per step of the tiny model (~550
counting the ones they call), and on the CPU ``F.rms_norm`` alone is a composite of about eight; the
matrix products are under a tenth of the step. ``helpers.generate`` therefore runs dense models through
``helpers.decode_plan`` (the same arithmetic, tested equal: RMSNorm's gain folded into the following
product, RoPE as two element-wise calls, pre-allocated K and V, residual adds fused into ``addmm``),
~300 calls in all per tiny step. Measured on an idle 2-core machine (``--quick``): ours/HF 0.22-0.35
(tiny) and 0.36-0.49 (small) over several runs, and 0.24 and 0.38 in the full run (2026-12-03); HF's
static cache was slower than its dynamic one here, so ``hf_best`` is the dynamic cache. Hugging Face's
``generate`` does the unfused model work plus its generation machinery (logits processors, stopping
criteria, cache object, attention-mask and position bookkeeping). On the small model each step also
streams ~13 MB of float32 weights, a cost both loops share, so the ratio moves towards 1 as the model
grows.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..config import ModelConfig, preset
from ..generate import generate
from ..model import Transformer
from ..timing import interleaved, stopwatch, torch_threads

N_NEW = 512
THREADS = 1
CPU_TIME = True  # read the computing thread's CPU time (see "Clock" above)
PROMPT_LEN = 16
CONFIGS: dict[str, ModelConfig] = {
    "tiny": preset("tiny", max_seq_len=1024),
    "small": preset("small", max_seq_len=1024),
}


@dataclass
class KVSetup:
    tag: str
    model: Transformer
    hf: object  # transformers.LlamaForCausalLM with the same weights
    prompt: torch.Tensor  # (1, PROMPT_LEN)
    n_new: int

    def ours(self) -> torch.Tensor:
        return generate(self.model, self.prompt, self.n_new)

    def theirs(self, cache_implementation: str | None = None) -> torch.Tensor:
        """Hugging Face's greedy ``generate``; ``cache_implementation="static"`` for its static cache."""
        with torch.inference_mode():
            return self.hf.generate(self.prompt, attention_mask=torch.ones_like(self.prompt),
                                    max_new_tokens=self.n_new, min_new_tokens=self.n_new,
                                    do_sample=False, use_cache=True, pad_token_id=0,
                                    cache_implementation=cache_implementation)

    def theirs_static(self) -> torch.Tensor:
        return self.theirs("static")


def prepare(tag: str, cfg: ModelConfig, n_new: int = N_NEW, prompt_len: int = PROMPT_LEN,
            seed: int = 0) -> KVSetup:
    """Our seeded model, its Hugging Face twin (default ``sdpa`` attention) and a random prompt."""
    from ..interop import llama_to_hf

    if prompt_len + n_new > cfg.max_seq_len:
        raise ValueError(f"prompt_len={prompt_len} + n_new={n_new} exceeds max_seq_len={cfg.max_seq_len}")
    torch.manual_seed(seed)
    model = Transformer(cfg).eval()
    hf = llama_to_hf(model)
    hf.config._attn_implementation = "sdpa"  # HF's default; tiny_llama builds eager for peer checks
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, cfg.vocab_size, (1, prompt_len), generator=gen)
    return KVSetup(tag, model, hf, prompt, n_new)


def recompute_loop_seconds_per_token(setup: KVSetup, tokens: torch.Tensor) -> float:
    """Seconds per new token of the real uncached loop over all ``n_new`` steps; its tokens must equal
    ``tokens`` (the cached greedy output)."""
    model, prompt, n = setup.model, setup.prompt, setup.n_new
    generate(model, prompt, min(n, 8), use_cache=False)  # warm-up
    with stopwatch(cpu_time=CPU_TIME) as clock:  # one run: it is long, and its tokens are checked
        out = generate(model, prompt, n, use_cache=False)
    if not torch.equal(out, tokens):
        raise AssertionError(f"[{setup.tag}] uncached greedy tokens differ from cached ones")
    return clock.seconds / n


def recompute_steps(setup: KVSetup, tokens: torch.Tensor, stride: int) -> dict[int, Callable[[], object]]:
    """One uncached step (a forward over the prefix that step sees, plus sampling) at the midpoint of
    every ``stride``-step block, on the prefixes the loop would see (``tokens``, the greedy output)."""
    T0 = setup.prompt.shape[1]
    return {i: (lambda prefix=tokens[:, :T0 + i]: generate(setup.model, prefix, 1, use_cache=False))
            for i in range(stride // 2, setup.n_new, stride)}


def measure(setup: KVSetup, rounds: int, stride: int) -> dict[str, float]:
    """The eight figures for one model. ``stride == 1`` times the whole recompute loop once; a larger
    stride samples its steps, timed in the same rounds as the cached runs."""
    ours = setup.ours()
    for name, theirs in (("dynamic", setup.theirs()), ("static", setup.theirs_static())):
        if not torch.equal(ours, theirs):
            first = (ours != theirs).nonzero()[0, 1].item() if ours.shape == theirs.shape else None
            raise AssertionError(f"[{setup.tag}] Hugging Face generate ({name} cache) and ours differ (first "
                                 f"at position {first}); the timing would compare different work")
    fns = {"ours": setup.ours, "hf": setup.theirs, "hf_static": setup.theirs_static}
    steps = recompute_steps(setup, ours, stride) if stride > 1 else {}
    fns.update({f"step{i}": fn for i, fn in steps.items()})
    timings = interleaved(fns, rounds, min_run_time=0, threads=THREADS, cpu_time=CPU_TIME)
    best = {name: t.min for name, t in timings.items()}
    n = setup.n_new
    cached = best["ours"] / n
    hf = best["hf"] / n
    hf_static = best["hf_static"] / n
    hf_best = min(hf, hf_static)
    if steps:
        recompute = sum(best[f"step{i}"] for i in steps) / len(steps)
    else:
        recompute = recompute_loop_seconds_per_token(setup, ours)
    at, tag = f"@{n}", f"[{setup.tag}]"
    return {
        f"kv.recompute_ms_per_token{at}{tag}": recompute * 1e3,
        f"kv.cached_ms_per_token{at}{tag}": cached * 1e3,
        f"kv.speedup{at}{tag}": recompute / cached,
        f"kv.hf_cached_ms_per_token{at}{tag}": hf * 1e3,
        f"kv.ours_over_hf{tag}": cached / hf,
        f"kv.hf_static_ms_per_token{at}{tag}": hf_static * 1e3,
        f"kv.hf_best_ms_per_token{at}{tag}": hf_best * 1e3,
        f"kv.ours_over_hf_best{tag}": cached / hf_best,
    }


def run(quick: bool, configs: dict[str, ModelConfig] | None = None, n_new: int = N_NEW) -> dict[str, float]:
    results: dict[str, float] = {}
    with torch_threads(THREADS):
        for tag, cfg in (configs or CONFIGS).items():
            setup = prepare(tag, cfg, n_new=n_new)
            stride = max(1, n_new // 16) if quick else 1
            results.update(measure(setup, rounds=2 if quick else 5, stride=stride))
    return results


# --- where a decode step's time goes (lesson 01, §4) ---------------------------------------------------
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mv", "aten::dot")
PROFILE_PARTS = ("matrix products", "attention kernel", "other operators", "between operators")


@dataclass
class StepProfile:
    """One cached decode step, profiled (``decode_step_profile``)."""

    label: str
    ms_per_step: float  # timed WITHOUT the profiler: best of 3 rounds, CPU time, one thread
    top_level_calls: float  # operator calls per step made by our code (not counting their children)
    all_calls: float  # every operator call per step, nested ones included
    shares: dict[str, float]  # PROFILE_PARTS -> share of the profiled step's time (they add up to 1)
    profiled_ms_per_step: float = math.nan  # the same step under the profiler, which slows every call


@contextmanager
def _quiet_native_stderr():
    """Point file descriptor 2 at /dev/null for the block: torch's profiler (kineto) writes a
    ``profiler_start``/``profiler_stop`` line per run straight to the C stderr, which a notebook shows
    as an output of its own."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def decode_step_profile(model, fast: bool, context: int = 64, steps: int = 50) -> StepProfile:
    """Where one greedy decode step of ``model`` (batch 1, ``context`` cached positions) spends its time,
    through the readable path (``model.decode_step``, ``fast=False``) or the flat one
    (``helpers.decode_plan``, ``fast=True``).

    ``torch.profiler`` records every operator call of ``steps`` steps; each call's *self* time is
    sorted into matrix products (``MATMUL_OPS``), the attention kernel (SDPA, softmax) and other
    operators, and what is left of the loop's elapsed time is spent *between* operators (Python,
    building tensors' metadata, the dispatcher). The profiler slows every call a little, so the shares
    are read from the profiled run and the milliseconds from a separate unprofiled timing."""
    from torch.profiler import ProfilerActivity, profile

    from ..decode_plan import DecodePlan
    from ..timing import synced_clock

    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, model.config.vocab_size, (1, context), generator=gen, device=model.device)
    x = prompt[:, -1:]
    with torch.inference_mode(), torch_threads(THREADS):
        if fast:
            plan = DecodePlan(model, 1, context + 1)
            plan.step(prompt)

            def step():
                out = plan.logits(plan.step(x)[:, -1])
                plan.crop(context)
                return out
        else:
            cache = model.new_cache(static=True, max_len=context + 1)
            model.decode_step(prompt, cache)

            def step():
                out = model.decode_step(x, cache)
                cache.crop(context)
                return out

        for _ in range(5):  # warm-up: weights arranged, buffers allocated
            step()
        best = interleaved({"step": step}, 3, number=steps, min_run_time=0, threads=THREADS,
                           cpu_time=CPU_TIME)["step"].min
        with _quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
            start = synced_clock()
            for _ in range(steps):
                step()
            elapsed_us = (synced_clock() - start) * 1e6
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    parts = dict.fromkeys(PROFILE_PARTS, 0.0)
    for e in events:
        if e.name in MATMUL_OPS:
            parts["matrix products"] += e.self_cpu_time_total
        elif "scaled_dot_product" in e.name or "softmax" in e.name:
            parts["attention kernel"] += e.self_cpu_time_total
        else:
            parts["other operators"] += e.self_cpu_time_total
    parts["between operators"] = max(0.0, elapsed_us - sum(parts.values()))
    total = sum(parts.values())
    top = sum(1 for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
    return StepProfile("flat plan" if fast else "readable", best * 1e3, top / steps, len(events) / steps,
                       {k: v / total for k, v in parts.items()}, elapsed_us / steps / 1e3)
