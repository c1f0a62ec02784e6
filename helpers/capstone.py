"""Lesson 06: a tiny DeepSeek-V3 assembled from the course's parts, its parameter bill and its run plan.

DeepSeek-V3 Technical Report (arXiv 2412.19437) §2, Figure 2: every block is multi-head latent
attention (§2.1.1, ``helpers.mla``) followed by a dense SwiGLU MLP in the first ``n_dense_layers``
blocks and DeepSeekMoE after (§2.1.2, ``helpers.moe``: shared + routed experts, sigmoid scores,
group-limited routing, auxiliary-loss-free bias balancing plus the tiny sequence-wise loss), and D = 1
multi-token-prediction module on top (§2.2, ``helpers.mtp``). ``helpers.Transformer`` already assembles
all of it from one ``ModelConfig``; this module adds what the capstone needs around it:

* the parameter bill, total and *active* per token, from the configuration alone (``param_count``) and
  measured on a built model (``measured_param_count``). Active = every parameter a token's forward
  pass touches: all of them except the routed experts it was not sent to,
  ``active = total − n_moe_layers · (E − K) · params(one expert)``. As in the report's "671B total,
  37B activated", both exclude the MTP module (``ParamCount.mtp`` counts it on its own);
* the run plan that the kernel-check cell picks (``plan_for``): the same code, a CPU configuration
  sized for minutes on a laptop and a bigger GPU one trained in bf16 autocast;
* the lesson 00 baseline at a matched active-parameter budget (``matched_baseline``), the cache bill in
  bytes per token (formula and measured), decode timing (ours and transformers');
* ``TrainLog``: a ``helpers.train`` callback that records losses and routing for the dashboard and
  the static summary figure.

Glossary: B batch, T sequence length, D model width, H heads, G KV heads, Dh head width, Dq query
latent, Dc KV latent, Dn / Dr non-RoPE / RoPE head parts, Dv value head width, E routed experts, K
experts per token, l layers, V vocabulary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .config import ModelConfig, preset
from .generate import generate
from .kv_cache import KVCache, kv_elements_per_token, mla_elements_per_token

# --- the parameter bill -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamCount:
    """Parameters by kind. ``total`` and ``active`` exclude the MTP modules (reported as ``mtp``)."""

    embedding: int  # V·D
    head: int  # V·D, 0 when tied to the embedding
    attention: int  # all layers' attention projections and MLA's two latent norms
    norms: int  # the blocks' two RMSNorms per layer and the final norm
    dense_mlp: int  # the SwiGLU MLPs of the dense layers
    routed_experts: int  # every routed expert of every MoE layer
    shared_experts: int  # the shared experts of every MoE layer
    router: int  # the router centroids, E·D per MoE layer (the selection bias is a buffer, not counted)
    mtp: int  # the MTP modules (training only; dropped or used as a draft model at inference)
    n_moe_layers: int
    expert: int  # one routed expert: 3·D·moe_inter_dim
    n_routed: int  # E
    n_active: int  # K

    @property
    def total(self) -> int:
        return (self.embedding + self.head + self.attention + self.norms + self.dense_mlp
                + self.routed_experts + self.shared_experts + self.router)

    @property
    def active(self) -> int:
        """Parameters one token's forward pass uses: the K chosen experts of each MoE layer, not all E."""
        return self.total - self.n_moe_layers * (self.n_routed - self.n_active) * self.expert

    @property
    def total_with_mtp(self) -> int:
        return self.total + self.mtp

    @property
    def active_fraction(self) -> float:
        return self.active / self.total


def mlp_params(dim: int, inter_dim: int) -> int:
    """SwiGLU: w1 and w3 (D → I) and w2 (I → D)."""
    return 3 * dim * inter_dim


def attention_params(cfg: ModelConfig) -> int:
    """One layer's attention. MHA/GQA: wq, wk, wv, wo. MLA: the query path (one D → H·(Dn+Dr)
    projection, or D → Dq, RMSNorm(Dq), Dq → H·(Dn+Dr)), wkv_a (D → Dc+Dr), RMSNorm(Dc), wkv_b
    (Dc → H·(Dn+Dv)) and wo (H·Dv → D)."""
    D, H = cfg.dim, cfg.n_heads
    if cfg.attn_type == "mha":
        return D * H * cfg.hd + 2 * D * cfg.kv_heads * cfg.hd + H * cfg.hd * D
    qk = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
    if cfg.q_lora_rank == 0:
        query = D * H * qk
    else:
        query = D * cfg.q_lora_rank + cfg.q_lora_rank + cfg.q_lora_rank * H * qk
    kv = D * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) + cfg.kv_lora_rank
    kv += cfg.kv_lora_rank * H * (cfg.qk_nope_head_dim + cfg.v_head_dim)
    return query + kv + H * cfg.v_head_dim * D


def _ffn_parts(cfg: ModelConfig, layer_idx: int) -> tuple[int, int, int, int]:
    """(dense, routed, shared, router) parameters of block ``layer_idx``'s feed-forward part."""
    if not cfg.layer_is_moe(layer_idx):
        return mlp_params(cfg.dim, cfg.inter_dim), 0, 0, 0
    return (0, cfg.n_routed_experts * mlp_params(cfg.dim, cfg.moe_inter_dim),
            mlp_params(cfg.dim, cfg.n_shared_experts * cfg.moe_inter_dim), cfg.n_routed_experts * cfg.dim)


def param_count(cfg: ModelConfig) -> ParamCount:
    """The parameter bill of ``Transformer(cfg)`` from the configuration alone (no model is built, so
    it works for DeepSeek-V3's real sizes too)."""
    D, L = cfg.dim, cfg.n_layers
    parts = [_ffn_parts(cfg, i) for i in range(L)]
    mtp = 0
    for k in range(1, cfg.mtp_depth + 1):  # hnorm, enorm, M_k (2D → D), TRM_k, the module's norm
        block = 2 * D + attention_params(cfg) + sum(_ffn_parts(cfg, L + k - 1))
        mtp += 2 * D + 2 * D * D + block + D
    return ParamCount(
        embedding=cfg.vocab_size * D, head=0 if cfg.tie_embeddings else cfg.vocab_size * D,
        attention=L * attention_params(cfg), norms=2 * D * L + D,
        dense_mlp=sum(p[0] for p in parts), routed_experts=sum(p[1] for p in parts),
        shared_experts=sum(p[2] for p in parts), router=sum(p[3] for p in parts), mtp=mtp,
        n_moe_layers=sum(cfg.layer_is_moe(i) for i in range(L)),
        expert=mlp_params(D, cfg.moe_inter_dim) if cfg.is_moe else 0, n_routed=cfg.n_routed_experts,
        n_active=cfg.n_activated_experts if cfg.is_moe else 0)


def measured_param_count(model) -> ParamCount:
    """The same bill, counted from a built model's parameters by name (the check on ``param_count``)."""
    from .moe import MoE

    cfg = model.config
    kinds = dict.fromkeys(["embedding", "head", "attention", "norms", "dense_mlp", "routed_experts",
                           "shared_experts", "router", "mtp"], 0)
    for name, p in model.named_parameters():  # a tied head is the embedding: listed once
        parts = name.split(".")
        if parts[0] == "mtp":
            kind = "mtp"
        elif parts[0] == "tok_emb":
            kind = "embedding"
        elif parts[0] == "head":
            kind = "head"
        elif parts[0] == "norm" or (parts[0] == "layers" and parts[2] in ("attn_norm", "ffn_norm")):
            kind = "norms"
        elif parts[0] == "layers" and parts[2] == "attn":
            kind = "attention"
        elif parts[0] == "layers" and parts[2] == "ffn":
            kind = {"experts": "routed_experts", "shared_experts": "shared_experts",
                    "gate": "router"}.get(parts[3], "dense_mlp")
        else:
            raise ValueError(f"measured_param_count does not know where parameter {name!r} belongs")
        kinds[kind] += p.numel()
    moes = [layer.ffn for layer in model.layers if isinstance(layer.ffn, MoE)]
    expert = sum(p.numel() for p in moes[0].experts[0].parameters()) if moes else 0
    return ParamCount(**kinds, n_moe_layers=len(moes), expert=expert,
                      n_routed=cfg.n_routed_experts if moes else 0,
                      n_active=cfg.n_activated_experts if moes else 0)


def deepseek_v3_config() -> ModelConfig:
    """DeepSeek-V3's real sizes (``inference/configs/config_671B.json``) as one of our configs: for the
    parameter and cache bills only (never build it)."""
    return ModelConfig(
        vocab_size=129280, dim=7168, n_layers=61, n_dense_layers=3, inter_dim=18432, n_heads=128,
        max_seq_len=163840, attn_type="mla", q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
        qk_rope_head_dim=64, v_head_dim=128, n_routed_experts=256, n_activated_experts=8,
        n_shared_experts=1, moe_inter_dim=2048, n_expert_groups=8, n_limited_groups=4,
        score_func="sigmoid", route_scale=2.5, balance="loss_free+seq_aux", aux_loss_alpha=1e-4,
        bias_update_speed=1e-3, mtp_depth=1, mtp_lambda=0.3)


# --- configurations and the run plan -----------------------------------------------------------------
# The CPU model: lesson 00's width, depth and heads (D=96, 3 layers, 6 heads), every mechanism of V3.
# moe_inter_dim is chosen so that the ACTIVE parameters equal lesson 00's whole baseline (see the
# notebook and tests/test_capstone.py: matched_baseline(CPU_CONFIG) is exactly preset("tiny")).
CPU_CONFIG = ModelConfig(
    dim=96, n_layers=3, n_heads=6, inter_dim=256, max_seq_len=512, attn_type="mla",
    q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
    n_dense_layers=1, n_routed_experts=8, n_activated_experts=2, n_shared_experts=1, moe_inter_dim=96,
    n_expert_groups=4, n_limited_groups=2, score_func="sigmoid", route_scale=2.5,
    balance="loss_free+seq_aux", aux_loss_alpha=1e-4, bias_update_speed=1e-3, mtp_depth=1, mtp_lambda=0.3)

# The GPU model: same code and ratios, wider and deeper, 16 experts.
GPU_CONFIG = CPU_CONFIG.replace(
    dim=384, n_layers=6, n_heads=8, inter_dim=1024, q_lora_rank=192, kv_lora_rank=96,
    qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32, n_routed_experts=16, n_activated_experts=2,
    moe_inter_dim=256, n_expert_groups=4, n_limited_groups=2, max_seq_len=1024)


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
    autocast: torch.dtype | None  # bf16 mixed precision on CUDA, None (float32) elsewhere
    compile: bool  # torch.compile the attention and dense MLP modules (CUDA only, optional)

    @property
    def tokens(self) -> int:
        return self.steps * self.batch_size * self.seq_len


def plan_for(device: torch.device | str, compile: bool = False) -> RunPlan:
    """The CPU plan (float32, minutes on a laptop) or, on CUDA, the GPU plan (bf16 autocast)."""
    device = torch.device(device)
    if device.type == "cuda":
        return RunPlan("gpu", device, GPU_CONFIG, steps=1500, batch_size=32, seq_len=256, lr=2e-3,
                       eval_every=250, autocast=torch.bfloat16, compile=compile)
    return RunPlan("cpu", device, CPU_CONFIG, steps=240, batch_size=16, seq_len=128, lr=3e-3,
                   eval_every=60, autocast=None, compile=False)


def compile_dense_parts(model) -> int:
    """``torch.compile`` each block's attention and dense MLP in place (the MoE layers keep eager mode:
    their token counts per expert change every step). Returns how many modules were compiled."""
    from .moe import MoE

    n = 0
    for layer in model.layers:
        layer.attn.compile(dynamic=True)
        n += 1
        if not isinstance(layer.ffn, MoE):
            layer.ffn.compile(dynamic=True)
            n += 1
    return n


def matched_baseline(cfg: ModelConfig, multiple_of: int = 8) -> ModelConfig:
    """Lesson 00's baseline (MHA, dense SwiGLU; same width, depth, heads, vocabulary and context) with
    the MLP width chosen so that its parameters (all active) match ``cfg``'s active parameters."""
    target = param_count(cfg).active
    base = preset("tiny").replace(dim=cfg.dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                                  max_seq_len=cfg.max_seq_len, vocab_size=cfg.vocab_size)
    rest = param_count(base.replace(inter_dim=1)).total - cfg.n_layers * mlp_params(cfg.dim, 1)
    inter = round((target - rest) / (cfg.n_layers * 3 * cfg.dim) / multiple_of) * multiple_of
    if inter <= 0:
        raise ValueError(f"no baseline MLP width matches {target:,} active parameters of {cfg}")
    return base.replace(inter_dim=inter)


# --- the cache bill and decode timing ------------------------------------------------------------------
def cache_bytes_per_token(cfg: ModelConfig, bytes_per_element: int = 4) -> int:
    """Whole-model KV cache per token: l·(Dc + Dr) for MLA (absorbed or naive), 2·l·G·Dh otherwise."""
    if cfg.attn_type == "mla":
        elements = mla_elements_per_token(cfg.n_layers, cfg.kv_lora_rank, cfg.qk_rope_head_dim)
    else:
        elements = kv_elements_per_token(cfg.n_layers, cfg.kv_heads, cfg.hd)
    return elements * bytes_per_element


@torch.no_grad()
def measured_cache_bytes_per_token(model, n_tokens: int = 32, batch_size: int = 2) -> float:
    """Bytes the model's own cache holds after a prefill of ``n_tokens`` positions, per token."""
    cache = KVCache(model.config.n_layers)
    idx = torch.zeros(batch_size, n_tokens, dtype=torch.long, device=model.device)
    was_training = model.training
    model.eval()
    model(idx, cache=cache)
    model.train(was_training)
    return cache.nbytes() / (batch_size * n_tokens)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decode_ms_per_token(model, prompt: torch.Tensor, new_tokens: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` wall time of ``helpers.generate`` (greedy, cache on), per new token, in ms."""
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up
        _sync(prompt.device)
        t0 = time.perf_counter()
        generate(model, prompt, new_tokens)
        _sync(prompt.device)
        best = min(best, time.perf_counter() - t0)
    return best / new_tokens * 1e3


def hf_generate(hf_model, prompt: torch.Tensor, new_tokens: int, use_cache: bool = True) -> torch.Tensor:
    """transformers' greedy ``generate`` for exactly ``new_tokens`` tokens (no end-of-sequence stop)."""
    return hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, use_cache=use_cache)


def hf_decode_ms_per_token(hf_model, prompt: torch.Tensor, new_tokens: int, repeats: int = 3) -> float:
    """The same measurement for a transformers model's ``generate``."""
    best = float("inf")
    for _ in range(repeats + 1):
        _sync(prompt.device)
        t0 = time.perf_counter()
        with torch.no_grad():
            hf_generate(hf_model, prompt, new_tokens)
        _sync(prompt.device)
        best = min(best, time.perf_counter() - t0)
    return best / new_tokens * 1e3


# --- the training record ------------------------------------------------------------------------------
@dataclass
class TrainLog:
    """A ``helpers.train`` callback: per step the losses, per MoE layer the tokens per expert, MaxVio
    and the selection bias. ``on_update(log)`` (e.g. a live dashboard) runs every ``every`` steps."""

    model: object | None = None  # if given, its MoE selection biases are recorded every `every` steps
    every: int = 10
    on_update: object | None = None
    step: list[int] = field(default_factory=list)
    main_loss: list[float] = field(default_factory=list)
    mtp_loss: list[float] = field(default_factory=list)
    balance_loss: list[float] = field(default_factory=list)
    max_vio: list[list[float]] = field(default_factory=list)  # per step: per MoE layer MaxVio_batch
    counts: list[torch.Tensor] = field(default_factory=list)  # per step: (L_moe, E) tokens per expert
    bias: list[torch.Tensor] = field(default_factory=list)  # every `every` steps: (L_moe, E)

    def __call__(self, step: int, out, batch) -> None:
        from .moe import max_vio

        self.step.append(step)
        self.main_loss.append(out.main_loss.item())
        self.mtp_loss.append(float("nan") if out.mtp_loss is None else out.mtp_loss.item())
        self.balance_loss.append(0.0 if out.aux_loss is None else out.aux_loss.item())
        if out.moe:
            counts = torch.stack([m.counts.detach().cpu() for m in out.moe])  # (L_moe, E)
            self.counts.append(counts)
            self.max_vio.append(max_vio(counts).tolist())
        if (step + 1) % self.every == 0:
            if self.model is not None:
                self.record_bias(self.model)
            if self.on_update is not None:
                self.on_update(self)

    def record_bias(self, model) -> None:
        """Append the main model's MoE selection biases, (L_moe, E)."""
        from .moe import MoE

        layers = [layer.ffn for layer in model.layers if isinstance(layer.ffn, MoE)]
        if layers:
            self.bias.append(torch.stack([m.gate.bias.detach().cpu().clone() for m in layers]))

    def recent_counts(self, last: int = 10) -> torch.Tensor | None:
        """(L_moe, E) tokens per expert summed over the last ``last`` steps."""
        return torch.stack(self.counts[-last:]).sum(0) if self.counts else None
