"""The KV cache every attention variant in the course uses (lesson 01).

During generation each layer's keys and values for past positions never change, so we keep them
instead of recomputing them. A layer hands the cache its new tensors for the current positions and
gets back the full history. The cache is agnostic about *what* a layer stores: MHA/GQA store
``(k, v)`` of shape ``(B, G, S, Dh)``; MLA stores ``(c_kv, k_pe)`` of shapes ``(B, S, Dc)`` and
``(B, S, Dr)``. Every stored tensor keeps the sequence on dimension -2.

Memory per token (DeepSeek-V2 Table 1): ``2 · l · G · Dh`` elements for MHA/GQA/MQA and
``l · (Dc + Dr)`` for MLA; ``nbytes()`` measures it from the tensors themselves. This module is the
course's one cache bill: the formulas (``kv_elements_per_token``, ``mla_elements_per_token``), a
configuration's bill (``config_cache_bytes_per_token``), MLA's latent against expanded bill
(``cache_bill``, ``cache_table``) and the measurement (``measured_cache_bytes_per_token``). The lessons,
the published-model calculator, the decode cost model and the sweeps all call these.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .validate import InputTypeError, check_int

SEQ_DIM = -2


class KVCache:
    """A growing cache: each ``update`` concatenates the new positions onto the old ones."""

    def __init__(self, n_layers: int):
        check_int("n_layers", n_layers, min_value=1, where=type(self).__name__)
        self.n_layers = n_layers
        self.layers: list[tuple[torch.Tensor, ...] | None] = [None] * n_layers
        # per layer: what its stored tensors look like (batch, middle dims, width, dtype, device)
        self.signatures: list[tuple | None] = [None] * n_layers
        # per layer: (shape, dtype, device) of each tensor of the last update that passed the checks
        self.accepted: list[tuple | None] = [None] * n_layers

    def _check_layer(self, layer_idx: int) -> None:
        if not 0 <= layer_idx < self.n_layers:
            raise IndexError(f"layer_idx={layer_idx} outside [0, {self.n_layers})")

    def check_update(self, layer_idx: int, new: tuple) -> None:
        """Every update, not only the first: the new tensors must match what the layer already holds
        (count, batch, every dim but the sequence, dtype, device) and the batch of the other layers.
        Otherwise a batch-1 step after a batch-2 prefill would broadcast silently."""
        if isinstance(layer_idx, bool) or not isinstance(layer_idx, int):
            raise InputTypeError(f"layer_idx must be an int, got {layer_idx!r}")
        self._check_layer(layer_idx)
        # Every decode step brings tensors shaped like the step before: if this layer accepted exactly
        # these shapes last time (and still holds positions), the checks below would pass again.
        key = tuple((t.shape, t.dtype, t.device) if torch.is_tensor(t) else None for t in new)
        if key == self.accepted[layer_idx] and self.layer_length(layer_idx) > 0:
            return
        self._check_signature(layer_idx, new)
        self.accepted[layer_idx] = key

    def _check_signature(self, layer_idx: int, new: tuple) -> None:
        sig = _signature(new, layer_idx)
        old = self.signatures[layer_idx] if self.layer_length(layer_idx) > 0 else None
        if old is not None:
            if len(old) != len(sig):
                raise ValueError(f"layer {layer_idx} of the cache stores {len(old)} tensors per position, "
                                 f"this update brings {len(sig)}")
            for i, (o, n) in enumerate(zip(old, sig)):
                if o != n:
                    raise ValueError(f"layer {layer_idx} of the cache holds tensor {i} as {_describe(o)}, "
                                     f"this update brings {_describe(n)}; a new sequence or batch needs "
                                     "cache.reset() first")
            return
        for other_idx, other in enumerate(self.signatures):
            if other is not None and other_idx != layer_idx and self.layer_length(other_idx) > 0:
                if (other[0][0], other[0][-1]) != (sig[0][0], sig[0][-1]):
                    raise ValueError(f"layer {layer_idx} gets batch {sig[0][0]} on {sig[0][-1]}, but layer "
                                     f"{other_idx} of the same cache holds batch {other[0][0]} on "
                                     f"{other[0][-1]}; a new batch needs cache.reset() first")
                break
        self.signatures[layer_idx] = sig

    def update(self, layer_idx: int, *new: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Append ``new`` (sequence on dim -2) to layer ``layer_idx``; return the full tensors."""
        self.check_update(layer_idx, new)
        old = self.layers[layer_idx]
        if old is None:
            full = tuple(new)
        else:
            full = tuple(torch.cat([o, n], dim=SEQ_DIM) for o, n in zip(old, new))
        self.layers[layer_idx] = full
        return full

    def layer_length(self, layer_idx: int) -> int:
        entry = self.layers[layer_idx]
        return 0 if entry is None else entry[0].shape[SEQ_DIM]

    @property
    def length(self) -> int:
        """Positions cached so far (read from layer 0, which every forward pass updates first)."""
        return self.layer_length(0)

    def reset(self) -> None:
        self.layers = [None] * self.n_layers
        self.signatures = [None] * self.n_layers
        self.accepted = [None] * self.n_layers

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on (speculative decoding rolls back with this)."""
        check_int("length", length, where="crop")
        if not 0 <= length <= self.length:
            raise ValueError(f"crop length={length} outside [0, {self.length}]")
        self.layers = [None if e is None or length == 0 else
                       tuple(t.narrow(SEQ_DIM, 0, length) for t in e) for e in self.layers]

    def nbytes(self) -> int:
        """Bytes held by the cached positions, summed over layers and tensors."""
        total = 0
        for layer_idx, entry in enumerate(self.layers):
            if entry is not None:
                n = self.layer_length(layer_idx)
                total += sum(t.narrow(SEQ_DIM, 0, n).numel() * t.element_size() for t in entry)
        return total


class StaticKVCache(KVCache):
    """A pre-allocated cache: buffers for ``max_len`` positions are made on the first update and
    filled in place, so decoding never reallocates (what a serving engine does)."""

    def __init__(self, n_layers: int, max_len: int):
        super().__init__(n_layers)
        check_int("max_len", max_len, min_value=1, where=type(self).__name__)
        self.max_len = max_len
        self.buffers: list[tuple[torch.Tensor, ...] | None] = [None] * n_layers
        self.lengths = [0] * n_layers

    def update(self, layer_idx: int, *new: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.check_update(layer_idx, new)
        start, t = self.lengths[layer_idx], new[0].shape[SEQ_DIM]
        if start + t > self.max_len:
            raise ValueError(f"cache overflow: {start} cached + {t} new > max_len={self.max_len}")
        bufs = self.buffers[layer_idx]
        if start == 0 and bufs is not None and not _fits(bufs, new):
            bufs = None  # a new request of another batch size, width or dtype: allocate afresh
        if bufs is None:
            bufs = tuple(n.new_zeros(*n.shape[:-2], self.max_len, n.shape[-1]) for n in new)
        elif not torch.is_inference_mode_enabled() and bufs[0].is_inference():
            bufs = tuple(b.clone() for b in bufs)  # filled under inference_mode, now written outside it
        self.buffers[layer_idx] = bufs
        for buf, n in zip(bufs, new):
            buf.narrow(SEQ_DIM, start, t).copy_(n)
        self.lengths[layer_idx] = start + t
        full = tuple(buf.narrow(SEQ_DIM, 0, start + t) for buf in bufs)
        self.layers[layer_idx] = full
        return full

    def layer_length(self, layer_idx: int) -> int:
        return self.lengths[layer_idx]

    def reset(self) -> None:
        super().reset()
        self.lengths = [0] * self.n_layers  # buffers are kept and reused

    def crop(self, length: int) -> None:
        if not 0 <= length <= self.length:
            raise ValueError(f"crop length={length} outside [0, {self.length}]")
        self.lengths = [min(n, length) for n in self.lengths]
        self.layers = [None if b is None or length == 0 else
                       tuple(t.narrow(SEQ_DIM, 0, length) for t in b) for b in self.buffers]

    def allocated_nbytes(self) -> int:
        """Bytes reserved, used or not."""
        return sum(t.numel() * t.element_size() for b in self.buffers if b is not None for t in b)


def _signature(new: tuple, layer_idx: int) -> tuple:
    """(batch, middle dims, width, dtype, device) of each tensor of one update, checked to agree."""
    if not new:
        raise ValueError(f"cache.update(layer {layer_idx}) needs at least one tensor")
    for i, t in enumerate(new):
        if not torch.is_tensor(t) or t.ndim < 2:
            what = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise ValueError(f"cache.update(layer {layer_idx}): tensor {i} must be a tensor with the "
                             f"sequence on dim -2, got {what}")
    sig = tuple((t.shape[0] if t.ndim > 2 else None, tuple(t.shape[1:-2]), t.shape[-1],
                 t.dtype, t.device) for t in new)
    first = new[0]
    for i, t in enumerate(new[1:], start=1):
        if (t.shape[0], t.shape[SEQ_DIM], t.device) != (first.shape[0], first.shape[SEQ_DIM], first.device):
            raise ValueError(f"cache.update(layer {layer_idx}): tensor {i} has shape {tuple(t.shape)} on "
                             f"{t.device}, tensor 0 has {tuple(first.shape)} on {first.device}; they must "
                             "share the batch, the number of positions and the device")
    return sig


def _describe(sig: tuple) -> str:
    batch, middle, width, dtype, device = sig
    dims = "×".join(str(d) for d in middle) + ("×" if middle else "")
    return f"batch {batch} of {dims}{width}-wide {str(dtype).replace('torch.', '')} rows on {device}"


def _fits(bufs: tuple[torch.Tensor, ...], new: tuple[torch.Tensor, ...]) -> bool:
    """Can ``new`` be written into the pre-allocated ``bufs`` (same count, leading dims, width, dtype)?"""
    return len(bufs) == len(new) and all(
        b.shape[:-2] == n.shape[:-2] and b.shape[-1] == n.shape[-1] and b.dtype == n.dtype
        and b.device == n.device for b, n in zip(bufs, new))


def kv_elements_per_token(n_layers: int, n_kv_heads: int, head_dim: int,
                          v_head_dim: int | None = None) -> int:
    """MHA/GQA/MQA: K and V, each ``G · Dh`` per layer. Where values are narrower than keys (MLA's
    expanded heads: K of ``Dn + Dr``, V of ``Dv``), ``head_dim`` is the key's width and ``v_head_dim``
    the value's: ``G · (Dk + Dv)`` per layer."""
    if v_head_dim is None:
        return 2 * n_layers * n_kv_heads * head_dim
    return n_layers * n_kv_heads * (head_dim + v_head_dim)


def mla_elements_per_token(n_layers: int, kv_lora_rank: int, qk_rope_head_dim: int) -> int:
    """MLA: the latent ``c_kv`` (Dc) and the shared RoPE key (Dr) per layer."""
    return n_layers * (kv_lora_rank + qk_rope_head_dim)


def config_cache_bytes_per_token(cfg, bytes_per_element: int = 4) -> int:
    """The formula: whole-model KV cache per token, ``l·(Dc + Dr)`` elements for MLA (absorbed or
    latent; ``l·(Dc + Dr + DI)`` with DSA's indexer key), ``2·l·G·Dh`` otherwise (DeepSeek-V2 Table 1),
    times ``bytes_per_element``."""
    if cfg.attn_type == "mla":
        elements = mla_elements_per_token(cfg.n_layers, cfg.kv_lora_rank, cfg.qk_rope_head_dim)
        if cfg.index_n_heads > 0:  # DeepSeek Sparse Attention also caches one indexer key per token
            elements += cfg.n_layers * cfg.index_head_dim
    else:
        elements = kv_elements_per_token(cfg.n_layers, cfg.kv_heads, cfg.hd)
    return elements * bytes_per_element


@torch.no_grad()
def measured_cache_bytes_per_token(model, n_tokens: int = 16, batch_size: int = 1,
                                   static: bool = False) -> float:
    """The measurement: bytes the model's own cache tensors hold after a prefill of ``n_tokens``
    random tokens for ``batch_size`` sequences, per token (``cache.nbytes() / (B · n_tokens)``)."""
    check_int("n_tokens", n_tokens, min_value=1, max_value=model.config.max_seq_len,
              where="measured_cache_bytes_per_token")
    check_int("batch_size", batch_size, min_value=1, where="measured_cache_bytes_per_token")
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, model.config.vocab_size, (batch_size, n_tokens), generator=gen).to(model.device)
    cache = model.new_cache(static=static, max_len=n_tokens)
    was_training = model.training
    model.eval()
    model(idx, cache=cache)
    model.train(was_training)
    return cache.nbytes() / (batch_size * n_tokens)


# --- MLA's cache modes ------------------------------------------------------------------------------
MODES = ("absorbed", "latent", "kv")
# The former course mode "naive" meant the opposite of DeepSeek's attn_impl="naive": refused, with the map.
RENAMED = ('mode="naive" was renamed "latent", because DeepSeek\'s own "naive" means something else. '
           'Course "kv" = DeepSeek attn_impl="naive" (expanded K/V cached); course "latent" = latent '
           'cached, K/V re-expanded each step (no DeepSeek name); course "absorbed" = DeepSeek '
           'attn_impl="absorb"')


def check_mla_mode(mode: str) -> str:
    """An MLA layer's cache mode, checked: what it caches (``MLACacheBill``) depends on it."""
    if mode == "naive":
        raise ValueError(f"{RENAMED}; modes are {MODES}")
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} must be one of {MODES}")
    return mode


# --- the cache bill (DeepSeek-V2 Table 1) ----------------------------------------------------------
@dataclass(frozen=True)
class CacheRow:
    method: str  # "MHA", "GQA", "MQA", "MLA"
    formula: str  # elements per token per layer, symbolically
    elements: int  # elements per token per layer for the given sizes
    gqa_groups_equivalent: float  # the G of a GQA model with the same cache (elements / (2·Dh))


def cache_table(n_heads: int, head_dim: int, n_groups: int, kv_lora_rank: int,
                qk_rope_head_dim: int) -> list[CacheRow]:
    """DeepSeek-V2 Table 1 for concrete sizes: KV-cache elements per token per layer."""
    for name, value in [("n_heads", n_heads), ("head_dim", head_dim), ("n_groups", n_groups),
                        ("kv_lora_rank", kv_lora_rank), ("qk_rope_head_dim", qk_rope_head_dim)]:
        if value <= 0:
            raise ValueError(f"{name}={value} must be positive")
    rows = [("MHA", "2·H·Dh", kv_elements_per_token(1, n_heads, head_dim)),
            ("GQA", "2·G·Dh", kv_elements_per_token(1, n_groups, head_dim)),
            ("MQA", "2·Dh", kv_elements_per_token(1, 1, head_dim)),
            ("MLA", "Dc + Dr", mla_elements_per_token(1, kv_lora_rank, qk_rope_head_dim))]
    return [CacheRow(m, f, e, e / (2 * head_dim)) for m, f, e in rows]


@dataclass(frozen=True)
class MLACacheBill:
    latent: int  # Dc + Dr: what the absorbed/latent MLA caches, elements per token per layer
    expanded_kv: int  # H·(Dn + Dr) + H·Dv: per-head K and V ("kv" mode), elements per token per layer
    n_layers: int

    @property
    def ratio(self) -> float:
        """How many times smaller the latent cache is than the expanded K/V cache."""
        return self.expanded_kv / self.latent

    def bytes_per_token(self, bytes_per_element: int = 2, mode: str = "absorbed") -> int:
        """Whole-model cache bytes per token (all layers); bf16 = 2 bytes per element."""
        per_layer = self.expanded_kv if check_mla_mode(mode) == "kv" else self.latent
        return per_layer * self.n_layers * bytes_per_element


def mla_cache_bill(n_layers: int, n_heads: int, kv_lora_rank: int, qk_nope_head_dim: int,
                   qk_rope_head_dim: int, v_head_dim: int) -> MLACacheBill:
    """Elements per token per layer of the latent cache and of the expanded per-head K/V cache."""
    for name, value in [("n_layers", n_layers), ("n_heads", n_heads), ("kv_lora_rank", kv_lora_rank),
                        ("qk_nope_head_dim", qk_nope_head_dim), ("qk_rope_head_dim", qk_rope_head_dim),
                        ("v_head_dim", v_head_dim)]:
        if value <= 0:
            raise ValueError(f"{name}={value} must be positive")
    latent = mla_elements_per_token(1, kv_lora_rank, qk_rope_head_dim)
    expanded = kv_elements_per_token(1, n_heads, qk_nope_head_dim + qk_rope_head_dim, v_head_dim)
    return MLACacheBill(latent, expanded, n_layers)


def cache_bill(cfg) -> MLACacheBill:
    """The cache bill of one of our MLA configs."""
    return mla_cache_bill(cfg.n_layers, cfg.n_heads, cfg.kv_lora_rank, cfg.qk_nope_head_dim,
                          cfg.qk_rope_head_dim, cfg.v_head_dim)


def deepseek_v3_cache_bill() -> MLACacheBill:
    """DeepSeek-V3's real configuration (``helpers.published``): 576 vs 40,960 elements."""
    from .published import get_published

    m = get_published("DeepSeek-V3")
    return mla_cache_bill(m.n_layers, m.n_heads, m.kv_lora_rank, m.qk_nope_head_dim,
                          m.qk_rope_head_dim, m.v_head_dim)
