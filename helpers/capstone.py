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
* ``Dashboard``: a ``helpers.train`` callback with live loss curves above lesson 04's routing
  histogram (``helpers.widgets``), and ``plot_training_summary``, its static twin.

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
    return RunPlan("cpu", device, CPU_CONFIG, steps=420, batch_size=16, seq_len=128, lr=3e-3,
                   eval_every=70, autocast=None, compile=False)


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


def interleaved_best(fns: dict, rounds: int = 3) -> dict[str, float]:
    """Best wall time in seconds of each zero-argument callable, the callables taking turns round after
    round so that drifting machine load hits all of them alike (the first round also warms up)."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds + 1):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


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


# --- the training dashboard ---------------------------------------------------------------------------
@dataclass
class LossHistory:
    """Per-step losses of a training run (``ModelOutput``'s terms)."""

    step: list[int] = field(default_factory=list)
    main: list[float] = field(default_factory=list)  # next-token cross-entropy
    mtp: list[float] = field(default_factory=list)  # MTP depth-1 loss L_1, unweighted (NaN without MTP)
    balance: list[float] = field(default_factory=list)  # the MoE layers' balance losses, summed


class Dashboard:
    """A ``helpers.train`` callback: the loss curves (a plotly ``FigureWidget``) above lesson 04's live
    routing histogram (``helpers.widgets.RoutingMonitor``) for the main model's MoE layers.

    Redraws every ``every`` steps, at most ``max_rate`` times a second, one batched message each. Outside
    a live kernel it only records (``live=False`` forces that); ``plot_training_summary`` draws the
    static figure from what it recorded."""

    TITLE = "Training: next-token and MTP loss"

    def __init__(self, model, *, every: int = 10, max_rate: float = 5.0, live: bool | None = None,
                 label: str = ""):
        from .widgets import RoutingMonitor, in_live_kernel

        if every <= 0 or max_rate <= 0:
            raise ValueError(f"every={every} and max_rate={max_rate} must be positive")
        live = in_live_kernel() if live is None else live
        self.losses = LossHistory()
        self.every, self.max_rate = every, max_rate
        self._last_draw = -float("inf")
        # model.layers, not model: the MTP block's MoE is routed too, but out.moe lists the main layers
        self.routing = (RoutingMonitor(model.layers, every=every, max_rate=max_rate, live=live, label=label)
                        if model.config.is_moe else None)
        self.figure = self._build(label) if live else None

    def _build(self, label: str):
        try:
            import plotly.graph_objects as go

            fig = go.FigureWidget()
        except Exception:  # plotly / anywidget unavailable: record only
            return None
        fig.add_scatter(x=[], y=[], mode="lines", name="next-token loss", line_color="#08519c")
        fig.add_scatter(x=[], y=[], mode="lines", name="MTP depth-1 loss (token after next)",
                        line_color="#e6550d")
        fig.update_layout(title_text=f"{self.TITLE} {label}".strip(), height=300, template="plotly_white",
                          xaxis_title="step", yaxis_title="cross-entropy (nats per byte)",
                          margin=dict(t=50, b=40), legend=dict(orientation="h", y=-0.3))
        return fig

    def __call__(self, step: int, out, batch=None) -> None:
        self.losses.step.append(step)
        self.losses.main.append(out.main_loss.item())
        self.losses.mtp.append(float("nan") if out.mtp is None else out.mtp.depth_losses[0].item())
        self.losses.balance.append(0.0 if out.aux_loss is None else out.aux_loss.item())
        if self.routing is not None:
            self.routing(step, out, batch)
        now = time.monotonic()
        if self.figure is not None and step % self.every == 0 and now - self._last_draw >= 1 / self.max_rate:
            self.redraw()

    def redraw(self) -> None:
        if self.figure is None or not self.losses.step:
            return
        with self.figure.batch_update():
            self.figure.data[0].x, self.figure.data[0].y = self.losses.step, self.losses.main
            self.figure.data[1].x, self.figure.data[1].y = self.losses.step, self.losses.mtp
        self._last_draw = time.monotonic()

    def show(self) -> None:
        """Display the two live widgets (no-op outside a live kernel)."""
        from .widgets import show_widget

        if self.figure is not None:
            show_widget(self.figure, "Live loss curves (they render in a running Jupyter kernel; the "
                                     "static figure below shows the final state)")
        if self.routing is not None:
            self.routing.show()

    def finish(self) -> None:
        """Draw the final state, ignoring the throttle."""
        self.redraw()
        if self.routing is not None:
            self.routing.finish()


def plot_training_summary(dashboard: Dashboard, history=None, *, last: int = 20, title: str = ""):
    """The static twin of the dashboard: losses (train, MTP, validation) and, per MoE layer, each
    expert's share of the routed tokens over the last ``last`` steps and its selection bias over time."""
    import matplotlib.pyplot as plt

    from .widgets import expert_colors

    routing = dashboard.routing.history if dashboard.routing is not None else None
    L = routing.counts_array().shape[1] if routing is not None else 0
    fig, axes = plt.subplots(1, 1 + 2 * min(L, 1), figsize=(4.6 * (1 + 2 * min(L, 1)), 3.6), squeeze=False)
    ax = axes[0, 0]
    lh = dashboard.losses
    ax.plot(lh.step, lh.main, color="#9ecae1", lw=1, label="next-token (train batch)")
    if any(m == m for m in lh.mtp):
        ax.plot(lh.step, lh.mtp, color="#fdae6b", lw=1, label="MTP depth 1: token after next (train)")
    if history is not None and history.val_loss:
        ax.plot([s + 1 for s in history.val_step], history.val_loss, "o-", color="#08519c",
                label="next-token (validation)")
    ax.set(xlabel="step", ylabel="cross-entropy (nats per byte)", title="losses")
    ax.legend(fontsize=8)
    if routing is not None:
        share = routing.recent_share(last)  # (L, E)
        E = share.shape[1]
        width = 0.8 / L
        ax = axes[0, 1]
        for i in range(L):
            ax.bar([e + (i - (L - 1) / 2) * width for e in range(E)], share[i].tolist(), width=width,
                   color=expert_colors(E), alpha=1.0 - 0.45 * i / max(L - 1, 1), edgecolor="black", lw=0.4,
                   label=f"MoE layer {i} (lighter = later)" if L > 1 else "MoE layer 0")
        ax.axhline(100 / E, ls="--", color="gray", lw=1, label="uniform")
        ax.set(xlabel="expert", ylabel="% of routed tokens", xticks=range(E),
               ylim=(0, max(share.max().item(), 100 / E) * 1.6),
               title=f"routing, last {min(last, len(routing.step))} steps")
        ax.legend(fontsize=7, loc="upper center", ncol=3, framealpha=0.9)
        ax = axes[0, 2]
        bias = routing.bias_array()  # (S, L, E)
        styles = ["-", "--", ":", "-."]
        for i in range(L):
            for e in range(E):
                ax.plot(routing.step, bias[:, i, e].tolist(), styles[i % 4], color=expert_colors(E)[e], lw=1)
        ax.axhline(0, color="gray", lw=0.8)
        ax.set(xlabel="step", ylabel="b_i", title="selection bias (one line per expert; "
               + ", ".join(f"layer {i} {styles[i % 4]}" for i in range(L)) + ")")
        ax.title.set_fontsize(9)
    fig.suptitle(title or "Training summary")
    fig.tight_layout()
    return fig
