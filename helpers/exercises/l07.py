"""Lesson 07 exercises: the lightning indexer's score, what a DSA decode step reads, and the indexer's
KL target. Reference solutions are in ``tests/test_exercises.py``."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..dsa import decode_attention_cost, indexer_kl
from . import Checked, call_or_none, not_attempted, report


def _reference_scores(q: torch.Tensor, k: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    T, S = q.shape[0], k.shape[0]
    per_head = torch.relu(torch.einsum("tjd,sd->tjs", q, k) / q.shape[-1] ** 0.5)  # (T, H_I, S)
    scores = torch.einsum("tj,tjs->ts", w, per_head)  # (T, S)
    q_pos = torch.arange(S - T, S).unsqueeze(1)
    return scores.masked_fill(torch.arange(S).unsqueeze(0) > q_pos, float("-inf"))


def _same_scores(a, b: torch.Tensor) -> bool:
    """Equal where finite, -inf exactly where the reference has it."""
    if not (torch.is_tensor(a) and a.shape == b.shape):
        return False
    finite = torch.isfinite(b)
    return torch.equal(torch.isneginf(a), ~finite) and torch.allclose(a[finite].float(), b[finite], atol=1e-5)


def _cases():
    gen = torch.Generator().manual_seed(0)
    out = []
    for T, S, H, d in [(5, 5, 3, 8), (3, 9, 4, 16), (1, 7, 2, 8)]:
        q, k = torch.randn(T, H, d, generator=gen), torch.randn(S, d, generator=gen)
        w = torch.randn(T, H, generator=gen) * H ** -0.5
        out.append((q, k, w))
    return out


def check_index_scores(fn) -> Checked:
    """``fn(q (T, H_I, d_I), k (S, d_I), w (T, H_I))`` → I (T, S) = Σ_j w·ReLU(q·k/√d_I), future at -inf."""
    name = "lightning-indexer scores"
    cases = _cases()
    answers = [call_or_none(fn, *c) for c in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    want = [_reference_scores(*c) for c in cases]
    ok = all(_same_scores(a, b) for a, b in zip(answers, want))
    hint = ""
    if not ok:
        q, k, w = cases[0]
        a = answers[0]
        no_relu = torch.einsum("tj,tjs->ts", w, torch.einsum("tjd,sd->tjs", q, k) / q.shape[-1] ** 0.5)
        if torch.is_tensor(a) and a.shape == no_relu.shape and torch.allclose(
                torch.nan_to_num(a.tril(), neginf=0.0), no_relu.tril(), atol=1e-5):
            hint = "apply the ReLU to each head's q·k before weighting and summing the heads"
        elif torch.is_tensor(a) and not torch.isinf(a).any():
            hint = "mask the future: key s is visible to query t only if s ≤ t's position (S − T + t)"
        else:
            hint = "per head j: ReLU(q[t, j] · k[s] / √d_I), times w[t, j], summed over j"
    return report(ok, name, hint)


READS_CASES = [(ModelConfig(attn_type="mla", q_lora_rank=32, kv_lora_rank=32, qk_rope_head_dim=8,
                            index_n_heads=4, index_head_dim=16), 1000, 64),
               (ModelConfig(attn_type="mla", q_lora_rank=1536, dim=2048, n_heads=16, kv_lora_rank=512,
                            qk_rope_head_dim=64, qk_nope_head_dim=128, v_head_dim=128, index_n_heads=8,
                            index_head_dim=128), 16384, 256),
               (ModelConfig(attn_type="mla", q_lora_rank=32, kv_lora_rank=32, qk_rope_head_dim=8,
                            index_n_heads=4, index_head_dim=16), 10, 64)]


def check_decode_reads(fn) -> Checked:
    """``fn(cfg, context, k)`` → cached numbers one DSA decode step reads per layer: the S index keys
    and min(k, S) latents with their RoPE keys."""
    name = "cached numbers read by one DSA decode step"
    answers = [call_or_none(fn, *c) for c in READS_CASES]
    if any(a is None for a in answers):
        return not_attempted(name)
    want = [decode_attention_cost(*c).elements_read for c in READS_CASES]
    ok = all(isinstance(a, (int, float)) and abs(a - b) < 1e-6 for a, b in zip(answers, want))
    hint = ""
    if not ok:
        cfg, S, k = READS_CASES[0]
        a = answers[0]
        if a == k * (cfg.kv_lora_rank + cfg.qk_rope_head_dim):
            hint = "the indexer reads every cached index key too: S · d_I"
        elif answers[2] == (READS_CASES[2][2] * (cfg.kv_lora_rank + cfg.qk_rope_head_dim)
                            + READS_CASES[2][1] * cfg.index_head_dim):
            hint = "when the context is shorter than k, only S latents exist to read: min(k, S)"
        else:
            hint = "S · d_I (index keys) + min(k, S) · (Dc + Dr) (latents and RoPE keys)"
    return report(ok, name, hint)


def check_indexer_kl(fn) -> Checked:
    """``fn(p (T, S), scores (T, S), keep (T, S) bool)`` → mean over queries of KL(p_t ‖ softmax(I_t)),
    both restricted to ``keep``."""
    name = "the indexer's KL target"
    gen = torch.Generator().manual_seed(1)
    cases = []
    for T, S in [(4, 6), (3, 8)]:
        p = torch.rand(T, S, generator=gen).tril(S - T)
        p = p / p.sum(-1, keepdim=True)
        scores = torch.randn(T, S, generator=gen)
        keep = torch.rand(T, S, generator=gen) > 0.3
        keep[torch.arange(T), torch.arange(S - T, S)] = True  # each query keeps at least itself
        keep = keep & torch.ones(T, S, dtype=torch.bool).tril(S - T)
        cases.append((p, scores, keep))
    answers = [call_or_none(fn, *c) for c in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    want = [indexer_kl(p.unsqueeze(0), s.unsqueeze(0), k.unsqueeze(0)) for p, s, k in cases]
    ok = all(torch.is_tensor(a) and a.numel() == 1 and abs(a.item() - b.item()) < 1e-5
             for a, b in zip(answers, want))
    hint = ""
    if not ok:
        p, s, k = cases[0]
        a = answers[0]
        causal = torch.ones_like(k).tril(p.shape[1] - p.shape[0])
        full = indexer_kl(p.unsqueeze(0), s.unsqueeze(0), causal.unsqueeze(0))
        if torch.is_tensor(a) and a.numel() == 1 and abs(a.item() - full.item()) < 1e-5:
            hint = ("restrict both distributions to keep: mask the scores with -inf and renormalise p "
                    "over keep")
        else:
            hint = ("KL(p‖q) = Σ p·(log p − log q), with q = log_softmax of the masked scores; 0·log 0 "
                    "counts as 0")
    return report(ok, name, hint)
