"""Lesson 06 figures: the tiny DeepSeek-V3 (``helpers.lessons.capstone.CPU_CONFIG``) trained and decoding.

* ``capstone.train_tokens_per_s``: training throughput of the CPU configuration (MLA + DeepSeekMoE +
  MTP, batch and sequence length of the CPU plan), after one warm-up step.
* ``capstone.decode_ms_per_token`` / ``capstone.hf_decode_ms_per_token`` / ``capstone.ours_over_hf``:
  greedy generation of 256 tokens with the cache on, the same weights (the model just trained,
  exported with ``helpers.interop.to_hf``), ``helpers.generate`` (absorbed MLA, latent cache) against
  transformers' ``DeepseekV3ForCausalLM.generate`` (eager attention, its DynamicCache). The two token
  sequences must be identical, or the run raises. The two take turns (``helpers.timing.interleaved``,
  2 rounds with ``--quick``, full: 4; each turn a warm-up run and a timed run); each figure is the best
  (minimum) run, per new token, on one CPU thread and in that thread's CPU time, as in the ``kv``
  suite (``helpers.bench.kv``, "Threads" and "Clock"), so that other processes on a shared machine
  do not decide the ratio. (Training runs on torch's default threads, in wall time.)
* ``capstone.hf_static_ms_per_token``: the same ``generate`` with ``cache_implementation="static"``
  (same tokens, asserted); ``capstone.hf_best_ms_per_token`` the faster of the two Hugging Face
  settings and ``capstone.ours_over_hf_best`` ours over it. ``torch.compile`` is not tried here (see
  ``helpers.bench.kv``: compiling the tiny Llama's forward took minutes and did not decode faster).

What limits the ratio (``torch.profiler``, one decode step): through the readable modules a step of
this model is ~320 top-level operator calls (~1,500 counting nested ones): MLA's absorbed path (two
``einsum`` per layer, RoPE written out), the MoE router and dispatch (``argsort``, ``bincount``,
``index_add_``, masks) and ``F.rms_norm``, a composite of about eight calls on the CPU. ``helpers.generate``
now runs this model through ``helpers.decode_plan`` (tested equal): W_UK, the softmax scale and the
query norm's gain folded into one query matrix, W_UV into the output projection, the block norm into
the down-projections, the router as written and one token's two experts gathered into two batched
products. Measured on an idle 2-core machine (``--quick``): 0.92 ms per token against transformers'
3.8 ms, ours/HF 0.24 (it was 0.74 through the readable modules); the full run (2026-12-03): 1.19 ms
against 4.12 ms, 0.29, and HF's static cache (4.71 ms) again slower than its dynamic one.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..data import load_corpus
from ..device import pick_device
from ..generate import generate
from ..interop import to_hf
from ..lessons.capstone import CPU_CONFIG, plan_for
from ..model import Transformer
from ..timing import hf_generate, interleaved
from ..training import train

NEW_TOKENS = 256


def run(quick: bool, cfg: ModelConfig = CPU_CONFIG, new_tokens: int = NEW_TOKENS,
        batch_size: int | None = None, seq_len: int | None = None) -> dict[str, float]:
    """The figures for ``cfg`` (the CPU plan's model; tests pass a smaller one), trained with the CPU
    plan's batch and sequence length unless given."""
    device = pick_device()
    plan = plan_for("cpu")
    B, T = batch_size or plan.batch_size, seq_len or plan.seq_len
    corpus = load_corpus()
    torch.manual_seed(0)
    model = Transformer(cfg)
    train(model, corpus, steps=1, batch_size=B, seq_len=T, eval_every=1, eval_iters=1, progress=False,
          device=device)  # warm-up
    steps = 10 if quick else 40
    hist = train(model, corpus, steps=steps, batch_size=B, seq_len=T, lr=plan.lr, eval_every=steps,
                 eval_iters=1, seed=1, progress=False, device=device)

    model.eval()
    hf = to_hf(model)
    prompt = torch.tensor([corpus.tokenizer.encode("def forward(self, x):")], device=device)
    ours_tokens = generate(model, prompt, new_tokens)
    for cache in (None, "static"):
        with torch.no_grad():
            hf_tokens = hf_generate(hf, prompt, new_tokens, cache_implementation=cache)
        if not torch.equal(ours_tokens, hf_tokens):
            first = int((ours_tokens != hf_tokens).nonzero()[0, 1])
            raise RuntimeError(f"capstone bench: our greedy tokens differ from transformers' "
                               f"({cache or 'dynamic'} cache) at position {first}")
    with torch.no_grad():
        static = lambda: hf_generate(hf, prompt, new_tokens, cache_implementation="static")  # noqa: E731
        t = interleaved({"ours": lambda: generate(model, prompt, new_tokens),
                         "hf": lambda: hf_generate(hf, prompt, new_tokens), "hf_static": static},
                        rounds=2 if quick else 4, min_run_time=0, threads=1, cpu_time=device.type == "cpu")
    ours_ms, hf_ms, hf_static_ms = (t[name].min / new_tokens * 1e3 for name in ("ours", "hf", "hf_static"))
    hf_best = min(hf_ms, hf_static_ms)
    return {
        "capstone.train_tokens_per_s": hist.tokens_per_sec,
        "capstone.decode_ms_per_token": ours_ms,
        "capstone.hf_decode_ms_per_token": hf_ms,
        "capstone.ours_over_hf": ours_ms / hf_ms,
        "capstone.hf_static_ms_per_token": hf_static_ms,
        "capstone.hf_best_ms_per_token": hf_best,
        "capstone.ours_over_hf_best": ours_ms / hf_best,
    }
