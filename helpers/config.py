"""One frozen, validated configuration for every model in the course.

Field names follow DeepSeek-V3's own ``ModelArgs`` (deepseek-ai/DeepSeek-V3, ``inference/model.py``)
so a learner can read the official code beside ours. Each field's comment names its paper symbol.
A field that does not apply to the chosen architecture is ignored (e.g. the MLA ranks when
``attn_type == "mha"``), but it is still validated so that a typo fails loudly.

Shape letters (``docs/GLOSSARY.md``, one meaning each): B batch, T query length, S key length, D model
width, H query heads, G KV heads, Dh head width, Dc KV latent width, Dq query latent width, Dn / Dr
non-RoPE / RoPE part of a query-key head, Dv value head width, E routed experts, K active experts per
token, Ng / Mg expert groups / groups a token may use, Dm MTP depth, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .validate import check_bool, check_choice, check_int, check_number

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
    inter_dim: int = 172  # I: SwiGLU hidden width of the dense MLP
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
    n_expert_groups: int = 1  # Ng: experts split into this many groups (V3: 8)
    n_limited_groups: int = 1  # Mg: tokens route into at most this many groups (V3: 4)
    score_func: str = "softmax"  # router scores: "softmax" (V2, Switch) or "sigmoid" (V3)
    route_scale: float = 1.0  # gate multiplier (V3: 2.5)
    norm_topk_prob: bool = True  # renormalise gates over the chosen K experts
    balance: str = "none"  # "none", "aux" (Switch), "seq_aux" (V3 sequence-wise), "loss_free",
    # or "loss_free+seq_aux": DeepSeek-V3's recipe, bias balancing plus the tiny sequence-wise loss
    aux_loss_alpha: float = 0.01  # α: weight of the balance loss
    bias_update_speed: float = 0.001  # γ (u): step of the aux-loss-free bias update
    # capacity factor c: each expert takes at most ceil(c·N·K/E) of a batch's N·K assignments and the rest
    # are dropped (GShard, Switch); 0 = no dropping, DeepSeek-V3's choice (lesson 04)
    capacity_factor: float = 0.0
    # --- multi-token prediction (DeepSeek-V3 §2.2) ----------------------------------------------
    mtp_depth: int = 0  # Dm (the report's D): sequential MTP modules; 0 = none
    mtp_lambda: float = 0.3  # λ: weight of the MTP loss
    # --- DeepSeek Sparse Attention (DeepSeek-V3.2-Exp; lesson 07) -------------------------------
    index_n_heads: int = 0  # H_I: lightning-indexer heads; 0 = dense MLA (no indexer) (V3.2: 64)
    index_head_dim: int = 16  # d_I: indexer query/key width, its first Dr dims rotated (V3.2: 128)
    index_topk: int = 8  # k: latent entries each query reads (V3.2: 2048); k >= context is dense

    def __post_init__(self) -> None:
        problems: list[str] = []
        for check in (_check_types, _check_sizes, _check_floats, _check_choices, _check_heads,
                      _check_experts, _check_indexer):
            try:
                problems += check(self)
            except (TypeError, ValueError) as err:  # a type error stops the checks that need the value
                raise type(err)(f"invalid ModelConfig: {err}") from None
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

    @property
    def is_sparse_attention(self) -> bool:
        """DeepSeek Sparse Attention: MLA with a lightning indexer (``index_n_heads > 0``)."""
        return self.attn_type == "mla" and self.index_n_heads > 0

    def layer_is_moe(self, layer_idx: int) -> bool:
        return self.is_moe and layer_idx >= self.n_dense_layers

    def replace(self, **changes) -> ModelConfig:
        """A validated copy with some fields changed (``dataclasses.replace``)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s): {sorted(unknown)}")
        return replace(self, **changes)


# --- the validator, one named check per rule family; each returns the problems it found -----------
# Sizes that must be >= 1 and sizes that may be 0 (0 switches a feature off).
POSITIVE_INTS = ("vocab_size", "dim", "n_layers", "n_heads", "inter_dim", "max_seq_len", "kv_lora_rank",
                 "qk_nope_head_dim", "v_head_dim", "moe_inter_dim", "n_activated_experts",
                 "n_expert_groups", "n_limited_groups", "index_head_dim", "index_topk")
NON_NEGATIVE_INTS = ("q_lora_rank", "n_routed_experts", "n_shared_experts", "n_dense_layers",
                     "mtp_depth", "qk_rope_head_dim", "index_n_heads")
OPTIONAL_POSITIVE_INTS = ("n_kv_heads", "head_dim")  # None means "derive it"
BOOLS = ("tie_embeddings", "norm_topk_prob")
# Floats: (name, lower bound, strict?): rope_theta, norm_eps and route_scale > 0; rates and weights >= 0.
FLOATS = (("rope_theta", 0.0, True), ("norm_eps", 0.0, True), ("route_scale", 0.0, True),
          ("aux_loss_alpha", 0.0, False), ("bias_update_speed", 0.0, False), ("mtp_lambda", 0.0, False),
          ("capacity_factor", 0.0, False))


def _check_types(cfg: ModelConfig) -> list[str]:
    """Sizes are real ints (not 2.5, '64' or True), flags real bools; raises on the first wrong type."""
    for name in POSITIVE_INTS + NON_NEGATIVE_INTS:
        check_int(name, getattr(cfg, name))
    for name in OPTIONAL_POSITIVE_INTS:
        if getattr(cfg, name) is not None:
            check_int(name, getattr(cfg, name))
    for name in BOOLS:
        check_bool(name, getattr(cfg, name))
    for name, _, _ in FLOATS:
        check_number(name, getattr(cfg, name), min_value=None)
    return []


def _problem(check, *args, **kwargs) -> list[str]:
    try:
        check(*args, **kwargs)
    except ValueError as err:
        return [str(err)]
    return []


def _check_sizes(cfg: ModelConfig) -> list[str]:
    problems = []
    for name in POSITIVE_INTS + OPTIONAL_POSITIVE_INTS:
        if getattr(cfg, name) is not None:
            problems += _problem(check_int, name, getattr(cfg, name), min_value=1)
    for name in NON_NEGATIVE_INTS:
        problems += _problem(check_int, name, getattr(cfg, name), min_value=0)
    return problems


def _check_floats(cfg: ModelConfig) -> list[str]:
    """Finite, and on the right side of zero (a negative α or γ would push the balance the wrong way)."""
    problems = []
    for name, low, strict in FLOATS:
        problems += _problem(check_number, name, getattr(cfg, name), min_value=low, strict_min=strict)
    return problems


def _check_choices(cfg: ModelConfig) -> list[str]:
    problems = []
    for name, choices in (("attn_type", ATTN_TYPES), ("attn_impl", ATTN_IMPLS),
                          ("score_func", SCORE_FUNCS), ("balance", BALANCE_MODES)):
        problems += _problem(check_choice, name, getattr(cfg, name), choices)
    return problems


def _check_heads(cfg: ModelConfig) -> list[str]:
    """Head widths split evenly and are even (RoPE rotates pairs); KV heads divide the query heads."""
    if cfg.n_heads <= 0 or cfg.dim <= 0:
        return []  # already reported by _check_sizes
    problems = []
    if cfg.head_dim is None:
        if cfg.dim % cfg.n_heads:
            problems.append(f"dim={cfg.dim} is not divisible by n_heads={cfg.n_heads} "
                            "(set head_dim explicitly or change one of them)")
        elif (cfg.dim // cfg.n_heads) % 2:
            problems.append(f"the head width dim/n_heads={cfg.dim}/{cfg.n_heads}={cfg.dim // cfg.n_heads} "
                            "must be even for RoPE")
    elif cfg.head_dim > 0 and cfg.head_dim % 2:
        problems.append(f"head_dim={cfg.head_dim} must be even for RoPE")
    if cfg.n_kv_heads is not None and cfg.n_kv_heads > 0 and cfg.n_heads % cfg.n_kv_heads:
        problems.append(f"n_heads={cfg.n_heads} is not divisible by n_kv_heads={cfg.n_kv_heads}")
    if cfg.qk_rope_head_dim % 2:
        problems.append(f"qk_rope_head_dim={cfg.qk_rope_head_dim} must be even for RoPE")
    return problems


def _check_experts(cfg: ModelConfig) -> list[str]:
    """K of E experts, in groups that can hold K, and no more dense layers than layers."""
    if cfg.n_routed_experts <= 0 or cfg.n_expert_groups <= 0:
        return []
    problems = []
    if cfg.n_activated_experts > cfg.n_routed_experts:
        problems.append(f"n_activated_experts={cfg.n_activated_experts} exceeds "
                        f"n_routed_experts={cfg.n_routed_experts}")
    if cfg.n_routed_experts % cfg.n_expert_groups:
        problems.append(f"n_routed_experts={cfg.n_routed_experts} is not divisible by "
                        f"n_expert_groups={cfg.n_expert_groups}")
    if cfg.n_limited_groups > cfg.n_expert_groups:
        problems.append(f"n_limited_groups={cfg.n_limited_groups} exceeds "
                        f"n_expert_groups={cfg.n_expert_groups}")
    per_group = cfg.n_routed_experts // cfg.n_expert_groups
    if cfg.n_limited_groups * per_group < cfg.n_activated_experts:
        problems.append(f"n_limited_groups={cfg.n_limited_groups} groups of {per_group} "
                        f"experts cannot hold n_activated_experts={cfg.n_activated_experts}")
    if cfg.n_dense_layers > cfg.n_layers:
        problems.append(f"n_dense_layers={cfg.n_dense_layers} exceeds n_layers={cfg.n_layers}")
    return problems


def _check_indexer(cfg: ModelConfig) -> list[str]:
    """The lightning indexer sits on MLA and reads the query latent; its RoPE part fits its width."""
    if cfg.index_n_heads <= 0:
        return []
    problems = []
    if cfg.attn_type != "mla":
        problems.append(f"index_n_heads={cfg.index_n_heads} needs attn_type='mla' (the indexer selects "
                        f"latent-cache entries), got attn_type={cfg.attn_type!r}")
    if cfg.q_lora_rank <= 0:
        problems.append(f"index_n_heads={cfg.index_n_heads} needs q_lora_rank > 0: the indexer's queries "
                        f"come from the query latent (got q_lora_rank={cfg.q_lora_rank})")
    if 0 < cfg.index_head_dim < cfg.qk_rope_head_dim:
        problems.append(f"index_head_dim={cfg.index_head_dim} is smaller than its RoPE part "
                        f"qk_rope_head_dim={cfg.qk_rope_head_dim}")
    return problems


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
