"""One frozen, validated configuration for every model in the course.

Field names follow DeepSeek-V3's own ``ModelArgs`` (deepseek-ai/DeepSeek-V3, ``inference/model.py``)
so a learner can read the official code beside ours. Each field's comment names its paper symbol.
A field that does not apply to the chosen architecture is ignored (e.g. the MLA ranks when
``attn_type == "mha"``), but it is still validated so that a typo fails loudly.

Glossary (see the course REFERENCE): B batch, T query length, S key length, D model width,
H query heads, G KV heads, Dh head width, Dc KV latent width, Dq query latent width,
Dn / Dr non-RoPE / RoPE part of a query-key head, Dv value head width, E routed experts,
K active experts per token, V vocabulary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

ATTN_TYPES = ("mha", "mla")
ATTN_IMPLS = ("sdpa", "explicit")
SCORE_FUNCS = ("softmax", "sigmoid")
BALANCE_MODES = ("none", "aux", "seq_aux", "loss_free", "loss_free+seq_aux")


@dataclass(frozen=True)
class ModelConfig:
    # --- the baseline transformer --------------------------------------------------------------
    vocab_size: int = 256  # V: byte-level tokenizer
    dim: int = 64  # D: model width (d in the papers)
    n_layers: int = 2  # l: transformer blocks
    n_heads: int = 4  # H: query heads (n_h)
    n_kv_heads: int | None = None  # G: KV heads; None means G = H (MHA); 1 is MQA
    head_dim: int | None = None  # Dh: per-head width; None means D / H
    inter_dim: int = 172  # SwiGLU hidden width of the dense MLP
    max_seq_len: int = 128  # context length the RoPE tables are built for
    rope_theta: float = 10000.0  # RoPE base
    norm_eps: float = 1e-6  # RMSNorm epsilon
    tie_embeddings: bool = False  # share embedding and head? untied, as in Llama and DeepSeek-V3
    attn_type: str = "mha"  # "mha" (MHA/GQA/MQA by n_kv_heads) or "mla"
    attn_impl: str = "sdpa"  # "sdpa" (fused) or "explicit" (readable softmax(QK^T)V)
    # --- multi-head latent attention (DeepSeek-V2 §2.1) -----------------------------------------
    q_lora_rank: int = 0  # Dq (d'_c): query latent width; 0 = no query compression
    kv_lora_rank: int = 32  # Dc (d_c): KV latent width
    qk_nope_head_dim: int = 16  # Dn (d_h): non-RoPE part of each query/key head
    qk_rope_head_dim: int = 8  # Dr (d^R_h): decoupled RoPE part, one shared key of this width
    v_head_dim: int = 16  # Dv: value head width
    # --- DeepSeekMoE (DeepSeek-V3 §2.1.2) -------------------------------------------------------
    n_routed_experts: int = 0  # E (N_r): routed experts; 0 = dense model
    n_shared_experts: int = 0  # N_s: always-on shared experts
    n_activated_experts: int = 2  # K (K_r): experts chosen per token
    moe_inter_dim: int = 64  # SwiGLU hidden width of one expert
    n_dense_layers: int = 0  # the first layers keep a dense MLP (V3: 3)
    n_expert_groups: int = 1  # experts split into this many groups (V3: 8)
    n_limited_groups: int = 1  # tokens route into at most this many groups (V3: 4)
    score_func: str = "softmax"  # router scores: "softmax" (V2, Switch) or "sigmoid" (V3)
    route_scale: float = 1.0  # gate multiplier (V3: 2.5)
    norm_topk_prob: bool = True  # renormalise gates over the chosen K experts
    balance: str = "none"  # "none", "aux" (Switch), "seq_aux" (V3 sequence-wise), "loss_free",
    # or "loss_free+seq_aux": DeepSeek-V3's recipe, bias balancing plus the tiny sequence-wise loss
    aux_loss_alpha: float = 0.01  # α: weight of the balance loss
    bias_update_speed: float = 0.001  # γ (u): step of the aux-loss-free bias update
    # --- multi-token prediction (DeepSeek-V3 §2.2) ----------------------------------------------
    mtp_depth: int = 0  # D: sequential MTP modules; 0 = none
    mtp_lambda: float = 0.3  # λ: weight of the MTP loss

    def __post_init__(self) -> None:
        problems = []
        positive = ["vocab_size", "dim", "n_layers", "n_heads", "inter_dim", "max_seq_len"]
        for name in positive:
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)} must be positive")
        for name in ["kv_lora_rank", "qk_nope_head_dim", "v_head_dim", "moe_inter_dim",
                     "n_activated_experts", "n_expert_groups", "n_limited_groups"]:
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)} must be positive")
        for name in ["q_lora_rank", "n_routed_experts", "n_shared_experts", "n_dense_layers",
                     "mtp_depth", "qk_rope_head_dim"]:
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)} must be >= 0")
        if self.rope_theta <= 0 or self.norm_eps <= 0:
            problems.append(f"rope_theta={self.rope_theta} and norm_eps={self.norm_eps} must be > 0")
        if self.attn_type not in ATTN_TYPES:
            problems.append(f"attn_type={self.attn_type!r} must be one of {ATTN_TYPES}")
        if self.attn_impl not in ATTN_IMPLS:
            problems.append(f"attn_impl={self.attn_impl!r} must be one of {ATTN_IMPLS}")
        if self.score_func not in SCORE_FUNCS:
            problems.append(f"score_func={self.score_func!r} must be one of {SCORE_FUNCS}")
        if self.balance not in BALANCE_MODES:
            problems.append(f"balance={self.balance!r} must be one of {BALANCE_MODES}")
        if self.head_dim is None and self.n_heads > 0 and self.dim % self.n_heads:
            problems.append(f"dim={self.dim} is not divisible by n_heads={self.n_heads} "
                            "(set head_dim explicitly or change one of them)")
        if self.head_dim is not None and self.head_dim <= 0:
            problems.append(f"head_dim={self.head_dim} must be positive")
        if self.head_dim is not None and self.head_dim % 2:
            problems.append(f"head_dim={self.head_dim} must be even for RoPE")
        if self.head_dim is None and self.n_heads > 0 and (self.dim // self.n_heads) % 2:
            problems.append(f"dim/n_heads={self.dim // self.n_heads} must be even for RoPE")
        if self.n_kv_heads is not None:
            if self.n_kv_heads <= 0:
                problems.append(f"n_kv_heads={self.n_kv_heads} must be positive")
            elif self.n_heads > 0 and self.n_heads % self.n_kv_heads:
                problems.append(f"n_heads={self.n_heads} is not divisible by "
                                f"n_kv_heads={self.n_kv_heads}")
        if self.qk_rope_head_dim % 2:
            problems.append(f"qk_rope_head_dim={self.qk_rope_head_dim} must be even for RoPE")
        if self.n_routed_experts:
            if self.n_activated_experts > self.n_routed_experts:
                problems.append(f"n_activated_experts={self.n_activated_experts} exceeds "
                                f"n_routed_experts={self.n_routed_experts}")
            if self.n_routed_experts % self.n_expert_groups:
                problems.append(f"n_routed_experts={self.n_routed_experts} is not divisible by "
                                f"n_expert_groups={self.n_expert_groups}")
            if self.n_limited_groups > self.n_expert_groups:
                problems.append(f"n_limited_groups={self.n_limited_groups} exceeds "
                                f"n_expert_groups={self.n_expert_groups}")
            per_group = self.n_routed_experts // max(self.n_expert_groups, 1)
            if self.n_limited_groups * per_group < self.n_activated_experts:
                problems.append(f"n_limited_groups={self.n_limited_groups} groups of {per_group} "
                                f"experts cannot hold n_activated_experts={self.n_activated_experts}")
            if self.n_dense_layers > self.n_layers:
                problems.append(f"n_dense_layers={self.n_dense_layers} exceeds "
                                f"n_layers={self.n_layers}")
        if self.aux_loss_alpha < 0 or self.bias_update_speed < 0 or self.mtp_lambda < 0:
            problems.append(f"aux_loss_alpha={self.aux_loss_alpha}, bias_update_speed="
                            f"{self.bias_update_speed} and mtp_lambda={self.mtp_lambda} must be >= 0")
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))

    # Derived sizes, so nobody recomputes them by hand.
    @property
    def kv_heads(self) -> int:
        """G: number of key/value heads actually used."""
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def hd(self) -> int:
        """Dh: per-head width."""
        return self.head_dim if self.head_dim is not None else self.dim // self.n_heads

    @property
    def is_moe(self) -> bool:
        return self.n_routed_experts > 0

    def layer_is_moe(self, layer_idx: int) -> bool:
        return self.is_moe and layer_idx >= self.n_dense_layers

    def replace(self, **changes) -> ModelConfig:
        """A validated copy with some fields changed (``dataclasses.replace``)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s): {sorted(unknown)}")
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


# Presets for the course's own models. Each lesson picks one and changes only what it teaches.
PRESETS: dict[str, ModelConfig] = {
    # unit tests: runs in milliseconds
    "test": ModelConfig(dim=32, n_layers=2, n_heads=4, inter_dim=64, max_seq_len=32),
    # notebooks on a laptop CPU: trains in about a minute
    "tiny": ModelConfig(dim=96, n_layers=3, n_heads=6, inter_dim=256, max_seq_len=128),
    # a larger CPU-friendly model for benchmarks and GPU kernels
    "small": ModelConfig(dim=256, n_layers=4, n_heads=8, inter_dim=688, max_seq_len=1024),
    # GPU kernels: same code, bigger numbers
    "gpu": ModelConfig(dim=512, n_layers=8, n_heads=8, inter_dim=1376, max_seq_len=256),
}


def preset(name: str, **changes) -> ModelConfig:
    """A course preset, optionally with fields changed: ``preset("tiny", n_kv_heads=2)``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**changes) if changes else PRESETS[name]
