"""Lesson 07 figures: DeepSeek Sparse Attention (``helpers.dsa``): is it right, what does it cache, and
how much faster is a decode step that reads k latents instead of all of them?

* ``dsa.max_abs_diff_vs_hf``: the largest |ours − Hugging Face| logit of a tiny
  ``DeepseekV32ForCausalLM`` (8 indexer heads, top-k 4 of 24 tokens, so the selection matters; random
  weights with std 0.2 and perturbed norm weights and biases) converted with ``helpers.interop.from_hf``.
* ``dsa.cache_bytes_per_token`` (measured: ``kv_cache.measured_cache_bytes_per_token`` of a small DSA
  ``Transformer`` after a prefill) and ``dsa.cache_bytes_per_token_formula``
  (``kv_cache.config_cache_bytes_per_token``, l·(Dc + Dr + d_I) float32 elements); they must agree.
* ``dsa.index_key_share_of_cache``: d_I / (Dc + Dr + d_I) at DeepSeek-V3.2's sizes, what the
  indexer key adds to each token's cache entry.
* ``dsa.indexer_cost_share@131072``: from the FLOP model (``dsa.decode_attention_cost``), the share
  of a sparse decode step's attention multiply-adds spent in the indexer at V3.2's sizes and a 128K
  context: the part of the work that is still O(L) per token (O(L²) per sequence).

Decode (``decode_timings``) is timed for ONE attention layer, batch 1, one new token against S cached
positions, on ``helpers.pick_device()`` in float32. The layer is a ``SparseMLA`` at a teaching
configuration with DeepSeek-V3.2's proportions (``BENCH_CONFIG``): V3's per-head shapes (Dc 512,
Dr 64, Dn 128, Dv 128, Dq 1536) with 16 heads and width 2048 as in ``bench/mla.py``, and an indexer of
H_I = 8 heads × d_I = 128, so that H_I·d_I is 1/9 of H·(Dc + Dr), as V3.2's 64 × 128 is of 128 × 576.
Its top-k is fixed at ``TOPK`` = 256 = 16384 / 64 for every context, as V3.2 reads a fixed 2048
entries (1/64 of its 128K context) whatever the context; so the FLOP model crosses over just above
S = k (``flop_crossover``) and the measured step later, where the indexer's fixed costs are paid.
Two steps with the same weights, the same cached history and the same new token, side by side:

* ``dense``: the layer run as plain DeepSeek-V3 absorbed MLA (``helpers.mla.MLA.forward`` on the same
  module, mode ``"absorbed"``, the explicit path of DeepSeek's ``model.py``) over a cache holding
  ``(c_kv, k_pe)``: what V3 does, scoring all S latents;
* ``sparse``: ``SparseMLA`` in its ``"gather"`` path under ``torch.inference_mode()``, over a cache
  holding ``(c_kv, k_pe, k_I)``: the indexer scores all S index keys, then the attention reads the
  top-k latents only.

Both caches hold the same latents (of S random hidden states, computed once, not timed) plus, for the
sparse one, their index keys. They are ``StaticKVCache``s, pre-allocated as a serving engine's are: a
growing ``KVCache`` would copy its whole history on every step (``torch.cat``), a cost proportional to
S that both steps would pay and that would hide the difference between them. Each timed call appends
one position and crops it off again, so every call sees exactly S cached positions plus one. Not timed:
with top-k ≥ S + 1 the sparse step must give the dense step's output (``dsa.dense_equals_topk_full``:
1 if they agree to float32 rounding at every context measured, else 0; the rows keep the max diff).

Timing: the two steps take turns (``helpers.timing.interleaved``, 3 rounds with ``--quick``, full: 5)
on ONE CPU thread (``THREADS``; on the shared 2-core machine a 2-thread op stalls whenever one thread
is descheduled), reading that thread's CPU time on a CPU (as ``bench/kv.py`` and ``bench/roofline.py``
do) and wall time on an accelerator. Each ``..._ms_per_token`` figure is the best (minimum)
measurement; ``dsa.decode_speedup`` = dense / sparse. ``--quick`` times S = 16384 only; the full run
times every context in ``CONTEXTS`` and reports the three decode figures for each.

What dominates the sparse step (``torch.profiler``, one thread, S = 16384, course machine, ~9 ms):
the layer's weights, ~17M float32 parameters (~68 MB) streamed once per token by matrix-vector
products (~42%); the indexer's scores, an (8 × 128) · (128 × S) product streaming the S index keys
(~19%), plus its ReLU and scaling over the H_I × S scores (~7%); the W_UK / W_UV absorptions, which
the dense step pays too (~10%); the gather of the k selected latents (~6%); top-k itself ~2%. The
dense step (~25 ms) is mostly its two skinny products over all S latents (scores, then the weighted
sum). Through SDPA instead of the explicit path the dense step was slower still (~70 ms), so the
explicit path is the baseline. The full run on that machine: sparse ~6.5 ms at S = 256 (the weights
plus the indexer's own projections: its floor at batch 1) rising to ~8.2 ms at 16384, dense 4.9 ms
rising to ~22.5 ms; the measured crossover near S = 2048 (the FLOP model's: 273), 2.7x at 16384.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..attention import rope_tables
from ..config import ModelConfig
from ..device import pick_device
from ..dsa import DecodeCost, SparseMLA, decode_attention_cost, dsa_layers
from ..kv_cache import StaticKVCache, config_cache_bytes_per_token, measured_cache_bytes_per_token
from ..mla import MLA
from ..model import Transformer
from ..published import deepseek_v3_config
from ..timing import interleaved
from ..validate import check_int

CONTEXT = 16384  # the headline context of the decode figures
TOPK = CONTEXT // 64  # 256: V3.2 reads 2048 of a 128K context, 1/64
CONTEXTS = (256, 512, 1024, 2048, 4096, 8192, 16384)  # the full run; --quick times CONTEXT only
THREADS = 1
BENCH_CONFIG = ModelConfig(
    dim=2048, n_layers=1, n_heads=16, max_seq_len=CONTEXT + 8, attn_type="mla", attn_impl="explicit",
    q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
    index_n_heads=8, index_head_dim=128, index_topk=TOPK)

# DeepSeek-V3.2's sizes: DeepSeek-V3's (``helpers.published.V3``) plus the indexer. Source:
# deepseek-ai/DeepSeek-V3.2-Exp config.json: "index_n_heads": 64, "index_head_dim": 128,
# "index_topk": 2048 (the rest of the attention as V3: 128 heads, kv_lora_rank 512, qk_rope_head_dim 64).
V32_SOURCE = "deepseek-ai/DeepSeek-V3.2-Exp config.json"
V32_INDEXER = dict(index_n_heads=64, index_head_dim=128, index_topk=2048)
V32_CONTEXT = 131072  # 128K, the context V3.2 was trained to


def v32_config() -> ModelConfig:
    """DeepSeek-V3.2's sizes as one of our configs, for the bills only (never build it)."""
    return deepseek_v3_config().replace(**V32_INDEXER)


# --- correctness against Hugging Face ---------------------------------------------------------------
HF_SEQ_LEN = 24
HF_TOPK = 4


@torch.no_grad()
def tiny_hf_model(seed: int = 0, **changes):
    """A random tiny ``DeepseekV32ForCausalLM`` (``tiny_dsa_hf_config``, 8 indexer heads, top-k 4) with
    weights of std 0.2, norm weights 1 + N(0, 0.2²), norm biases and router selection biases N(0, 0.1²)
    (so no norm is the identity and no bias is zero)."""
    from transformers import DeepseekV32ForCausalLM

    from ..interop.deepseek_v32 import tiny_dsa_hf_config

    changes = {"index_n_heads": 8, "index_topk": HF_TOPK, "initializer_range": 0.2, **changes}
    torch.manual_seed(seed)
    hf = DeepseekV32ForCausalLM(tiny_dsa_hf_config(**changes)).eval()
    for name, t in [*hf.named_parameters(), *hf.named_buffers()]:
        if "norm" in name and name.endswith("weight"):
            t.copy_(1 + 0.2 * torch.randn_like(t))
        elif "norm" in name or "e_score_correction_bias" in name:
            t.normal_(0, 0.1)
    return hf


@torch.no_grad()
def hf_figures(seq_len: int = HF_SEQ_LEN, seed: int = 0) -> dict[str, float]:
    """``dsa.max_abs_diff_vs_hf``: ours (``from_hf``) against ``DeepseekV32ForCausalLM``, same tokens."""
    from ..interop import from_hf

    hf = tiny_hf_model(seed)
    ours = from_hf(hf)
    if seq_len <= min(m.index_topk for m in dsa_layers(ours)):
        raise ValueError(f"seq_len={seq_len} must exceed index_topk={HF_TOPK}, or the attention is dense")
    idx = torch.randint(0, hf.config.vocab_size, (2, seq_len), generator=torch.Generator().manual_seed(seed))
    diff = (ours(idx) - hf(idx).logits).abs().max().item()
    return {"dsa.max_abs_diff_vs_hf": diff}


# --- what the cache holds ---------------------------------------------------------------------------
CACHE_CONFIG = ModelConfig(dim=64, n_layers=3, n_heads=4, inter_dim=128, max_seq_len=64, attn_type="mla",
                           q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
                           v_head_dim=16, index_n_heads=2, index_head_dim=16, index_topk=4)


def cache_figures(cfg: ModelConfig = CACHE_CONFIG) -> dict[str, float]:
    """The measured cache of a small DSA model against the formula, and V3.2's index-key share."""
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    v32 = v32_config()
    Dc, Dr, d_I = v32.kv_lora_rank, v32.qk_rope_head_dim, v32.index_head_dim
    return {
        "dsa.cache_bytes_per_token": float(measured_cache_bytes_per_token(model, n_tokens=16, batch_size=2)),
        "dsa.cache_bytes_per_token_formula": float(config_cache_bytes_per_token(cfg)),
        "dsa.index_key_share_of_cache": d_I / (Dc + Dr + d_I),
    }


# --- the FLOP model ---------------------------------------------------------------------------------
def indexer_cost_share(cfg: ModelConfig, context: int, k: int | None = None) -> float:
    """The share of a sparse decode step's attention MACs (``decode_attention_cost``) spent in the
    indexer: the whole step minus the attention over the min(k, S) selected latents."""
    k = cfg.index_topk if k is None else k
    sparse = decode_attention_cost(cfg, context, k).macs
    attention = decode_attention_cost(cfg, min(k, context)).macs  # dense over the k it reads
    return (sparse - attention) / sparse


def flop_crossover(cfg: ModelConfig, k: int | None = None, limit: int = 2 ** 40) -> int | None:
    """The smallest context S at which the FLOP model's sparse step costs fewer MACs than the dense
    one (``decode_attention_cost``), or None if it never does below ``limit`` (an indexer that costs
    as much per position as dense attention). Up to S = k the sparse step reads every latent AND runs
    the indexer; beyond, its cost grows by the indexer's per-position cost only."""
    k = cfg.index_topk if k is None else check_int("k", k, min_value=1, where="flop_crossover")

    def cheaper(s: int) -> bool:
        return decode_attention_cost(cfg, s, k).macs < decode_attention_cost(cfg, s).macs

    if not cheaper(limit):
        return None
    lo, hi = 1, limit  # cheaper(hi) holds; the sign changes once (dense - sparse grows with S beyond k)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if cheaper(mid) else (mid + 1, hi)
    return lo


def model_figures() -> dict[str, float]:
    v32 = v32_config()
    return {f"dsa.indexer_cost_share@{V32_CONTEXT}": indexer_cost_share(v32, V32_CONTEXT)}


# --- decode: dense MLA against the sparse gather path -----------------------------------------------
@dataclass(frozen=True)
class DecodeTiming:
    """One context of ``decode_timings``: best ms per token of each step, and the FLOP/byte model."""

    context: int  # S cached positions (the new token attends to S + 1)
    index_topk: int  # k latents the sparse step reads
    dense_ms: float  # best (minimum) ms per token, dense absorbed MLA
    sparse_ms: float  # best ms per token, SparseMLA "gather"
    dense_cost: DecodeCost  # decode_attention_cost(cfg, S): MACs and cache elements read
    sparse_cost: DecodeCost  # decode_attention_cost(cfg, S, k)
    full_topk_max_abs_diff: float  # untimed: |sparse with k ≥ S + 1 − dense|, max over the output
    output_max_abs: float  # max |dense output|, the scale the difference is judged against

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.sparse_ms

    @property
    def full_topk_equal(self) -> bool:
        """With top-k ≥ S + 1 the sparse step gave the dense output, to float32 rounding."""
        return self.full_topk_max_abs_diff <= FULL_TOPK_TOLERANCE * max(self.output_max_abs, 1.0)

    def as_dict(self) -> dict[str, float]:
        """Flat, for a table or a plot: the fields, the speedup and the model's MACs and elements."""
        row = {k: v for k, v in asdict(self).items() if not k.endswith("_cost")}
        for name in ("dense", "sparse"):
            cost = getattr(self, f"{name}_cost")
            row[f"{name}_macs"], row[f"{name}_elements_read"] = cost.macs, cost.elements_read
        row["speedup"], row["full_topk_equal"] = self.speedup, float(self.full_topk_equal)
        return row


FULL_TOPK_TOLERANCE = 1e-4  # relative to the output's scale: float32 rounding of a reordered sum


@torch.inference_mode()
def decode_timings(contexts=CONTEXTS, quick: bool = True, *, cfg: ModelConfig = BENCH_CONFIG,
                   index_topk: int = TOPK, rounds: int | None = None, min_run_time: float | None = None,
                   threads: int | None = THREADS, device=None, seed: int = 0) -> list[DecodeTiming]:
    """Time one decode step of ONE layer at each context, dense MLA and sparse (see the module
    docstring). ``cfg``: the layer's sizes (``BENCH_CONFIG``); ``index_topk``: k, the same at every
    context; ``rounds`` / ``min_run_time``: of ``interleaved`` (default 3 / 0.05 s with ``quick``,
    5 / 0.3 s without); ``threads``: torch CPU threads while timing (None: as now).
    Returns one ``DecodeTiming`` per context, in increasing context order."""
    contexts = sorted({check_int("context", s, min_value=1, where="decode_timings") for s in contexts})
    if not contexts:
        raise ValueError("decode_timings needs at least one context")
    check_int("index_topk", index_topk, min_value=1, where="decode_timings")
    rounds = rounds if rounds is not None else (3 if quick else 5)
    min_run_time = min_run_time if min_run_time is not None else (0.05 if quick else 0.3)
    device = pick_device(device)
    cfg = cfg.replace(index_topk=index_topk, max_seq_len=max(cfg.max_seq_len, contexts[-1] + 1))
    torch.manual_seed(seed)
    layer = SparseMLA(cfg).to(device).eval()
    layer.path = "gather"  # the phase: inference, the default
    cos, sin = rope_tables(cfg.qk_rope_head_dim, contexts[-1] + 1, cfg.rope_theta, device=device)
    # The history, once for the longest context: latents and index keys of random hidden states.
    history = torch.randn(1, contexts[-1], cfg.dim, device=device)
    c_kv, k_pe = layer.latents(history, cos[:contexts[-1]], sin[:contexts[-1]])  # (1, S, Dc), (1, S, Dr)
    k_idx = layer.indexer.keys(history, cos[:contexts[-1]], sin[:contexts[-1]])  # (1, S, d_I)
    del history
    x = torch.randn(1, 1, cfg.dim, device=device)  # the new token's hidden state
    rows = []
    for S in contexts:
        dense_cache, sparse_cache = StaticKVCache(1, S + 1), StaticKVCache(1, S + 1)
        dense_cache.update(0, c_kv[:, :S], k_pe[:, :S])
        sparse_cache.update(0, c_kv[:, :S], k_pe[:, :S], k_idx[:, :S])
        c, s = cos[S:S + 1], sin[S:S + 1]

        def dense(c=c, s=s, cache=dense_cache, S=S):
            out = MLA.forward(layer, x, c, s, cache=cache, mode="absorbed")
            cache.crop(S)
            return out

        def sparse(c=c, s=s, cache=sparse_cache, S=S, k=index_topk):
            out = layer(x, c, s, cache=cache, index_topk=k)
            cache.crop(S)
            return out

        full, reference = sparse(k=S + 1), dense()  # untimed: top-k over everything must be the dense step
        diff = (full - reference).abs().max().item()
        timings = interleaved({"dense": dense, "sparse": sparse}, rounds, min_run_time=min_run_time,
                              threads=threads, cpu_time=device.type == "cpu" and threads == 1)
        rows.append(DecodeTiming(
            context=S, index_topk=index_topk, dense_ms=timings["dense"].min * 1e3,
            sparse_ms=timings["sparse"].min * 1e3, dense_cost=decode_attention_cost(cfg, S),
            sparse_cost=decode_attention_cost(cfg, S, index_topk), full_topk_max_abs_diff=diff,
            output_max_abs=reference.abs().max().item()))
    return rows


def decode_figures(rows: list[DecodeTiming]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in rows:
        at = f"@{r.context}"
        out[f"dsa.dense_ms_per_token{at}"] = r.dense_ms
        out[f"dsa.sparse_ms_per_token{at}"] = r.sparse_ms
        out[f"dsa.decode_speedup{at}"] = r.speedup
    out["dsa.dense_equals_topk_full"] = float(all(r.full_topk_equal for r in rows))
    return out


def run(quick: bool) -> dict[str, float]:
    rows = decode_timings((CONTEXT,) if quick else CONTEXTS, quick, cfg=BENCH_CONFIG, index_topk=TOPK)
    return {**hf_figures(), **decode_figures(rows), **cache_figures(), **model_figures()}
