"""The parameter bill of a configuration: total and *active* per token (lesson 06).

Active = every parameter a token's forward pass touches: all of them except the routed experts it was
not sent to, ``active = total − n_moe_layers · (E − K) · params(one expert)``. As in DeepSeek-V3's
"671B total, 37B activated", both exclude the MTP modules (``ParamCount.mtp`` counts them on their own).
``param_count`` reads the configuration alone (so it works for V3's real sizes, never built);
``measured_param_count`` counts a built model's parameters by name, the check on it.
``matched_baseline`` sizes lesson 00's dense baseline to the same active budget.

Shape letters: ``docs/GLOSSARY.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ModelConfig, preset
from .moe import MoE


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
