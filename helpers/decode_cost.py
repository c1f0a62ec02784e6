"""The decode cost model: what one decode step of one attention layer reads and computes, from the
configuration alone. One model, shared by DSA (``dsa``), lesson 03's roofline (``lessons.roofline``) and
the benchmark (``bench.roofline``, ``bench.dsa``).

A step of ``B`` sequences, ``s_q`` new positions each (one, plus any MTP drafts being verified), over
``S`` cached positions reads every weight of the layer once and the whole cache once:

* ``cache_elements_per_token``: cached elements per token and layer, the cache bill by path: ``Dc + Dr``
  (absorbed MLA), ``H·(Dn + Dr + Dv)`` (MLA caching expanded K/V), ``2·G·Dh`` (GQA);
* ``attention_flops_per_position``: the FLOPs one new token spends on one cached position, all heads
  (scores plus weighted sum);
* ``step_cost``: bytes and FLOPs of a whole step (``StepCost``, whose ``intensity`` is FLOP per byte);
  ``layer_step_cost``: the same for a built layer, counting its real parameters (the measured step's cost);
* ``decode_attention_cost``: DSA's view, per layer in multiply-adds and cache elements read, dense or
  over the top-k positions the lightning indexer picks (plus the indexer's own cost).

Letters (``docs/GLOSSARY.md``): H query heads, G KV heads, Dh head width, Dc KV latent width, Dn / Dr
non-RoPE / RoPE head part, Dv value head width, S cached positions, k positions DSA reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ModelConfig
from .kv_cache import cache_bill, kv_elements_per_token
from .params import attention_params
from .validate import check_choice, check_int

KINDS = ("absorbed", "kv", "gqa")
PATHS = KINDS  # lesson 03's name for them


@dataclass(frozen=True)
class StepCost:
    """One decode step of one attention layer: B sequences, one new token each, S cached positions."""

    weight_bytes: int  # every weight of the layer, read once
    cache_bytes: int  # the cache of all B sequences, S + 1 positions (the new one included), read once
    flops: int  # multiply-adds × 2: the projections and the attention over S + 1 positions

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.cache_bytes

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOPs per byte moved."""
        return self.flops / self.bytes


def cache_elements_per_token(path: str, cfg: ModelConfig) -> int:
    """Per layer: ``Dc + Dr`` (absorbed MLA), ``H·(Dn + Dr + Dv)`` (MLA caching expanded K/V),
    ``2·G·Dh`` (GQA)."""
    if path in ("absorbed", "kv"):  # the MLA cache bill (DeepSeek-V2 Table 1), per layer
        bill = cache_bill(cfg)
        return bill.latent if path == "absorbed" else bill.expanded_kv
    if path == "gqa":
        return kv_elements_per_token(1, cfg.kv_heads, cfg.hd)
    raise ValueError(f"path={path!r} must be one of {KINDS}")


def attention_flops_per_position(path: str, cfg: ModelConfig) -> int:
    """FLOPs one new token spends on ONE cached position, all heads: scores plus weighted sum.
    Absorbed: a (Dc + Dr)-wide score and a Dc-wide sum per head; expanded K/V: (Dn + Dr) and Dv;
    GQA: Dh and Dh."""
    H = cfg.n_heads
    if path == "absorbed":
        return 2 * H * (cfg.kv_lora_rank + cfg.qk_rope_head_dim + cfg.kv_lora_rank)
    if path == "kv":
        return 2 * H * (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim + cfg.v_head_dim)
    if path == "gqa":
        return 2 * H * 2 * cfg.hd
    raise ValueError(f"path={path!r} must be one of {KINDS}")


def step_cost(cfg: ModelConfig, path: str = "absorbed", batch: int = 1, queries: int = 1,
              context: int = 32768, bytes_per_element: int = 2, weights: bool = True) -> StepCost:
    """Bytes and FLOPs of one decode step of one attention layer, from the configuration alone (no
    weights are built, so DeepSeek-V3's sizes work): ``batch`` sequences, ``queries`` positions each,
    ``context`` positions cached before them. ``weights=False``: the attention kernel alone (the cache
    it reads, the FLOPs it spends on it), the part FlashMLA's argument is about."""
    check_choice("path", path, PATHS)
    for name, value in (("batch", batch), ("queries", queries), ("context", context)):
        check_int(name, value, min_value=1 if name != "context" else 0, where="step_cost")
    n_weights = attention_params(cfg) if weights else 0
    positions = context + queries
    cache = batch * positions * cache_elements_per_token(path, cfg) * bytes_per_element
    flops = batch * queries * (2 * n_weights + positions * attention_flops_per_position(path, cfg))
    return StepCost(n_weights * bytes_per_element, cache, flops)


def layer_step_cost(path: str, layer, cfg: ModelConfig, batch: int, context: int,
                    bytes_per_element: int = 4) -> StepCost:
    """Bytes and FLOPs of one decode step of a built ``layer`` (an ``nn.Module``: its parameters are the
    weights read), one new token per sequence: the cost of the step ``helpers.timing.decode_step`` times
    (``helpers.bench.roofline.step_cost``, its old name).

    Projections: every matrix weight is used once per token, 2 FLOPs per weight element (absorbed
    MLA uses ``wkv_b`` as W_UK on the query and W_UV on the output: still each element once). The
    RMSNorm weights are read but do no multiply-add worth counting."""
    weights = list(layer.parameters())
    weight_bytes = sum(w.numel() * w.element_size() for w in weights)
    matrix_elements = sum(w.numel() for w in weights if w.ndim == 2)
    positions = context + 1
    cache_bytes = batch * positions * cache_elements_per_token(path, cfg) * bytes_per_element
    flops = batch * (2 * matrix_elements + positions * attention_flops_per_position(path, cfg))
    return StepCost(weight_bytes, cache_bytes, flops)


@dataclass(frozen=True)
class DecodeCost:
    """One decode step's attention at context S, per layer: multiply-adds and cache elements read."""

    macs: float
    elements_read: float


def decode_attention_cost(cfg: ModelConfig, context: int, k: int | None = None) -> DecodeCost:
    """The FLOP/byte model of one absorbed decode step per layer. Dense MLA (``k=None`` or k ≥ S):
    H·S·(Dc + Dr) for the scores and H·S·Dc for the weighted sum, reading S·(Dc + Dr) cached elements.
    DSA: the indexer's H_I·S·d_I (+ S for the head weights) over S index keys, then the same attention
    over min(k, S) gathered latents."""
    check_int("context", context, min_value=1, where="decode_attention_cost")
    read = context if k is None else min(k, context)
    macs = read * attention_flops_per_position("absorbed", cfg) // 2  # H·(2·Dc + Dr) per position
    elements = read * cache_elements_per_token("absorbed", cfg)  # Dc + Dr per position
    if k is not None and cfg.is_sparse_attention:
        macs += context * (cfg.index_n_heads * cfg.index_head_dim + cfg.index_n_heads)
        elements += context * cfg.index_head_dim
    return DecodeCost(float(macs), float(elements))
