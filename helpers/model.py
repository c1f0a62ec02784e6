"""The baseline decoder-only transformer (Llama-style) that every lesson changes one piece of.

Pre-norm blocks: ``x + Attn(RMSNorm(x))`` then ``x + FFN(RMSNorm(x))``; RMSNorm (Zhang & Sennrich
2019), RoPE (Su et al. 2021), SwiGLU MLP (Shazeer 2020), causal attention with G K/V heads. The same
class becomes DeepSeek-V3-shaped by configuration: ``attn_type="mla"`` swaps in multi-head latent
attention (``helpers.mla``), ``n_routed_experts > 0`` swaps the MLP of layers ``>= n_dense_layers``
for DeepSeekMoE (``helpers.moe``), and ``mtp_depth > 0`` adds multi-token prediction modules
(``helpers.mtp``).

Head: untied by default (``tie_embeddings=False``), as in Llama-2/3 and DeepSeek-V3, so the model has
the shape the learner meets in the real checkpoints; with a 256-byte vocabulary an untied head costs
only ``256 · D`` parameters. ``tie_embeddings=True`` is supported (and read from Hugging Face configs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .attention import rope_tables
from .blocks import Block, BlockOutput, make_attention, make_ffn  # noqa: F401  (re-exported)
from .config import ModelConfig
from .dsa import PHASES, indexer_loss
from .kv_cache import KVCache, StaticKVCache
from .layers import MLP, RMSNorm, stacked_weight  # noqa: F401  (MLP, RMSNorm re-exported)
from .mtp import MTP
from .validate import InputTypeError, check_choice, check_int, check_token_ids


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, T, V)
    loss: torch.Tensor | None = None  # what training minimises: main + balance + MTP terms
    main_loss: torch.Tensor | None = None  # next-token cross-entropy alone
    aux_loss: torch.Tensor | None = None  # sum of the MoE layers' balance losses (0 if dense)
    mtp_loss: torch.Tensor | None = None  # (λ/Dm) Σ_k L_k, if the model has MTP modules
    indexer_loss: torch.Tensor | None = None  # DSA: the indexers' KL in a training phase (0 in inference)
    hidden: torch.Tensor | None = None  # (B, T, D) last block's output, before the final norm
    moe: list = field(default_factory=list)  # per MoE layer: its result object
    mtp: object | None = None  # the MTP modules' result object


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.tok_emb.weight
        rope_dim = cfg.qk_rope_head_dim if cfg.attn_type == "mla" else cfg.hd
        cos, sin = rope_tables(rope_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)  # (max_seq_len, rope_dim)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.mtp = None
        if cfg.mtp_depth > 0:
            self.mtp = MTP(cfg)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    @property
    def device(self) -> torch.device:
        return self.tok_emb.weight.device

    def new_cache(self, static: bool = False, max_len: int | None = None) -> KVCache:
        """An empty cache for this model (``static=True`` pre-allocates ``max_len`` positions)."""
        if static:
            if max_len is not None:
                check_int("max_len", max_len, min_value=1, max_value=self.config.max_seq_len)
            return StaticKVCache(self.config.n_layers, max_len or self.config.max_seq_len)
        return KVCache(self.config.n_layers)

    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def run(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
            cache: KVCache | None = None, *, index_topk: int | None = None,
            dsa_phase: str | None = None) -> ModelOutput:
        """idx (B, T) token ids → ModelOutput. With a cache, idx holds only the new positions.

        ``idx`` must be a (B, T) integer tensor of ids in [0, V) on the model's device; ``targets`` the
        same shape (-100 marks a position to ignore). A bad input raises here, naming the problem.
        A DSA model (``config.is_sparse_attention``) takes ``index_topk`` (k for this call; the
        configuration's by default) and ``dsa_phase`` (``"inference"``, ``"warmup"``: dense attention
        and the indexers' KL over every position, ``"sparse"``: top-k and the KL over the selected
        ones); ``out.indexer_loss`` is the KL, and in the sparse phase ``out.loss`` includes it."""
        self.check_inputs(idx, targets, cache)
        attn_options = self.dsa_options(index_topk, dsa_phase)
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if start + T > self.config.max_seq_len:
            raise ValueError(f"sequence of {start + T} positions ({start} cached + {T} new) exceeds "
                             f"max_seq_len={self.config.max_seq_len}")
        cos, sin = self.rope_cos[start:start + T], self.rope_sin[start:start + T]  # (T, rope_dim)
        x = self.tok_emb(idx)  # (B, T, D)
        moe_results = []
        for layer in self.layers:
            x, moe = layer(x, cos, sin, cache, **attn_options)
            if moe is not None:
                moe_results.append(moe)
        hidden = x
        logits = self.head(self.norm(x))  # (B, T, V)
        out = ModelOutput(logits=logits, hidden=hidden, moe=moe_results)
        if targets is not None:
            out.main_loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
            out.aux_loss = sum((m.balance_loss for m in moe_results), logits.new_zeros(()))
            out.loss = out.main_loss + out.aux_loss
            if self.mtp is not None:
                out.mtp = self.mtp(self, hidden, idx, targets, **attn_options)
                out.mtp_loss = out.mtp.loss
                out.loss = out.loss + out.mtp_loss
        if self.config.is_sparse_attention:
            out.indexer_loss = indexer_loss(self)
            if out.loss is not None and attn_options.get("phase") == "sparse":
                out.loss = out.loss + out.indexer_loss
        return out

    def dsa_options(self, index_topk: int | None, dsa_phase: str | None) -> dict:
        """The per-call DSA settings for the attention layers; refused for a model without DSA."""
        if index_topk is None and dsa_phase is None:
            return {}
        if not self.config.is_sparse_attention:
            raise ValueError(f"index_topk={index_topk} and dsa_phase={dsa_phase!r} need a DSA model "
                             f"(index_n_heads > 0), got index_n_heads={self.config.index_n_heads}")
        options = {}
        if index_topk is not None:
            options["index_topk"] = check_int("index_topk", index_topk, min_value=1)
        if dsa_phase is not None:
            options["phase"] = check_choice("dsa_phase", dsa_phase, PHASES)
        return options

    def decode_step(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """The generation loop's forward: idx (B, T) new token ids → logits (B, V) of the LAST position.

        The same computation as ``self(idx, cache=cache)[:, -1]``, minus what a decode step does not
        need: the token-id check (the loop checked the prompt and makes every later id itself), the
        head over all T positions, and the result object. Under ``torch.inference_mode()`` (as in
        ``helpers.generate``) the layers take their fused decode paths."""
        start, T = cache.length, idx.shape[1]
        if start + T > self.config.max_seq_len:
            raise ValueError(f"sequence of {start + T} positions ({start} cached + {T} new) exceeds "
                             f"max_seq_len={self.config.max_seq_len}")
        cos, sin = self.rope_cos[start:start + T], self.rope_sin[start:start + T]  # (T, rope_dim)
        x = self.tok_emb(idx)  # (B, T, D)
        for layer in self.layers:
            x = layer(x, cos, sin, cache).hidden
        x = self.norm(x[:, -1])  # (B, D)
        if torch.is_inference_mode_enabled():
            return x @ stacked_weight(self, self.head)  # (B, V): the transposed copy, as in the layers
        return self.head(x)  # (B, V)

    def check_inputs(self, idx, targets=None, cache=None) -> None:
        check_token_ids(idx, self.config.vocab_size, self.device)
        if targets is not None:
            check_token_ids(targets, self.config.vocab_size, self.device, name="targets", allow_ignore=True)
            if targets.shape != idx.shape:
                raise ValueError(f"targets have shape {tuple(targets.shape)} but idx has "
                                 f"{tuple(idx.shape)}; they must match (targets[b, t] follows idx[b, t])")
        if cache is not None and not isinstance(cache, KVCache):
            raise InputTypeError(f"cache must be a KVCache (model.new_cache()), got {type(cache).__name__}")

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (B, T, V), so ``model(idx)`` reads like any Hugging Face model's ``.logits``."""
        return self.run(idx, cache=cache).logits

    def after_optimizer_step(self) -> None:
        """Let modules that keep non-gradient state (the MoE bias) update after each step."""
        for m in self.modules():
            if m is not self and hasattr(m, "after_optimizer_step"):
                m.after_optimizer_step()
