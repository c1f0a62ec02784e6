"""DeepSeek Sparse Attention (DSA): the lightning indexer over MLA's latent cache (lesson 07).

DeepSeek-V3.2-Exp (Sept 2025) keeps V3's MLA and adds, per layer, a cheap *lightning indexer* that
scores every earlier token; the main attention then reads only the top-k latent entries per query.
Names follow transformers' ``DeepseekV32Indexer`` (``wq_b``, ``wk``, ``k_norm``, ``weights_proj``):

    indexer query   q_I(t, j) = W_qI c_q(t)          per head j, (B, T, HI, DI)  wq_b, from the query latent
    indexer key     k_I(s)    = LayerNorm(W_kI x_s)  one per token, (B, S, DI)   wk, k_norm (with bias)
    head weights    w(t, j)   = W_w x_t · H_I^-½     (B, T, HI)                  weights_proj
    index score     I(t, s)   = Σ_j w(t, j) · ReLU(d_I^-½ · q_I(t, j) · k_I(s))  (B, T, S), causal
    selection       top-k of I(t, ·)  (k ≥ the context means dense)
    attention       u_t = MLA(h_t, {c_s, k_pe_s : s in the top-k of t})

The first Dr dims of each indexer query and key carry RoPE in the *half-split* (rotate-half) layout,
unlike the main MLA's interleaved checkpoint layout; ``helpers.attention.apply_rope`` is that layout.
The indexer key is cached beside the latent: a DSA layer caches (c_kv, k_pe, k_I), Dc + Dr + d_I
elements per token, and a decode step reads all S index keys but only k latents.

The reference implementation also rotates q_I and k_I by a Hadamard matrix and scores in FP8. The
rotation is orthogonal (H Hᵀ = I), so q·k is unchanged; it spreads outliers across dims so that the
FP8 rounding hurts less. Both are precision/speed devices, not part of the function: we score in
float32 (``quantised_index_keys`` measures what FP8-style keys change in the selected set).

Two attention paths, tested equal: ``"gather"`` (the fast one: per query, gather the k selected latents
and attend over them, absorbed form) and ``"masked"`` (the readable one: score every cached latent,
mask all but the selected ones). Training follows the report: a dense warm-up where only the indexer
learns, by KL(p_t ‖ softmax(I(t, ·))) with p_t the main attention summed over heads and L1-normalised,
then sparse training where the KL runs over the selected set only and the indexer's input is detached.
The phase and k travel with each call (``model.run(x, y, index_topk=k, dsa_phase="sparse")``), and the
KL comes back in ``ModelOutput.indexer_loss`` beside ``aux_loss`` and ``mtp_loss``; ``set_dsa_phase`` and
``set_index_topk`` change the defaults (the latter in ``model.config`` too).

Shape letters (``docs/GLOSSARY.md``): B batch, T queries, S cached positions, D model width, H heads, Dq
query latent, Dc KV latent, Dr RoPE part, HI indexer heads (the report's H^I), DI indexer width (d^I), Ks
positions each query reads (the report's k, ``index_topk``). The formulas above keep the report's names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import apply_rope, causal_mask
from .config import ModelConfig
from .decode_cost import DecodeCost, decode_attention_cost  # noqa: F401  (their old home)
from .mla import MLA
from .validate import check_activations, check_choice, check_int, check_rope_tables

PHASES = ("inference", "warmup", "sparse")
PATHS = ("gather", "masked")


class Indexer(nn.Module):
    """The lightning indexer of one layer: ``forward(x, q_lat, cos, sin, keys)`` → index scores (B, T, S).

    ``x`` (B, T, D) is the layer's normalised input, ``q_lat`` (B, T, Dq) MLA's query latent
    ``q_norm(wq_a(x))``, ``keys`` (B, S, DI) the indexer keys of all S positions (cached + new, from
    ``keys()``). Future positions score ``-inf``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.index_n_heads, cfg.index_head_dim
        self.rope_dim = cfg.qk_rope_head_dim
        self.wq_b = nn.Linear(cfg.q_lora_rank, self.n_heads * self.head_dim, bias=False)  # Dq → HI·DI
        self.wk = nn.Linear(cfg.dim, self.head_dim, bias=False)  # D → DI: one key per token
        self.k_norm = nn.LayerNorm(self.head_dim, eps=1e-6)  # with a bias, as in the reference
        self.weights_proj = nn.Linear(cfg.dim, self.n_heads, bias=False)  # D → HI
        self.softmax_scale = self.head_dim ** -0.5

    def _rope(self, t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Half-split RoPE on the first Dr dims of (B, T, ..., DI), positions on dim 1."""
        rot, rest = t.split([self.rope_dim, self.head_dim - self.rope_dim], dim=-1)
        if t.ndim == 4:  # (B, T, HI, Dr) → rotate with positions on dim -2, then back
            rot = apply_rope(rot.transpose(1, 2), cos, sin).transpose(1, 2)
        else:
            rot = apply_rope(rot, cos, sin)
        return torch.cat([rot, rest], dim=-1)

    def keys(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """What the indexer caches: one rotated key per position, (B, T, DI)."""
        return self._rope(self.k_norm(self.wk(x)), cos, sin)

    def queries(self, q_lat: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """(B, T, HI, DI) rotated indexer queries from the query latent."""
        B, T, _ = q_lat.shape
        q = self.wq_b(q_lat).view(B, T, self.n_heads, self.head_dim)  # (B, T, HI, DI)
        return self._rope(q, cos, sin)

    def head_weights(self, x: torch.Tensor) -> torch.Tensor:
        """w(t, j), (B, T, HI), with the reference's H_I^-½."""
        return self.weights_proj(x).float() * self.n_heads ** -0.5

    def forward(self, x: torch.Tensor, q_lat: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                keys: torch.Tensor) -> torch.Tensor:
        q = self.queries(q_lat, cos, sin).float()  # (B, T, HI, DI)
        k_t = keys.float().transpose(1, 2).unsqueeze(1)  # (B, 1, DI, S)
        per_head = F.relu(q @ k_t * self.softmax_scale)  # (B, T, HI, S)
        scores = (self.head_weights(x).unsqueeze(-2) @ per_head).squeeze(-2)  # (B, T, S): Σ_j w_j ReLU(·)
        mask = causal_mask(x.shape[1], keys.shape[1], x.device)
        return scores if mask is None else scores.masked_fill(~mask, float("-inf"))


def select_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (B, T, min(k, S)) of the k highest index scores per query. Future positions score -inf,
    come last and are masked again by the attention.

    Ties at the k-th place go to the earlier position. ``torch.topk`` breaks ties in no documented
    order, and its choice depends on the row's length, so a prefill (rows padded with -inf) and a
    decode step (rows of exactly t + 1 positions) could pick differently; ReLU makes exact ties common
    (a position no indexer head likes scores exactly 0). When the k-th score is tied, a stable sort
    decides instead; otherwise the top-k set is unique and ``topk`` is used as it is."""
    k = min(check_int("k", k, min_value=1, where="select_topk"), scores.shape[-1])
    top = scores.topk(k, dim=-1)
    kth = top.values[..., -1:]  # (B, T, 1)
    tied = ((scores >= kth).sum(-1, keepdim=True) > k) & torch.isfinite(kth)  # more than k reach the k-th
    if not bool(tied.any()):
        return top.indices
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]


def tied_at_k(scores: torch.Tensor, k: int) -> int:
    """How many query rows have a tie at the k-th place among finite scores (where ``torch.topk`` alone
    would choose arbitrarily; ``select_topk`` gives such ties to the earlier position)."""
    k = min(check_int("k", k, min_value=1, where="tied_at_k"), scores.shape[-1])
    kth = scores.topk(k, dim=-1).values[..., -1:]
    return int((((scores >= kth).sum(-1, keepdim=True) > k) & torch.isfinite(kth)).sum())


def selection_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean (B, T, S): True where the query reads the position (selected by top-k and causal)."""
    keep = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, select_topk(scores, k), True)
    return keep & torch.isfinite(scores)


@dataclass
class DSAStats:
    """What one DSA layer saw in its last forward (kept only while ``record`` is on)."""

    index_scores: torch.Tensor  # (B, T, S) I(t, s), -inf in the future
    keep: torch.Tensor  # (B, T, S) bool: the positions the main attention read
    attention: torch.Tensor  # (B, T, S) main attention summed over heads, L1-normalised (p_t)
    indexer_loss: torch.Tensor | None  # the KL the phase asks for, None in inference


class SparseMLA(MLA):
    """MLA whose queries read only the indexer's top-k latent entries (``cfg.index_n_heads > 0``).

    ``forward(x, cos, sin, cache=None)`` as ``MLA``; with a cache, ``cache.update`` stores
    ``(c_kv (B, T, Dc), k_pe (B, T, Dr), k_I (B, T, DI))``. Modes ``"absorbed"`` (default) and
    ``"latent"``; ``path`` picks ``"gather"`` (fast) or ``"masked"`` (readable). ``index_topk`` and
    ``phase`` (one of ``PHASES``) come per call, explicitly (``Transformer.run(..., index_topk=k,
    dsa_phase=...)`` passes them down); left out, they are the layer's configuration's ``index_topk``
    and ``"inference"``, or what ``set_index_topk`` / ``set_dsa_phase`` made the defaults."""

    def __init__(self, cfg: ModelConfig, layer_idx: int = 0, mode: str = "absorbed"):
        super().__init__(cfg, layer_idx, mode)
        if not cfg.is_sparse_attention or cfg.q_lora_rank <= 0:
            raise ValueError("SparseMLA needs attn_type='mla', index_n_heads > 0 and q_lora_rank > 0")
        self.indexer = Indexer(cfg)
        self.index_topk = cfg.index_topk
        self.path = "gather"
        self.phase = "inference"
        self.record = False  # keep a DSAStats of the last forward in self.stats
        self.stats: DSAStats | None = None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache=None,
                mode: str | None = None, *, index_topk: int | None = None,
                phase: str | None = None) -> torch.Tensor:
        mode = mode or self.mode
        k = self.index_topk if index_topk is None else check_int("index_topk", index_topk, min_value=1)
        phase = self.phase if phase is None else phase
        if not self.record:
            self.stats = None  # the KL of this call only (ModelOutput.indexer_loss reads it)
        if mode not in ("absorbed", "latent"):
            raise ValueError(f"SparseMLA supports mode 'absorbed' or 'latent', got {mode!r}: the 'kv' "
                             "cache of expanded keys has no place for the indexer keys")
        check_choice("path", self.path, PATHS)
        check_choice("phase", phase, PHASES)
        check_activations(x, self.dim, self.wkv_a.weight)
        B, T, _ = x.shape
        check_rope_tables(cos, sin, T, self.rope_dim)
        q_lat = self.q_norm(self.wq_a(x))  # (B, T, Dq): shared by MLA and the indexer
        q = self.wq_b(q_lat).view(B, T, self.n_heads, self.qk_dim).transpose(1, 2)  # (B, H, T, Dn + Dr)
        q_nope, q_pe = q.split([self.nope_dim, self.rope_dim], dim=-1)
        q_pe = apply_rope(q_pe, cos, sin)
        c_kv, k_pe = self.latents(x, cos, sin)  # (B, T, Dc), (B, T, Dr)
        detach = phase == "sparse"  # sparse training: the indexer learns only from its KL
        k_idx = self.indexer.keys(x.detach() if detach else x, cos, sin)  # (B, T, DI)
        if cache is not None:
            c_kv, k_pe, k_idx = cache.update(self.layer_idx, c_kv, k_pe, k_idx)  # S positions each
        need_weights = self.record or phase != "inference"
        if not need_weights and k >= c_kv.shape[1] and mode == "absorbed":
            out = self.attend_absorbed(q_nope, q_pe, c_kv, k_pe)  # k covers the context: dense MLA
            return self.wo(out.transpose(1, 2).reshape(B, T, self.n_heads * self.v_dim))  # (B, T, D)
        scores = self.indexer(x.detach() if detach else x, q_lat.detach() if detach else q_lat,
                              cos, sin, k_idx)  # (B, T, S)
        dense = phase == "warmup"
        if dense or self.path == "masked" or mode == "latent" or need_weights:
            keep = torch.isfinite(scores) if dense else selection_mask(scores, k)
            out, probs = self._attend_masked(q_nope, q_pe, c_kv, k_pe, keep, mode)  # probs (B, H, T, S)
        else:
            keep, probs = None, None
            out = self._attend_gather(q_nope, q_pe, c_kv, k_pe, select_topk(scores, k), scores)
        if need_weights:
            self._keep_stats(scores, keep, probs, phase)
        return self.wo(out.transpose(1, 2).reshape(B, T, self.n_heads * self.v_dim))  # (B, T, D)

    # --- the two attention paths -------------------------------------------------------------------
    def _attend_masked(self, q_nope, q_pe, c_kv, k_pe, keep, mode):
        """Readable: score all S positions, mask all but ``keep`` (B, T, S). Returns the per-head
        output (B, H, T, Dv) and the attention weights (B, H, T, S)."""
        if mode == "latent":
            k, v = self.expand(c_kv, k_pe)  # (B, H, S, Dn + Dr), (B, H, S, Dv)
            scores = torch.cat([q_nope, q_pe], dim=-1) @ k.transpose(-1, -2)  # (B, H, T, S)
        else:
            w_uk, w_uv = self.up_weights()
            q_lat = torch.einsum("bhtn,hnc->bhtc", q_nope, w_uk)  # (B, H, T, Dc): W_UK folded into q
            scores = q_lat @ c_kv.unsqueeze(1).transpose(-1, -2) + q_pe @ k_pe.unsqueeze(1).transpose(-1, -2)
        scores = (scores * self.softmax_scale).masked_fill(~keep.unsqueeze(1), float("-inf"))  # (B, H, T, S)
        probs = scores.softmax(dim=-1)
        if mode == "latent":
            return probs @ v, probs  # (B, H, T, Dv)
        o_lat = probs @ c_kv.unsqueeze(1)  # (B, H, T, Dc)
        return torch.einsum("bhtc,hvc->bhtv", o_lat, w_uv), probs  # (B, H, T, Dv)

    def _attend_gather(self, q_nope, q_pe, c_kv, k_pe, idx, scores):
        """Fast: gather the k selected latents of each query and attend over those only (absorbed).
        idx (B, T, Ks); positions that were never causal (-inf score, early queries) are masked."""
        B, T, k = idx.shape
        w_uk, w_uv = self.up_weights()
        q_lat = torch.einsum("bhtn,hnc->bhtc", q_nope, w_uk)  # (B, H, T, Dc)
        S = c_kv.shape[1]
        # one row index per selected latent into the (B·S, ·) cache: index_select copies whole rows, where a
        # gather with an expanded index would read an index per element
        rows = (idx + torch.arange(B, device=idx.device).view(B, 1, 1) * S).reshape(-1)  # (B·T·Ks,)
        c_sel = c_kv.reshape(B * S, -1).index_select(0, rows).view(B, T, k, -1)  # (B, T, Ks, Dc)
        pe_sel = k_pe.reshape(B * S, -1).index_select(0, rows).view(B, T, k, -1)  # (B, T, Ks, Dr)
        att = (torch.einsum("bhtc,btkc->bhtk", q_lat, c_sel)
               + torch.einsum("bhtr,btkr->bhtk", q_pe, pe_sel)) * self.softmax_scale  # (B, H, T, Ks)
        valid = torch.isfinite(scores.gather(-1, idx))  # (B, T, Ks)
        if not bool(valid.all()):
            att = att.masked_fill(~valid.unsqueeze(1), float("-inf"))
        o_lat = torch.einsum("bhtk,btkc->bhtc", att.softmax(dim=-1), c_sel)  # (B, H, T, Dc)
        return torch.einsum("bhtc,hvc->bhtv", o_lat, w_uv)  # (B, H, T, Dv)

    # --- the indexer's training signal -------------------------------------------------------------
    def _keep_stats(self, scores, keep, probs, phase: str) -> None:
        p = probs.detach().sum(dim=1)  # (B, T, S): summed over heads
        p = p / p.sum(dim=-1, keepdim=True)  # L1-normalised
        loss = None
        if phase != "inference":
            loss = indexer_kl(p, scores, keep)
        self.stats = DSAStats(scores.detach(), keep, p, loss) if self.record else \
            DSAStats(scores.new_empty(0), keep.new_empty(0), p.new_empty(0), loss)


def indexer_kl(target: torch.Tensor, scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """KL(p_t ‖ softmax(I(t, ·))) over the positions in ``keep``, averaged over the B·T queries.

    ``target`` (B, T, S) is the main attention summed over heads and L1-normalised (no gradient),
    ``scores`` the index scores (gradient flows to the indexer), ``keep`` (B, T, S) the set the KL runs
    over: every causal position in the warm-up, the selected ones in sparse training."""
    logq = scores.masked_fill(~keep, float("-inf")).log_softmax(dim=-1)  # (B, T, S)
    p = target * keep
    p = p / p.sum(dim=-1, keepdim=True).clamp_min(1e-30)
    terms = torch.where(p > 0, p * (p.clamp_min(1e-30).log() - logq), torch.zeros_like(p))
    return terms.sum(dim=-1).mean()


# --- the model-level switches ---------------------------------------------------------------------
def dsa_layers(model: nn.Module) -> list[SparseMLA]:
    return [m for m in model.modules() if isinstance(m, SparseMLA)]


def set_dsa_phase(model: nn.Module, phase: str, path: str | None = None) -> int:
    """``"warmup"``: dense attention, only the indexer should learn (freeze the rest:
    ``indexer_parameters``), KL over all causal positions; ``"sparse"``: top-k attention, KL over the
    selected set with the indexer's input detached; ``"inference"``: top-k attention, no KL.
    Returns how many layers were switched."""
    check_choice("phase", phase, PHASES)
    if path is not None:
        check_choice("path", path, PATHS)
    layers = dsa_layers(model)
    for m in layers:
        m.phase = phase
        if path is not None:
            m.path = path
    return len(layers)


def set_index_topk(model: nn.Module, k: int) -> int:
    """Change the default k of every DSA layer (k ≥ the context length makes the attention dense),
    and the model's configuration with it, so ``model.config.index_topk`` is what runs. For one call,
    pass it instead: ``model.run(x, index_topk=k)``."""
    check_int("k", k, min_value=1, where="set_index_topk")
    layers = dsa_layers(model)
    for m in layers:
        m.index_topk = k
    config = getattr(model, "config", None)
    if layers and isinstance(config, ModelConfig) and config.index_topk != k:
        model.config = config.replace(index_topk=k)
    return len(layers)


def indexer_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in dsa_layers(model) for p in m.indexer.parameters()]


def indexer_loss(model: nn.Module) -> torch.Tensor:
    """Sum over DSA layers of the KL each computed in its last forward (0 in inference)."""
    losses = [m.stats.indexer_loss for m in dsa_layers(model)
              if m.stats is not None and m.stats.indexer_loss is not None]
    if not losses:
        return torch.zeros(())
    return torch.stack(losses).sum()


def record_stats(model: nn.Module, on: bool = True) -> None:
    for m in dsa_layers(model):
        m.record = on
        if not on:
            m.stats = None


# --- what the indexer gets right --------------------------------------------------------------------
@dataclass(frozen=True)
class Recall:
    mass: float  # mean share of the dense attention mass inside the indexer's top-k
    set: float  # mean |top-k of I ∩ top-k of p| / k


def indexer_recall(attention: torch.Tensor, scores: torch.Tensor, k: int,
                   skip_first: int | None = None) -> Recall:
    """How much of dense attention the indexer's top-k keeps. ``attention`` (B, T, S) the dense main
    attention (summed over heads, L1-normalised), ``scores`` (B, T, S) the index scores. Queries that
    see k positions or fewer select everything and are left out (``skip_first``, default k)."""
    check_int("k", k, min_value=1, where="indexer_recall")
    T, S = scores.shape[1:]
    first = k if skip_first is None else skip_first
    rows = slice(first - (S - T), None) if S - T < first else slice(None)
    a, s = attention[:, rows], scores[:, rows]
    if a.shape[1] == 0:
        raise ValueError(f"no query sees more than k={k} positions (T={T}, S={S}): recall is trivially 1")
    top_i = select_topk(s, k)  # the model's own rule, ties to the earlier position
    top_p = select_topk(a, k)
    mass = a.gather(-1, top_i).sum(-1).mean().item()
    hit = (top_i.unsqueeze(-1) == top_p.unsqueeze(-2)).any(-1).float().sum(-1) / k
    return Recall(mass, hit.mean().item())


def quantised_index_keys(keys: torch.Tensor, mantissa_bits: int = 3,
                         block: int | None = None) -> torch.Tensor:
    """FP8-style (E4M3: 3 mantissa bits, max 448) rounding of the index keys, one scale per key (or per
    ``block`` of dims): what the reference's FP8 scoring does to k_I, simulated in float32."""
    check_int("mantissa_bits", mantissa_bits, min_value=1, max_value=10, where="quantised_index_keys")
    shape = keys.shape
    k = keys if block is None else keys.reshape(*shape[:-1], -1, block)
    scale = k.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / 448.0
    x = k / scale
    exp = torch.floor(torch.log2(x.abs().clamp_min(2.0 ** -6)))
    step = 2.0 ** (exp - mantissa_bits)
    return (torch.round(x / step) * step * scale).reshape(shape)


def hadamard(n: int) -> torch.Tensor:
    """The n×n orthonormal Hadamard matrix (Sylvester; n a power of two): H Hᵀ = I."""
    check_int("n", n, min_value=1, where="hadamard")
    if n & (n - 1):
        raise ValueError(f"n={n} must be a power of two for a Sylvester Hadamard matrix")
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / n ** 0.5


# --- the bill ---------------------------------------------------------------------------------------
def dsa_elements_per_token(cfg: ModelConfig) -> int:
    """Cache elements per token, whole model: l·(Dc + Dr + d_I) — the latent, the RoPE key and the
    indexer key (l·(Dc + Dr) without an indexer)."""
    from .kv_cache import config_cache_bytes_per_token

    return config_cache_bytes_per_token(cfg, bytes_per_element=1)
