"""The decode step of a dense model written as one flat function over pre-arranged weights (lesson 01's
fast path; ``helpers.generate`` and ``helpers.speculative`` take it where it applies).

Why it exists. A cached decode step of a small model does very little arithmetic: for the ``tiny``
preset each step multiplies one row vector by a few 96-wide matrices. What costs time is the framework:
every operator call is a trip through Python and PyTorch's dispatcher (a few microseconds each), and the
readable model makes a lot of them: module calls, RoPE as split-negate-concatenate, separate K and V
cache writes, result objects. ``helpers.bench.kv.decode_step_profile`` shows where a step's time goes
(lesson 01 prints it). This module does the *same arithmetic* with fewer, cheaper operator calls, and
nothing else. It is tested equal to the readable model (``tests/test_decode_plan.py``: the same logits
to float rounding and the same greedy and sampled tokens for MHA, GQA, MQA, batches and prompts of
every length, and the same MTP drafts), so a learner reads the model in ``helpers.model`` and trusts this
one by its tests.

What it changes, each a rearrangement of the weights done once before the loop:

1. **RMSNorm folded into the product that follows it.** ``RMSNorm(x) @ W = r(x) · (x @ (g ⊙ W))``:
   the gain ``g`` multiplies the rows of ``W`` once, and a step computes only each row's scale
   ``r(x) = 1/√(mean(x²) + ε)`` (one ``vecdot`` and two scalar operators). ``F.rms_norm`` on the CPU
   is a composite of about eight operator calls (casts, power, mean, ...), the single most expensive
   piece of the readable step.
2. **RoPE as two element-wise calls.** ``rotate_half(x) · sin`` equals ``swap(x) · sin±``, where
   ``swap`` exchanges the two halves of every head (one ``flip`` of a view) and ``sin± = [−sin, sin]``
   (made once). So RoPE is ``addcmul(x · cos, swap(x), sin±)`` over all heads at once. The value
   columns get cos 1 and sin 0, so they pass unchanged: q, k and v stay in one tensor.
3. **Pre-allocated K and V tensors per layer**, ``(B, G, S, Dh)`` each, written in place; attention
   reads the cached history through views (no copy). (One sequence-major tensor for both, written with
   a single copy, was tried: SDPA then reads keys and values with a stride and ran ~35% slower at 512
   positions, more than the saved copy.)
4. **Residual adds fused into the output products** (``torch.addmm(x, o, Wo)`` is ``x + o @ Wo``).
5. **Weights stored transposed**, ``(in, out)`` (``helpers.layers.stacked_weight``'s reason), and the
   activations kept as ``(B·T, D)`` rows so every product is a plain 2-D one.

What it supports: ``attn_type="mha"`` (any number of K/V heads), dense feed-forward layers, float32.
``DecodePlan.unsupported(model)`` names the first thing that rules a model out (MLA, MoE, another
dtype); the callers then use the readable path. Shape letters follow ``docs/GLOSSARY.md``: B batch, T new
positions, S cached positions, D width, H query heads, G K/V heads, Dh head width, I FFN width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .layers import derived_weight, stacked_weight


def folded_norm_weight(norm, *linears) -> torch.Tensor:
    """``(in, Σ out)``: the transposed, stacked weights of ``linears`` with the rows multiplied by the
    norm's gain times ``√in``, so that ``row_scale(x) · (x @ folded) = RMSNorm(x) @ Wᵀ``."""
    gain, weights = norm.weight, tuple(lin.weight for lin in linears)

    def build():
        return (torch.cat(weights).t() * (gain * math.sqrt(gain.shape[0]))[:, None]).contiguous()

    return derived_weight(norm, "folded", (gain, *weights), build)


def row_scale(x: torch.Tensor, d_eps: torch.Tensor) -> torch.Tensor:
    """(N, D) → (N, 1): ``1/√(Σx² + D·ε)``, which is RMSNorm's ``1/√(mean(x²) + ε)`` over ``√D`` (the
    ``√D`` lives in ``folded_norm_weight``). ``d_eps``: the scalar tensor ``D·ε`` (``scale_eps``), made
    once, so that this is three operator calls."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)  # √Σx²
    return torch.addcmul(d_eps, norm, norm).rsqrt_()


def scale_eps(width: int, eps: float, like: torch.Tensor) -> torch.Tensor:
    """The scalar tensor ``D·ε`` that ``row_scale`` adds."""
    return torch.tensor(width * eps, dtype=like.dtype, device=like.device)


def causal_bias(t: int, start: int, like: torch.Tensor) -> torch.Tensor | None:
    """The additive mask (0 where a query may look, −inf where not) for ``t`` new positions after
    ``start`` cached ones, ``(t, start + t)``; None when none is needed (one new position, or a prefill,
    where SDPA's own causal flag applies). Additive rather than boolean: torch's CPU SDPA takes it on
    its fused path (measured ~1.5x faster than a boolean mask for two queries)."""
    if t == 1 or start == 0:
        return None
    tail = torch.full((t, t), float("-inf"), dtype=like.dtype, device=like.device).triu_(1)
    return F.pad(tail, (start, 0))  # zeros for the cached positions, causal among the new ones


class _LeanBlock:
    """One dense block's weights, arranged for the flat step, and its K and V cache tensors."""

    def __init__(self, block, rope_cos: torch.Tensor, rope_sin: torch.Tensor, batch_size: int,
                 max_len: int):
        attn, ffn = block.attn, block.ffn
        self.H, self.G, self.Dh = attn.n_heads, attn.n_kv_heads, attn.head_dim
        self.heads = self.H + 2 * self.G  # q, k and v heads side by side
        self.w_qkv = folded_norm_weight(block.attn_norm, attn.wq, attn.wk, attn.wv)  # (D, (H+2G)·Dh)
        self.w_o = stacked_weight(attn, attn.wo)  # (H·Dh, D)
        self.w_13 = folded_norm_weight(block.ffn_norm, ffn.w1, ffn.w3)  # (D, 2I)
        self.w_2 = stacked_weight(ffn, ffn.w2)  # (I, D)
        self.inter = ffn.w1.out_features
        # RoPE tables (S, H + 2G, 2, Dh/2) over every head's two halves: cos, and sin± = [-sin, sin];
        # the value heads get cos 1 and sin 0 (left unchanged)
        half, n_qk = self.Dh // 2, self.H + self.G
        halves = lambda t: t.view(-1, 1, 2, half)  # noqa: E731  (S, Dh) -> (S, 1, 2, Dh/2)
        signed_sin = torch.cat([-rope_sin[:, :half], rope_sin[:, half:]], dim=1)
        self.cos = torch.cat([halves(rope_cos).expand(-1, n_qk, 2, half),
                              torch.ones_like(halves(rope_cos)).expand(-1, self.G, 2, half)], 1)
        self.sin = torch.cat([halves(signed_sin).expand(-1, n_qk, 2, half),
                              torch.zeros_like(halves(rope_sin)).expand(-1, self.G, 2, half)], 1)
        self.k, self.v = (self.w_qkv.new_zeros(batch_size, self.G, max_len, self.Dh) for _ in "kv")
        self.eps = scale_eps(self.w_qkv.shape[0], block.attn_norm.eps, self.w_qkv)

    def __call__(self, x: torch.Tensor, B: int, T: int, start: int, mask) -> torch.Tensor:
        """x (B·T, D) → (B·T, D), writing this step's keys and values at ``start``."""
        H, G, Dh = self.H, self.G, self.Dh
        raw = (x @ self.w_qkv).mul_(row_scale(x, self.eps))  # (B·T, (H+2G)·Dh): RMSNorm, then W
        raw = raw.view(B, T, self.heads, 2, Dh // 2)  # every head's two halves
        # RoPE: x·cos + swap(x)·sin±, where flip(-2) swaps each head's halves
        qkv = torch.addcmul(raw * self.cos.narrow(0, start, T), raw.flip(-2), self.sin.narrow(0, start, T))
        q, k_new, v_new = qkv.view(B, T, self.heads, Dh).transpose(1, 2).split((H, G, G), dim=1)
        self.k.narrow(2, start, T).copy_(k_new)  # (B, G, T, Dh) into the cache
        self.v.narrow(2, start, T).copy_(v_new)
        k, v = self.k.narrow(2, 0, start + T), self.v.narrow(2, 0, start + T)  # (B, G, S, Dh), views
        if mask is not None:  # T new positions after a cached prefix (speculative verification)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=G != H)
        else:  # one new position sees everything cached; a prefill (start 0) is plainly causal
            o = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, enable_gqa=G != H)
        o = o.view(B, H * Dh) if T == 1 else o.transpose(1, 2).reshape(B * T, H * Dh)  # (B·T, H·Dh)
        x = torch.addmm(x, o, self.w_o)  # x + attention
        gate_up = (x @ self.w_13).mul_(row_scale(x, self.eps))  # (B·T, 2I): RMSNorm, then [W1; W3]
        gate, up = gate_up.split(self.inter, dim=1)
        return torch.addmm(x, F.silu(gate).mul_(up), self.w_2)  # x + SwiGLU


def _unsupported_block(block) -> str | None:
    if type(block.attn).__name__ != "Attention":
        return f"its attention is {type(block.attn).__name__} (the plan covers MHA/GQA/MQA)"
    if block.is_moe:
        return "it has MoE layers (the plan covers dense feed-forward layers)"
    return None


class DecodePlan:
    """A model's decode loop state for one request: pre-arranged weights and a cache of ``max_len``
    positions for ``batch_size`` sequences. ``step(idx)`` runs new positions and returns the last
    block's output; ``logits(hidden)`` applies the final norm and the head."""

    def __init__(self, model, batch_size: int, max_len: int):
        reason = self.unsupported(model)
        if reason is not None:
            raise ValueError(f"DecodePlan does not cover this model: {reason}; use the readable path "
                             "(helpers.generate picks it by itself)")
        cfg = model.config
        self.model, self.B, self.max_len, self.length = model, batch_size, max_len, 0
        self.blocks = [_LeanBlock(b, model.rope_cos, model.rope_sin, batch_size, max_len)
                       for b in model.layers]
        self.emb = model.tok_emb.weight
        self.head = folded_norm_weight(model.norm, model.head)  # (D, V): the final RMSNorm, then the head
        self.eps = scale_eps(cfg.dim, cfg.norm_eps, self.head)

    @staticmethod
    def unsupported(model) -> str | None:
        """Why the plan cannot run ``model`` (a sentence), or None when it can."""
        cfg = model.config
        if cfg.attn_type != "mha":
            return f"attn_type={cfg.attn_type!r} (the plan covers 'mha': MHA, GQA and MQA)"
        if model.tok_emb.weight.dtype != torch.float32:
            return f"its weights are {model.tok_emb.weight.dtype} (the plan covers float32)"
        for block in model.layers:
            reason = _unsupported_block(block)
            if reason is not None:
                return reason
        return None

    def step(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) new token ids → the last block's output (B, T, D) (before the final norm)."""
        B, T = idx.shape
        start = self.length
        if start + T > self.max_len:
            raise ValueError(f"DecodePlan holds {self.max_len} positions: {start} cached + {T} new")
        mask = causal_bias(T, start, self.emb)
        x = F.embedding(idx.reshape(-1), self.emb)  # (B·T, D)
        for block in self.blocks:
            x = block(x, B, T, start, mask)
        self.length = start + T
        return x.view(B, T, -1)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (N, D) → logits (N, V): the final RMSNorm and the head."""
        return (hidden @ self.head).mul_(row_scale(hidden, self.eps))

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on (a rejected draft)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"crop length={length} outside [0, {self.length}]")
        self.length = length


class DraftPlan:
    """MTP module 1 of a model, arranged the same way, for self-speculative drafting: ``draft(hidden,
    tokens)`` equals ``model.mtp.draft_logits(model, hidden, tokens, cache)``'s last position."""

    def __init__(self, model, max_len: int):
        reason = self.unsupported(model)
        if reason is not None:
            raise ValueError(f"DraftPlan does not cover this model: {reason}")
        module = model.mtp.layers._modules["0"]
        self.model, self.max_len, self.length = model, max_len, 0
        self.norm_eps = model.config.norm_eps
        self.hnorm, self.enorm = module.hnorm.weight, module.enorm.weight
        self.proj = stacked_weight(module, module.proj)  # (2D, D)
        self.block = _LeanBlock(module.block, model.rope_cos, model.rope_sin, 1, max_len)
        self.emb = model.tok_emb.weight
        self.head = folded_norm_weight(module.norm, model.head)  # the module's own norm, the shared head
        self.eps = scale_eps(model.config.dim, model.config.norm_eps, self.head)

    @staticmethod
    def unsupported(model) -> str | None:
        """Why the plan cannot draft for ``model`` (a sentence), or None when it can."""
        if getattr(model, "mtp", None) is None:
            return "it has no MTP module"
        reason = DecodePlan.unsupported(model)
        return reason or _unsupported_block(model.mtp.layers._modules["0"].block)

    def draft(self, hidden: torch.Tensor, tokens_ahead: torch.Tensor) -> torch.Tensor:
        """hidden (1, n, D) main-model outputs, tokens_ahead (1, n) → (V,) logits for the token after
        next at the last of those positions; the module's cache advances by n."""
        n, start, D = hidden.shape[1], self.length, hidden.shape[-1]
        if start + n > self.max_len:
            raise ValueError(f"DraftPlan holds {self.max_len} positions: {start} cached + {n} new")
        h = F.rms_norm(hidden.reshape(n, D), (D,), self.hnorm, self.norm_eps)
        e = F.rms_norm(F.embedding(tokens_ahead.reshape(-1), self.emb), (D,), self.enorm, self.norm_eps)
        x = torch.cat([h, e], dim=1) @ self.proj  # (n, D): M_1 [h ; Emb]
        mask = causal_bias(n, start, hidden)
        x = self.block(x, 1, n, start, mask)
        self.length = start + n
        last = x[-1:]  # (1, D)
        return (last @ self.head).mul_(row_scale(last, self.eps))[0]

    def crop(self, length: int) -> None:
        """Forget the module's positions from ``length`` on."""
        if not 0 <= length <= self.length:
            raise ValueError(f"crop length={length} outside [0, {self.length}]")
        self.length = length
