"""Multi-token prediction: DeepSeek-V3's Dm sequential MTP modules (the report's D) (DeepSeek-V3 §2.2,
Eq. 21-25).

The main model at position i predicts t_{i+1}. Module k (k = 1..Dm) at position i predicts t_{i+k+1}:

    h'^k_i = M_k [RMSNorm(h^{k-1}_i) ; RMSNorm(Emb(t_{i+k}))]           (Eq. 21, M_k: 2D -> D)
    h^k    = TRM_k(h'^k)   over positions i = 0 .. T-1-k, causal        (Eq. 22)
    P^k    = OutHead(RMSNorm_k(h^k))  predicts t_{i+k+1}                 (Eq. 23)
    L_k    = CE(P^k, t_{i+k+1}),   L_MTP = (λ/Dm) Σ_k L_k                (Eq. 24-25)

h^0 is the main model's last block output (before its final norm). Each depth keeps the causal
chain: position i of depth k has seen tokens t_0 .. t_{i+k} and nothing later, so it must predict
t_{i+k+1}. Feeding Emb(t_{i+k}) and asking for t_{i+k} instead is the classic label leak
(``target_shift=-1`` reproduces it on purpose, for the lesson and the tests).

Sharing: the embedding ``model.tok_emb`` and the output projection ``model.head`` are the main
model's own modules, passed in at call time (never copied or registered here). The *shared head*
is the projection alone: each module has its own final RMSNorm before it, as in the released
DeepSeek-V3 weights (``model.layers.61.shared_head.norm``); the main model's ``model.norm`` is not
used by the modules. Order of the concatenation: we follow the paper, [h ; Emb]; the released
weights' ``eh_proj`` is applied to [Emb ; h] by vLLM/SGLang, which is the same function with the
columns of M_k swapped. If the model is MoE, module k's block is MoE too (layer index
``n_layers + k - 1``, as V3's layer 61), and its balance loss is added to the MTP loss.

Sequence bookkeeping for inputs idx (B, T) and targets (B, T) = idx shifted left by one (so
targets[:, j] = t_{j+1}): depth k covers n_k = T - k positions, reads tokens idx[:, k:T]
(= t_{i+k}) for its embedding and predicts targets[:, k:T] (= t_{i+k+1}).

Shape letters (``docs/GLOSSARY.md``): B batch, T sequence length, n positions a depth covers, D model
width, Dm MTP depth, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Block
from .config import ModelConfig
from .kv_cache import KVCache, StaticKVCache
from .layers import RMSNorm
from .validate import check_int

IGNORE_INDEX = -100
TARGET_SHIFTS = (-1, 0, 1)  # -1: the label leak; 0: correct; +1: one token too far


def depth_inputs(idx: torch.Tensor, targets: torch.Tensor, k: int,
                 target_shift: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens depth ``k`` embeds and the tokens it must predict, each (B, n).

    Correct wiring (``target_shift=0``): position i embeds t_{i+k} = idx[:, i+k] and predicts
    t_{i+k+1} = targets[:, i+k], for i = 0 .. T-1-k. ``target_shift=-1`` asks for t_{i+k}, the very
    token it embeds (the label leak); ``+1`` asks for t_{i+k+2} (one token too far, n = T-1-k).
    """
    if target_shift not in TARGET_SHIFTS:
        raise ValueError(f"target_shift={target_shift} must be one of {TARGET_SHIFTS}")
    check_int("k", k, where="depth_inputs")
    if k < 1:
        raise ValueError(f"depth k={k} must be >= 1 (depth 0 is the main model)")
    T = idx.shape[1]
    n = T - k - max(target_shift, 0)
    if n <= 0:
        raise ValueError(f"a sequence of T={T} tokens leaves no positions for MTP depth k={k} "
                         f"(target_shift={target_shift}); use T > {k + max(target_shift, 0)}")
    tokens_in = idx[:, k:k + n]  # (B, n): t_{i+k}
    wanted = targets[:, k + target_shift:k + target_shift + n]  # (B, n): t_{i+k+1+shift}
    return tokens_in, wanted


@dataclass
class MTPOutput:
    loss: torch.Tensor  # (λ/Dm) Σ_k L_k, plus the MTP blocks' MoE balance losses (0 when dense)
    depth_losses: list[torch.Tensor]  # L_k for k = 1..D, each a scalar
    logits: list[torch.Tensor]  # depth k: (B, T-k, V), position i scores t_{i+k+1}
    targets: list[torch.Tensor]  # depth k: (B, T-k) the tokens it was asked to predict
    inputs: list[torch.Tensor]  # depth k: (B, T-k) the tokens it embedded
    hidden: list[torch.Tensor]  # depth k: (B, T-k, D) h^k
    balance_loss: torch.Tensor | None = None  # sum over MoE blocks inside the modules
    moe: list = field(default_factory=list)

    @property
    def accuracy(self) -> list[float]:
        """Top-1 accuracy of each depth on its own targets (ignored positions excluded)."""
        accs = []
        for lg, tg in zip(self.logits, self.targets):
            keep = tg != IGNORE_INDEX
            accs.append((lg.argmax(-1)[keep] == tg[keep]).float().mean().item())
        return accs


class MTPModule(nn.Module):
    """Depth k: two RMSNorms, the projection M_k (2D -> D), one causal block and a final RMSNorm."""

    def __init__(self, cfg: ModelConfig, k: int):
        super().__init__()
        self.k = k
        self.hnorm = RMSNorm(cfg.dim, cfg.norm_eps)  # for h^{k-1}
        self.enorm = RMSNorm(cfg.dim, cfg.norm_eps)  # for Emb(t_{i+k})
        self.proj = nn.Linear(2 * cfg.dim, cfg.dim, bias=False)  # M_k
        self.block = Block(cfg, cfg.n_layers + k - 1)  # TRM_k; its cache slot is layer n_layers+k-1
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)  # the module's own norm before the shared head

    def forward(self, h_prev: torch.Tensor, emb: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: KVCache | None = None, **attn_options):
        """h_prev (B, n, D) and emb (B, n, D) of the same positions -> (h^k (B, n, D), MoE result)."""
        x = self.proj(torch.cat([self.hnorm(h_prev), self.enorm(emb)], dim=-1))  # (B, n, 2D) -> (B, n, D)
        return self.block(x, cos, sin, cache, **attn_options)


class MTPCache(StaticKVCache):
    """The MTP blocks' own pre-allocated KV cache (slots ``n_layers .. n_layers+D-1``, so each block
    keeps its own layer index); its length is module 1's."""

    def __init__(self, cfg: ModelConfig, max_len: int | None = None):
        super().__init__(cfg.n_layers + cfg.mtp_depth, max_len or cfg.max_seq_len)
        self.first = cfg.n_layers

    @property
    def length(self) -> int:
        return self.layer_length(self.first)


class MTP(nn.Module):
    """Dm sequential MTP modules. Called by ``Transformer.run`` as ``self.mtp(model, hidden, idx, targets)``.

    ``target_shift`` is 0 for the correct wiring; set it to -1 to reproduce the label leak (or +1 to
    predict one token too far); only the lesson and the tests do that.
    """

    def __init__(self, cfg: ModelConfig, target_shift: int = 0):
        super().__init__()
        if cfg.mtp_depth <= 0:
            raise ValueError(f"MTP needs mtp_depth >= 1, got mtp_depth={cfg.mtp_depth}")
        if target_shift not in TARGET_SHIFTS:
            raise ValueError(f"target_shift={target_shift} must be one of {TARGET_SHIFTS}")
        self.depth = cfg.mtp_depth  # D
        self.lam = cfg.mtp_lambda  # λ
        self.target_shift = target_shift
        self.layers = nn.ModuleList(MTPModule(cfg, k) for k in range(1, cfg.mtp_depth + 1))

    @staticmethod
    def _check(hidden: torch.Tensor, idx: torch.Tensor, targets: torch.Tensor | None) -> None:
        if targets is None:
            raise ValueError("MTP needs targets (idx shifted left by one) to know the tokens ahead")
        if idx.shape != targets.shape or hidden.shape[:2] != idx.shape:
            raise ValueError(f"hidden {tuple(hidden.shape)}, idx {tuple(idx.shape)} and targets "
                             f"{tuple(targets.shape)} must agree on (B, T)")
        same = (targets[:, :-1] == idx[:, 1:]) | (targets[:, :-1] == IGNORE_INDEX)
        if not bool(same.all()):
            raise ValueError("targets must be idx shifted left by one (targets[:, j] == idx[:, j+1]); "
                             "MTP reads the tokens ahead from idx")

    def forward(self, model, hidden: torch.Tensor, idx: torch.Tensor,
                targets: torch.Tensor | None, **attn_options) -> MTPOutput:
        """hidden (B, T, D): the main model's last block output; idx, targets (B, T)."""
        self._check(hidden, idx, targets)
        h = hidden  # h^0
        losses, all_logits, all_targets, all_inputs, all_hidden, moes = [], [], [], [], [], []
        for module in self.layers:
            tokens_in, wanted = depth_inputs(idx, targets, module.k, self.target_shift)  # (B, n) each
            n = tokens_in.shape[1]
            cos, sin = model.rope_cos[:n], model.rope_sin[:n]  # positions 0 .. n-1
            h, moe = module(h[:, :n], model.tok_emb(tokens_in), cos, sin, **attn_options)  # (B, n, D)
            logits = model.head(module.norm(h))  # (B, n, V): shared head, the module's own norm
            losses.append(F.cross_entropy(logits.flatten(0, 1), wanted.flatten(),
                                          ignore_index=IGNORE_INDEX))
            if moe is not None:
                moes.append(moe)
            all_logits.append(logits)
            all_targets.append(wanted)
            all_inputs.append(tokens_in)
            all_hidden.append(h)
        balance = sum((m.balance_loss for m in moes), hidden.new_zeros(()))
        loss = self.lam / self.depth * torch.stack(losses).sum() + balance
        return MTPOutput(loss, losses, all_logits, all_targets, all_inputs, all_hidden, balance, moes)

    def new_cache(self, cfg: ModelConfig, max_len: int | None = None) -> MTPCache:
        return MTPCache(cfg, max_len)

    @torch.no_grad()
    def draft_logits(self, model, hidden: torch.Tensor, tokens_ahead: torch.Tensor,
                     cache: MTPCache) -> torch.Tensor:
        """Module 1, incrementally, for self-speculative decoding.

        hidden (B, n, D): the main model's h^0 at the next n positions i (those after ``cache.length``);
        tokens_ahead (B, n): t_{i+1} for those positions (already decided). Returns (B, n, V) logits
        for t_{i+2}, the token after next. Equal to ``forward``'s depth-1 logits at the same positions.
        """
        module = self.layers._modules["0"]  # module 1 (plain dict access: this runs every decode step)
        start, n = cache.length, hidden.shape[1]
        if start + n > model.config.max_seq_len:
            raise ValueError(f"MTP positions {start}+{n} exceed max_seq_len={model.config.max_seq_len}")
        cos, sin = model.rope_cos[start:start + n], model.rope_sin[start:start + n]  # (n, rope_dim)
        h, _ = module(hidden, model.tok_emb(tokens_ahead), cos, sin, cache)  # (B, n, D)
        return model.head(module.norm(h))  # (B, n, V)
