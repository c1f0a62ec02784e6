"""Lesson 06: a tiny DeepSeek-V3 assembled from the course's parts, and its run plan.

DeepSeek-V3 Technical Report (arXiv 2412.19437) §2, Figure 2: every block is multi-head latent
attention (§2.1.1, ``helpers.mla``) followed by a dense SwiGLU MLP in the first ``n_dense_layers``
blocks and DeepSeekMoE after (§2.1.2, ``helpers.moe``: shared + routed experts, sigmoid scores,
group-limited routing, auxiliary-loss-free bias balancing plus the tiny sequence-wise loss), and D = 1
multi-token-prediction module on top (§2.2, ``helpers.mtp``). ``helpers.Transformer`` already assembles
all of it from one ``ModelConfig``; this module holds the lesson's own choices: the CPU and GPU
configurations and the run plan the kernel-check cell picks (``plan_for``), and ``compile_dense_parts``.

What the lesson uses from elsewhere: the parameter bill (``helpers.params``), DeepSeek-V3's real sizes
(``helpers.published.deepseek_v3_config``), the cache bill (``helpers.kv_cache``), decode timing
(``helpers.timing``) and the training dashboard (``helpers.viz.dashboard``). Their old names here keep
working, except ``cache_bytes_per_token``: the formula is ``kv_cache.config_cache_bytes_per_token`` now,
so that no name means both a formula and a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ModelConfig
from ..kv_cache import measured_cache_bytes_per_token  # noqa: F401  (old home)
from ..moe import MoE
from ..params import (  # noqa: F401
    ParamCount,
    attention_params,
    matched_baseline,
    measured_param_count,
    mlp_params,
    param_count,
)
from ..plan import plan_name, scaled, scaled_recipe
from ..published import deepseek_v3_config  # noqa: F401  (old home)
from ..timing import decode_ms_per_token, hf_decode_ms_per_token, hf_generate, interleaved_best  # noqa: F401
from ..viz.dashboard import Dashboard, LossHistory, plot_training_summary  # noqa: F401  (old home)

# --- configurations and the run plan -----------------------------------------------------------------
# The CPU model: lesson 00's width, depth and heads (D=96, 3 layers, 6 heads), every mechanism of V3.
# moe_inter_dim is chosen so that the ACTIVE parameters equal lesson 00's whole baseline (see the
# notebook and tests/test_capstone.py: matched_baseline(CPU_CONFIG) is exactly preset("tiny")).
CPU_CONFIG = ModelConfig(
    dim=96, n_layers=3, n_heads=6, inter_dim=256, max_seq_len=512, attn_type="mla",
    q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
    n_dense_layers=1, n_routed_experts=8, n_activated_experts=2, n_shared_experts=1, moe_inter_dim=96,
    n_expert_groups=4, n_limited_groups=2, score_func="sigmoid", route_scale=2.5,
    balance="loss_free+seq_aux", aux_loss_alpha=1e-4, bias_update_speed=1e-2, mtp_depth=1, mtp_lambda=0.3)
# γ = 0.01, ten times V3's 0.001: a bias moves by at most γ per step, and a few hundred steps at 0.001
# could shift it by only a few tenths (V3 trains for hundreds of thousands of steps).

# The GPU model: same code and ratios, wider and deeper, 16 experts.
GPU_CONFIG = CPU_CONFIG.replace(
    dim=384, n_layers=6, n_heads=8, inter_dim=1024, q_lora_rank=192, kv_lora_rank=96,
    qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32, n_routed_experts=16, n_activated_experts=2,
    moe_inter_dim=256, n_expert_groups=4, n_limited_groups=2, max_seq_len=1024, bias_update_speed=3e-3)


@dataclass(frozen=True)
class RunPlan:
    """What the kernel-check cell decides: the model and the training recipe for this device."""

    name: str  # "cpu" or "gpu"
    device: torch.device
    config: ModelConfig
    steps: int
    batch_size: int  # B
    seq_len: int  # T
    lr: float
    eval_every: int
    autocast: torch.dtype | None  # bf16 mixed precision on the GPU plan, None (float32) on the CPU plan
    compile: bool  # torch.compile the attention and dense MLP modules (CUDA only, optional)

    @property
    def tokens(self) -> int:
        return self.steps * self.batch_size * self.seq_len


# The two recipes at full length (the CPU one is the committed capstone sweep's: helpers.experiments.models).
CPU_RECIPE = dict(steps=420, batch_size=16, seq_len=128, lr=3e-3, eval_every=70)
GPU_RECIPE = dict(steps=1500, batch_size=32, seq_len=256, lr=2e-3, eval_every=250)


def plan_for(device: torch.device | str, compile: bool = False) -> RunPlan:
    """The CPU plan (float32, minutes on a laptop) or the GPU plan (bf16 autocast), as
    ``helpers.plan.plan_name`` decides: the GPU plan on CUDA, the CPU plan elsewhere (MPS included),
    unless ``COURSE_PLAN`` forces one; ``COURSE_STEPS_SCALE`` shortens the run. ``compile`` applies on
    CUDA only (the training modules; decoding goes through ``helpers.decode_plan``, never compiled)."""
    device = torch.device(device)
    if plan_name(device) == "gpu":
        # Scaled, the GPU plan shrinks its batch too: one of its full steps (8,192 tokens through a 34M-
        # parameter model) takes about 20 s on a 2-core CPU, more than the CPU plan's whole run.
        recipe = {**scaled_recipe(GPU_RECIPE), "batch_size": scaled(GPU_RECIPE["batch_size"])}
        return RunPlan("gpu", device, GPU_CONFIG, **recipe, autocast=torch.bfloat16,
                       compile=compile and device.type == "cuda")
    return RunPlan("cpu", device, CPU_CONFIG, **scaled_recipe(CPU_RECIPE), autocast=None, compile=False)


def compile_dense_parts(model) -> int:
    """``torch.compile`` each block's attention and dense MLP in place (the MoE layers keep eager mode:
    their token counts per expert change every step). Returns how many modules were compiled."""
    n = 0
    for layer in model.layers:
        layer.attn.compile(dynamic=True)
        n += 1
        if not isinstance(layer.ffn, MoE):
            layer.ffn.compile(dynamic=True)
            n += 1
    return n
