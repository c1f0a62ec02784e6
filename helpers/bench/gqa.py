"""Lesson 02 figures: the K/V cache per token and the decode time per token at a long context, for
grouped-query attention with G = H (MHA), H/2, H/4 and 1 (MQA) K/V heads (Ainslie et al. 2023).

Figures (G is the number of K/V heads, written ``G=<n>``):

- ``gqa.cache_bytes_per_token[G=8]`` … ``[G=1]``: bytes the cache tensors hold per cached token after
  a prefill, ``cache.nbytes() / cache.length`` (batch of one, float32; 2·l·G·Dh·4 by the formula).
- ``gqa.decode_ms_per_token@4096[G=8]`` … ``[G=1]``: milliseconds for one single-token decode step
  whose query attends over a 4096-token cache (the best (minimum) round, each round a block of timed
  steps averaged; the model's default fused SDPA path).
- ``gqa.decode_speedup@4096[G=4]`` … ``[G=1]``: decode time of G = H divided by that of G, measured
  side by side in the same run (the claim the lesson makes; a ratio is steadier than a time).

Model: the ``small`` preset (D=256, 4 layers, H=8, Dh=32), a CPU-friendly width, with
``max_seq_len`` raised to the context plus the decode steps. Each G gets its own seeded model; the
prompt is prefilled once into a pre-allocated ``StaticKVCache``; every timed step decodes one token at
position 4096 and then crops the cache back to 4096 tokens, so every step sees the same context.
The G values are timed round-robin (``helpers.timing.interleaved``: one block of steps per G per
round) so that load changes on a shared machine hit them all alike. Quick mode keeps the 4096 context
and takes fewer steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import preset
from ..model import Transformer
from ..timing import interleaved

CONTEXT = 4096
KV_HEADS = (8, 4, 2, 1)  # G = H, H/2, H/4, 1 for the small preset's H = 8


@dataclass
class DecodeSetup:
    n_kv_heads: int  # G
    model: Transformer
    cache: object  # a StaticKVCache holding the prefilled context
    token: torch.Tensor  # (1, 1) the token each timed step decodes
    context: int

    def step(self) -> None:
        """Decode one token at position ``context``, then forget it again."""
        self.model(self.token, cache=self.cache)
        self.cache.crop(self.context)


@torch.inference_mode()
def prepare(n_kv_heads: int, context: int = CONTEXT, seed: int = 0, device=None,
            **changes) -> DecodeSetup:
    """A seeded small-preset model (``changes`` alter its config) with ``n_kv_heads`` K/V heads on
    ``device`` (default CPU) and its cache prefilled with ``context`` random tokens."""
    torch.manual_seed(seed)
    cfg = preset("small", n_kv_heads=n_kv_heads, max_seq_len=context + 1, **changes)
    model = Transformer(cfg).to(device or "cpu").eval()
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, cfg.vocab_size, (1, context + 1), generator=gen).to(model.device)
    cache = model.new_cache(static=True, max_len=context + 1)
    model(idx[:, :context], cache=cache)  # the prefill
    return DecodeSetup(n_kv_heads, model, cache, idx[:, context:], context)


@torch.inference_mode()
def decode_ms(setups: list[DecodeSetup], rounds: int, steps: int) -> dict[int, float]:
    """Decode time of one step in ms per G: the setups take turns for ``rounds`` rounds, each turn a
    block of ``steps`` timed steps (``interleaved``, which synchronises the accelerator); the best
    (minimum) round per G."""
    timings = interleaved({s.n_kv_heads: s.step for s in setups}, rounds=rounds, number=steps)
    return {g: t.min * 1e3 for g, t in timings.items()}


def run(quick: bool) -> dict[str, float]:
    setups = [prepare(g) for g in KV_HEADS]
    results: dict[str, float] = {}
    for s in setups:
        results[f"gqa.cache_bytes_per_token[G={s.n_kv_heads}]"] = s.cache.nbytes() / s.cache.length
    ms = decode_ms(setups, rounds=4 if quick else 8, steps=10 if quick else 25)
    for g in KV_HEADS:
        results[f"gqa.decode_ms_per_token@{CONTEXT}[G={g}]"] = ms[g]
    for g in KV_HEADS[1:]:
        results[f"gqa.decode_speedup@{CONTEXT}[G={g}]"] = ms[KV_HEADS[0]] / ms[g]
    return results
