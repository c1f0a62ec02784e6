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
SCALED_MIN_SEQ_LEN = 32  # the shortest window a scaled GPU plan trains on


def plan_for(device: torch.device | str, compile: bool = False) -> RunPlan:
    """The CPU plan (float32, minutes on a laptop) or the GPU plan (bf16 autocast), as
    ``helpers.plan.plan_name`` decides: the GPU plan on CUDA, the CPU plan elsewhere (MPS included),
    unless ``COURSE_PLAN`` forces one; ``COURSE_STEPS_SCALE`` shortens the run. ``compile`` applies on
    CUDA only (the training modules; decoding goes through ``helpers.decode_plan``, never compiled)."""
    device = torch.device(device)
    if plan_name(device) == "gpu":
        # Scaled, the GPU plan shrinks its batch and its windows too: one of its full steps (8,192 tokens
        # through a 34M-parameter model) takes about 20 s on a 2-core CPU, more than the CPU plan's whole
        # run, and bf16 autocast on a CPU without bf16 arithmetic still took ~12 s a step at 2 × 256
        # tokens (lesson 06 alone: 498 s of make test-gpu-plan). 32-token windows keep every code path.
        recipe = {**scaled_recipe(GPU_RECIPE), "batch_size": scaled(GPU_RECIPE["batch_size"]),
                  "seq_len": scaled(GPU_RECIPE["seq_len"], minimum=SCALED_MIN_SEQ_LEN)}
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


# --- the lesson's two tables -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One model's column in lesson 06's results table: the baseline's or the tiny DeepSeek-V3's."""

    params: ParamCount
    val_loss: tuple[float, float]  # the sweep's final validation loss: mean, 95% half-width over seeds
    train_seconds: tuple[float, float]  # the sweep's training time: mean, 95% half-width over seeds
    cache_bytes: float  # per token, fp32, measured on the built model
    decode_ms: float  # greedy decoding, ms per token (best of the timed runs)


def results_table(base: Column, ours: Column, *, quality, time_ratio: float, tokens: int, threads: int,
                  n_decode: int, device: str) -> str:
    """Lesson 06's results table (Markdown): the lesson 00 baseline against the tiny DeepSeek-V3 with the
    same active parameters, from the committed sweep (``quality``: its paired ``Difference`` of validation
    loss, ours − baseline; ``time_ratio``: ours / baseline training time) and this kernel's measurements
    (cache bytes and decode speed, ``n_decode`` tokens on ``device``)."""
    return "\n".join([
        "| | lesson 00 baseline | tiny DeepSeek-V3 |",
        "| --- | ---: | ---: |",
        f"| parameters, total | {base.params.total:,} | {ours.params.total:,} (+{ours.params.mtp:,} MTP) |",
        f"| parameters, active per token | {base.params.active:,} | {ours.params.active:,} |",
        f"| training tokens (the sweep's CPU recipe) | {tokens:,} | {tokens:,} |",
        f"| validation loss (nats/byte), 5 seeds, mean ± 95% | {base.val_loss[0]:.3f} ± "
        f"{base.val_loss[1]:.3f} | "
        f"{ours.val_loss[0]:.3f} ± {ours.val_loss[1]:.3f} |",
        f"| paired difference, ours − baseline | | {quality.mean:+.3f} ± {quality.half_width:.3f} |",
        f"| training seconds (CPU plan, {threads} threads, sweep) | {base.train_seconds[0]:.0f} ± "
        f"{base.train_seconds[1]:.0f} | {ours.train_seconds[0]:.0f} ± {ours.train_seconds[1]:.0f} "
        f"({time_ratio:.2f}x) |",
        f"| cache bytes per token (fp32, measured = formula) | {base.cache_bytes:,.0f} | "
        f"{ours.cache_bytes:,.0f} |",
        f"| decode ms per token (greedy, cache on, {n_decode} tokens, {device}, best of 3 runs) "
        f"| {base.decode_ms:.2f} | {ours.decode_ms:.2f} |",
    ])


def summary_table(base: Column, ours: Column, *, quality, time_ratio: float, cache_speedup: float,
                  n_tokens: int, gqa_groups: int, n_heads: int, gqa_cache_bytes: float,
                  v3_cache_bytes: tuple[int, int],
                  v3_active_fraction: float, max_vio: float, aux_alpha: float, spec_tokens_per_forward: float,
                  spec_accept: float, tf_accept: float, mtp_cost: dict) -> str:
    """Lesson 06's closing table (Markdown): what each lesson's mechanism saves and costs, with the
    figures this kernel measured. ``cache_speedup``: decode time without the cache over with it
    (``n_tokens`` tokens, baseline); ``gqa_cache_bytes``: the baseline's cache with ``gqa_groups`` K/V
    heads; ``v3_cache_bytes``: DeepSeek-V3's bf16 bytes per token per layer, (latent, expanded K/V);
    ``n_heads``: the baseline's query heads; ``max_vio``: MaxVio_global on validation; ``spec_*`` /
    ``tf_accept``: self-speculation's tokens per forward and acceptance while decoding, and the
    teacher-forced acceptance; ``mtp_cost``: ``helpers.bench.mtp.training_overhead``'s result."""
    bill = ours.params
    v3_latent, v3_kv = v3_cache_bytes
    return "\n".join([
        "| lesson · mechanism | what it saves | what it costs |",
        "| --- | --- | --- |",
        f"| 01 · KV cache | decode {cache_speedup:.1f}x faster than recomputing the prefix "
        f"({n_tokens} tokens, baseline) | {base.cache_bytes:,.0f} bytes per token of memory (fp32), growing "
        "with context |",
        f"| 02 · GQA, G={gqa_groups} of H={n_heads} | cache {base.cache_bytes:,.0f} → {gqa_cache_bytes:,.0f} "
        "bytes/token "
        f"({base.cache_bytes / gqa_cache_bytes:.0f}x) | some quality (lesson 02 measures it); K/V shared "
        "within a group |",
        f"| 03 · MLA (absorbed) | cache {base.cache_bytes:,.0f} → {ours.cache_bytes:,.0f} bytes/token here; "
        f"DeepSeek-V3: {v3_latent:,} vs {v3_kv:,} bytes/token/layer in bf16 | extra low-rank projections; "
        f"decoupled RoPE; quality vs rank (lesson 03) |",
        f"| 04 · DeepSeekMoE | {bill.active:,} of {bill.total:,} parameters per token "
        f"({bill.active_fraction:.0%}); "
        f"V3: {v3_active_fraction:.1%} | all experts held in memory; a router and dispatch per token |",
        f"| 04 · loss-free balancing (+ tiny seq. loss) | MaxVio_global {max_vio:.2f} on validation; "
        f"the bias does the balancing, the sequence-wise loss (α = {aux_alpha:g}) adds a gradient of that "
        f"tiny weight | a bias per expert, one γ to tune (and a schedule for it) |",
        f"| 05 · MTP (D=1) | {spec_tokens_per_forward:.2f} tokens per forward pass in self-speculation "
        f"({spec_accept:.0%} of drafts accepted while decoding, {tf_accept:.0%} teacher-forced) | "
        f"{mtp_cost['measured_ratio']:.2f}x a training step measured "
        f"({mtp_cost['flops_ratio']:.2f}x by FLOPs); "
        f"{bill.mtp:,} extra parameters |",
        f"| 06 · all of it, vs the baseline | cache {base.cache_bytes / ours.cache_bytes:.1f}x smaller; "
        f"val. loss {quality.mean:+.3f} ± {quality.half_width:.3f} (5 seeds) | {time_ratio:.1f}x the "
        f"training time; decode {ours.decode_ms / base.decode_ms:.1f}x the time per token at this tiny "
        "size |",
    ])
