"""Lesson 04 figures: one DeepSeekMoE layer forward, ours against Hugging Face's ``DeepseekV3MoE`` with
the same weights, and our grouped dispatch against the readable per-token loop.

Figures:

- ``moe.ours_ms@4096``: our ``MoE`` forward (grouped dispatch: tokens sorted by expert, one call per
  expert) on N = 4096 tokens, in milliseconds (best (minimum) measurement, inference mode).
- ``moe.hf_ms@4096``: ``DeepseekV3MoE`` with the same weights, with the experts implementation a
  full Hugging Face model picks by default (``grouped_mm`` when this torch can run it, else ``eager``);
  ``moe.hf_eager_ms@4096`` is HF's per-expert loop, always measured.
- ``moe.ours_over_hf``: ours / HF default, measured side by side (target ≤ 1.0).
- ``moe.dispatch_speedup``: per-token reference loop time / grouped dispatch time, on N = 256 tokens
  (the loop makes N·K expert calls, so it is measured on fewer tokens; both paths see the same ones).

Layer: D = 256, E = 16 routed experts of width 128, K = 4, 4 groups (2 kept), one shared expert,
sigmoid scores with a nonzero selection bias, route_scale 2.5, float32 on the CPU (or the device given).
Timing: ``helpers.timing.interleaved``, the three layers taking turns for two rounds, then the loop and
the grouped dispatch likewise; quick mode measures for a shorter time per turn.
"""

from __future__ import annotations

import torch

from ..moe import MoE
from ..timing import interleaved

N_TOKENS = 4096
LOOP_TOKENS = 256
HF_SIZES = dict(hidden_size=256, moe_intermediate_size=128, n_routed_experts=16, num_experts_per_tok=4,
                n_group=4, topk_group=2, n_shared_experts=1, routed_scaling_factor=2.5)


def hf_layer(implementation: str = "eager", seed: int = 0, sizes: dict | None = None):
    """A seeded Hugging Face ``DeepseekV3MoE`` of the benchmark's sizes, with a nonzero bias."""
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE

    from ..interop import tiny_deepseek_hf_config

    torch.manual_seed(seed)
    hcfg = tiny_deepseek_hf_config(**(sizes or HF_SIZES))
    hcfg._experts_implementation = implementation
    hf = DeepseekV3MoE(hcfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(std=0.05)
        hf.gate.e_score_correction_bias.normal_(std=0.02)
    return hf


def hf_default_implementation() -> str:
    """What a full Hugging Face model would pick: grouped_mm when it can dispatch here, else eager."""
    try:
        from transformers.integrations.moe import _can_use_grouped_mm

        x = torch.zeros(2, 2)
        w = torch.zeros(1, 2, 2)
        ok = _can_use_grouped_mm(x, w, torch.tensor([2], dtype=torch.int32))
        if ok:
            from transformers.integrations.moe import _grouped_mm

            _grouped_mm(x, w, torch.tensor([2], dtype=torch.int32))
        return "grouped_mm" if ok else "eager"
    except Exception:
        return "eager"


def run(quick: bool, device=None, n_tokens: int = N_TOKENS, loop_tokens: int = LOOP_TOKENS,
        sizes: dict | None = None) -> dict[str, float]:
    """The figures above; ``n_tokens``, ``loop_tokens`` and ``sizes`` (HF config fields) shrink it."""
    from ..interop import moe_from_hf

    if n_tokens % 4 or not 0 < loop_tokens <= n_tokens:
        raise ValueError(f"n_tokens={n_tokens} must be a multiple of 4 and loop_tokens={loop_tokens} "
                         "in (0, n_tokens]")
    sizes = sizes or HF_SIZES
    device = torch.device(device or "cpu")
    per_turn = 0.05 if quick else 0.3  # seconds of timed calls per turn
    hf_eager = hf_layer("eager", sizes=sizes).to(device)
    ours: MoE = moe_from_hf(hf_eager).to(device)
    default = hf_default_implementation()
    hf_default = hf_layer(default, sizes=sizes).to(device)
    hf_default.load_state_dict(hf_eager.state_dict())
    x = torch.randn(4, n_tokens // 4, sizes["hidden_size"], device=device)

    def dispatched(mode: str, inputs: torch.Tensor):
        def call():
            ours.dispatch = mode
            return ours(inputs)
        return call

    results: dict[str, float] = {}
    with torch.inference_mode():
        torch.testing.assert_close(ours(x).out, hf_eager(x), atol=1e-4, rtol=1e-4)  # same function
        t = interleaved({"ours": lambda: ours(x), "eager": lambda: hf_eager(x),
                         "default": lambda: hf_default(x)}, rounds=2, min_run_time=per_turn)
        ms = {name: timing.min * 1e3 for name, timing in t.items()}  # best of each, in ms
        results[f"moe.ours_ms@{n_tokens}"] = ms["ours"]
        results[f"moe.hf_ms@{n_tokens}"] = ms["default"]
        results[f"moe.hf_eager_ms@{n_tokens}"] = ms["eager"]
        results["moe.ours_over_hf"] = ms["ours"] / ms["default"]
        small = x.reshape(-1, x.shape[-1])[:loop_tokens].reshape(1, loop_tokens, -1)
        t = interleaved({"loop": dispatched("loop", small), "grouped": dispatched("grouped", small)},
                        rounds=2, min_run_time=per_turn)
        ours.dispatch = "grouped"
        results["moe.dispatch_speedup"] = t["loop"].min / t["grouped"].min
    return results
