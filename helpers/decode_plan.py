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

MLA (lesson 03) runs in its absorbed form with the weights folded once more: W_UK, the softmax scale
and ``q_norm``'s gain into one query matrix from the query latent to every head's ``[q_lat | q_pe]``,
W_UV into the output projection, and the block's RMSNorm into ``[wq_a | wkv_a]`` (one product for both
down-projections). DeepSeekMoE (lesson 04) keeps its router as written (``moe.gate``) and, for one
token, gathers its K experts from stacked weights into two batched products.

What it supports: MHA/GQA/MQA and absorbed MLA attention, dense and MoE feed-forward layers, float32.
``DecodePlan.unsupported(model)`` names the first thing that rules a model out (DSA's sparse MLA, an
MLA mode other than absorbed, another dtype); the callers then use the readable path.
Shape letters follow ``docs/GLOSSARY.md``: B batch, T new positions, S cached positions, D width, H
query heads, G K/V heads, Dh head width, I FFN width, Dc/Dr/Dq MLA's latent, RoPE and query-latent
widths, K experts per token.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .layers import derived_weight, stacked_weight
from .validate import check_int


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
    ``start`` cached ones, ``(t, start + t)``; None when one new position sees everything cached.
    Additive rather than boolean: torch's CPU SDPA takes it on its fused path (measured ~1.5x faster
    than a boolean mask for two queries). (The MHA path uses SDPA's own causal flag for a prefill.)"""
    if t == 1:
        return None
    tail = torch.full((t, t), float("-inf"), dtype=like.dtype, device=like.device).triu_(1)
    return F.pad(tail, (start, 0))  # zeros for the cached positions, causal among the new ones


def _rope_tables(rope_cos: torch.Tensor, rope_sin: torch.Tensor, heads: int, value_heads: int = 0):
    """RoPE tables ``(S, heads + value_heads, 2, Dr/2)`` over every head's two halves: cos, and
    sin± = [-sin, sin]; value heads (if any) get cos 1 and sin 0, so they pass unchanged."""
    half = rope_cos.shape[1] // 2
    halves = lambda t: t.view(-1, 1, 2, half)  # noqa: E731  (S, Dr) -> (S, 1, 2, Dr/2)
    signed_sin = torch.cat([-rope_sin[:, :half], rope_sin[:, half:]], dim=1)
    cos = [halves(rope_cos).expand(-1, heads, 2, half)]
    sin = [halves(signed_sin).expand(-1, heads, 2, half)]
    if value_heads:
        cos.append(torch.ones_like(halves(rope_cos)).expand(-1, value_heads, 2, half))
        sin.append(torch.zeros_like(halves(rope_sin)).expand(-1, value_heads, 2, half))
    return torch.cat(cos, 1), torch.cat(sin, 1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start: int, T: int) -> torch.Tensor:
    """x (B, T, n, 2, half) rotated: x·cos + swap(x)·sin±, ``flip(-2)`` swapping each head's halves."""
    return torch.addcmul(x * cos.narrow(0, start, T), x.flip(-2), sin.narrow(0, start, T))


class _LeanMHA:
    """MHA/GQA/MQA attention with its RMSNorm, arranged for the flat step; K and V cache tensors."""

    def __init__(self, block, rope_cos, rope_sin, batch_size: int, max_len: int):
        attn = block.attn
        self.H, self.G, self.Dh = attn.n_heads, attn.n_kv_heads, attn.head_dim
        self.heads = self.H + 2 * self.G  # q, k and v heads side by side
        self.w_qkv = folded_norm_weight(block.attn_norm, attn.wq, attn.wk, attn.wv)  # (D, (H+2G)·Dh)
        self.w_o = stacked_weight(attn, attn.wo)  # (H·Dh, D)
        self.cos, self.sin = _rope_tables(rope_cos, rope_sin, self.H + self.G, self.G)
        self.k, self.v = (self.w_qkv.new_zeros(batch_size, self.G, max_len, self.Dh) for _ in "kv")
        self.eps = scale_eps(self.w_qkv.shape[0], block.attn_norm.eps, self.w_qkv)

    def __call__(self, x: torch.Tensor, B: int, T: int, start: int, mask) -> torch.Tensor:
        """x (B·T, D) → x + attention, writing this step's keys and values at ``start``."""
        H, G, Dh = self.H, self.G, self.Dh
        raw = (x @ self.w_qkv).mul_(row_scale(x, self.eps))  # (B·T, (H+2G)·Dh): RMSNorm, then W
        qkv = _rope(raw.view(B, T, self.heads, 2, Dh // 2), self.cos, self.sin, start, T)
        q, k_new, v_new = qkv.view(B, T, self.heads, Dh).transpose(1, 2).split((H, G, G), dim=1)
        self.k.narrow(2, start, T).copy_(k_new)  # (B, G, T, Dh) into the cache
        self.v.narrow(2, start, T).copy_(v_new)
        k, v = self.k.narrow(2, 0, start + T), self.v.narrow(2, 0, start + T)  # (B, G, S, Dh), views
        if mask is not None and start > 0:  # T new positions after a cached prefix (verification)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=G != H)
        else:  # one new position sees everything cached; a prefill (start 0) is plainly causal
            o = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, enable_gqa=G != H)
        o = o.view(B, H * Dh) if T == 1 else o.transpose(1, 2).reshape(B * T, H * Dh)  # (B·T, H·Dh)
        return torch.addmm(x, o, self.w_o)  # x + attention


def _mla_weights(block) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MLA's absorbed decode as three matrices: ``[wq_a | wkv_a]`` (or ``[wq | wkv_a]``) with the
    block's RMSNorm folded in, (D, Dq + Dc + Dr); the query matrix from ``c_q`` (Dq) to every head's
    ``[q_lat (Dc) | q_pe (Dr)]``, with W_UK, the softmax scale and ``q_norm``'s gain folded in; and W_UV
    folded into ``wo``, (H·Dc, D). Without ``q_lora_rank`` the query matrix is the identity's place
    taken by ``wq`` itself and c_q is x."""
    attn = block.attn
    H, Dn, Dr, Dv, Dc = attn.n_heads, attn.nope_dim, attn.rope_dim, attn.v_dim, attn.kv_lora_rank
    w_uk, w_uv = attn.up_weights()  # (H, Dn, Dc), (H, Dv, Dc)
    if attn.q_lora_rank:
        first = folded_norm_weight(block.attn_norm, attn.wq_a, attn.wkv_a)  # (D, Dq + Dc + Dr)
        wq, gain = attn.wq_b.weight, attn.q_norm.weight * math.sqrt(attn.q_lora_rank)
    else:
        first = folded_norm_weight(block.attn_norm, attn.wkv_a)  # (D, Dc + Dr); q from x below
        g = block.attn_norm.weight
        wq, gain = attn.wq.weight, g * math.sqrt(g.shape[0])
    wq = wq.view(H, Dn + Dr, -1)  # per head: [nope rows; rope rows] of the query projection
    q_lat = torch.einsum("hnq,hnc->qhc", wq[:, :Dn], w_uk)  # (Dq, H, Dc): W_UK folded in
    q_pe = wq[:, Dn:].permute(2, 0, 1)  # (Dq, H, Dr)
    query = torch.cat([q_lat, q_pe], dim=2) * attn.softmax_scale  # (Dq, H, Dc + Dr)
    query = (query.reshape(query.shape[0], -1) * gain[:, None]).contiguous()  # (Dq, H·(Dc + Dr))
    wo = attn.wo.weight.view(-1, H, Dv)  # (D, H, Dv)
    out = torch.einsum("hvc,dhv->hcd", w_uv, wo).reshape(H * Dc, -1).contiguous()  # (H·Dc, D)
    return first, query, out


class _LeanMLA:
    """MLA in its absorbed form with its RMSNorm, arranged for the flat step; the latent cache."""

    def __init__(self, block, rope_cos, rope_sin, batch_size: int, max_len: int):
        attn = block.attn
        self.H, self.Dc, self.Dr = attn.n_heads, attn.kv_lora_rank, attn.rope_dim
        self.Dq = attn.q_lora_rank
        weights = (block.attn_norm.weight, *(p for p in attn.parameters()))
        self.w_first, self.w_query, self.w_out = derived_weight(attn, "plan", weights,
                                                                lambda: _mla_weights(block))
        self.kv_gain = attn.kv_norm.weight * math.sqrt(self.Dc)
        self.cos, self.sin = _rope_tables(rope_cos, rope_sin, 1)  # (S, 1, 2, Dr/2): shared by heads
        self.ckv = self.w_out.new_zeros(batch_size, max_len, self.Dc)  # (B, S, Dc)
        self.kpe = self.w_out.new_zeros(batch_size, max_len, self.Dr)  # (B, S, Dr)
        D = block.attn_norm.weight.shape[0]
        self.eps = scale_eps(D, block.attn_norm.eps, self.w_out)
        # the query's RMSNorm: q_norm over c_q, or (no query latent, c_q = x) the block's own
        self.q_eps = scale_eps(self.Dq, attn.q_norm.eps, self.w_out) if self.Dq else self.eps
        self.kv_eps = scale_eps(self.Dc, attn.kv_norm.eps, self.w_out)

    def __call__(self, x: torch.Tensor, B: int, T: int, start: int, mask) -> torch.Tensor:
        H, Dc, Dr, Dq = self.H, self.Dc, self.Dr, self.Dq
        r = row_scale(x, self.eps)
        first = (x @ self.w_first).mul_(r)  # (B·T, [Dq +] Dc + Dr): RMSNorm, then the down-projections
        c_q = first[:, :Dq] if Dq else x
        c_kv, k_pe = first[:, Dq:Dq + Dc], first[:, Dq + Dc:]
        q = (c_q @ self.w_query).mul_(row_scale(c_q, self.q_eps))  # (B·T, H·(Dc+Dr))
        q = q.view(B, T, H, Dc + Dr)
        q_lat, q_pe = q[..., :Dc], q[..., Dc:]  # W_UK and the softmax scale already applied
        q_pe = _rope(q_pe.unflatten(-1, (2, Dr // 2)), self.cos, self.sin, start, T).flatten(-2)
        c_kv = c_kv.mul(row_scale(c_kv, self.kv_eps)).mul_(self.kv_gain)  # kv_norm
        k_pe = _rope(k_pe.view(B, T, 1, 2, Dr // 2), self.cos, self.sin, start, T).view(B, T, Dr)
        self.ckv.narrow(1, start, T).copy_(c_kv.view(B, T, Dc))
        self.kpe.narrow(1, start, T).copy_(k_pe)
        c, kp = self.ckv.narrow(1, 0, start + T), self.kpe.narrow(1, 0, start + T)  # (B, S, ·)
        # scores over the latents, latents-first as in helpers.mla: (B, S, T·H), then (B, T·H, S)
        scores = torch.baddbmm(kp @ q_pe.reshape(B, T * H, Dr).transpose(1, 2), c,
                               q_lat.reshape(B, T * H, Dc).transpose(1, 2)).transpose(1, 2)
        if mask is not None:  # (T, S) -> one row per (t, h)
            scores = scores + mask.repeat_interleave(H, dim=0)
        o_lat = torch.softmax(scores, dim=-1) @ c  # (B, T·H, Dc)
        return torch.addmm(x, o_lat.view(B * T, H * Dc), self.w_out)  # x + attention (W_UV in wo)


class _LeanDense:
    """A dense SwiGLU feed-forward layer with its RMSNorm."""

    def __init__(self, block):
        ffn = block.ffn
        self.w_13 = folded_norm_weight(block.ffn_norm, ffn.w1, ffn.w3)  # (D, 2I)
        self.w_2 = stacked_weight(ffn, ffn.w2)  # (I, D)
        self.inter = ffn.w1.out_features
        self.eps = scale_eps(self.w_13.shape[0], block.ffn_norm.eps, self.w_13)

    def __call__(self, x: torch.Tensor, B: int, T: int) -> torch.Tensor:
        gate_up = (x @ self.w_13).mul_(row_scale(x, self.eps))  # (B·T, 2I): RMSNorm, then [W1; W3]
        gate, up = gate_up.split(self.inter, dim=1)
        return torch.addmm(x, F.silu(gate).mul_(up), self.w_2)  # x + SwiGLU


def _stacked_experts(moe) -> tuple[torch.Tensor, torch.Tensor]:
    """Every routed expert's ``[w1; w3]`` as (E, D, 2I) and ``w2`` as (E, I, D), transposed."""
    w13 = torch.stack([torch.cat([e.w1.weight, e.w3.weight]).t() for e in moe.experts])
    w2 = torch.stack([e.w2.weight.t() for e in moe.experts])
    return w13.contiguous(), w2.contiguous()


class _LeanMoE:
    """A DeepSeekMoE layer with its RMSNorm: the router as written (``moe.gate``), then for one token
    its K chosen experts gathered from stacked weights and run as two batched products, the gates
    weighting their sum inside the residual ``addmm``; the shared expert as a dense SwiGLU. More than
    one token at once (a prefill, a batch) takes the readable layer."""

    def __init__(self, block):
        moe = block.ffn
        self.moe, self.norm = moe, block.ffn_norm
        weights = tuple(p for e in moe.experts for p in (e.w1.weight, e.w3.weight, e.w2.weight))
        self.w13, self.w2 = derived_weight(moe, "experts", weights, lambda: _stacked_experts(moe))
        self.inter = moe.cfg.moe_inter_dim
        self.gain = block.ffn_norm.weight * math.sqrt(self.w13.shape[1])
        self.eps = scale_eps(self.w13.shape[1], block.ffn_norm.eps, self.w13)
        shared = moe.shared_experts
        self.s13 = None if shared is None else stacked_weight(shared, shared.w1, shared.w3)  # (D, 2Is)
        self.s2 = None if shared is None else stacked_weight(shared, shared.w2)  # (Is, D)

    def __call__(self, x: torch.Tensor, B: int, T: int) -> torch.Tensor:
        if x.shape[0] != 1:  # the readable layer: x + MoE(RMSNorm(x))
            return x + self.moe(self.norm(x.view(B, T, -1))).out.view(B * T, -1)
        h = x.mul(row_scale(x, self.eps)).mul_(self.gain)  # (1, D): RMSNorm
        route = self.moe.gate(h)  # indices (1, K), gate weights (1, K)
        chosen = route.indices[0]
        gate_up = torch.bmm(h.expand(chosen.shape[0], 1, -1), self.w13.index_select(0, chosen))  # (K, 1, 2I)
        act = F.silu(gate_up[..., :self.inter]).mul_(gate_up[..., self.inter:])  # (K, 1, I)
        outs = torch.bmm(act, self.w2.index_select(0, chosen)).view(chosen.shape[0], -1)  # (K, D)
        x = torch.addmm(x, route.weights.to(x.dtype), outs)  # x + Σ_k g_k · expert_k
        if self.s13 is not None:
            gate, up = (h @ self.s13).split(self.s2.shape[0], dim=1)
            x = torch.addmm(x, F.silu(gate).mul_(up), self.s2)  # + the shared expert
        return x


class _LeanBlock:
    """One block: its attention (MHA family or absorbed MLA) and its feed-forward layer (dense or MoE),
    each with its RMSNorm and residual, arranged for the flat step."""

    def __init__(self, block, rope_cos: torch.Tensor, rope_sin: torch.Tensor, batch_size: int,
                 max_len: int):
        kind = _LeanMLA if type(block.attn).__name__ == "MLA" else _LeanMHA
        self.attn = kind(block, rope_cos, rope_sin, batch_size, max_len)
        self.ffn = _LeanMoE(block) if block.is_moe else _LeanDense(block)

    def __call__(self, x: torch.Tensor, B: int, T: int, start: int, mask) -> torch.Tensor:
        """x (B·T, D) → (B·T, D), writing this step's cache entries at ``start``."""
        return self.ffn(self.attn(x, B, T, start, mask), B, T)


def _unsupported_block(block) -> str | None:
    kind = type(block.attn).__name__
    if kind not in ("Attention", "MLA"):
        return f"its attention is {kind} (the plan covers MHA/GQA/MQA and MLA)"
    if kind == "MLA" and block.attn.mode != "absorbed":
        return f"its MLA runs in mode {block.attn.mode!r} (the plan covers the absorbed mode)"
    return None


class _Positions:
    """How many positions a plan's caches hold (``length``) out of ``max_len``, and the rollback."""

    def __init__(self, max_len: int):
        self.max_len, self.length = max_len, 0

    def _room_for(self, n: int) -> int:
        """The start position of ``n`` new positions, refused if they would not fit."""
        if self.length + n > self.max_len:
            raise ValueError(f"{type(self).__name__} holds {self.max_len} positions: {self.length} cached + "
                             f"{n} new")
        return self.length

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on (a rejected draft)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"crop length={length} outside [0, {self.length}]")
        self.length = length


class DecodePlan(_Positions):
    """A model's decode loop state for one request: pre-arranged weights and a cache of ``max_len``
    positions for ``batch_size`` sequences. ``step(idx)`` runs new positions and returns the last
    block's output; ``logits(hidden)`` applies the final norm and the head."""

    def __init__(self, model, batch_size: int, max_len: int):
        reason = self.unsupported(model)
        if reason is not None:
            raise ValueError(f"DecodePlan does not cover this model: {reason}; use the readable path "
                             "(helpers.generate picks it by itself)")
        cfg = model.config
        check_int("batch_size", batch_size, min_value=1, where="DecodePlan")
        check_int("max_len", max_len, min_value=1, max_value=cfg.max_seq_len, where="DecodePlan")
        super().__init__(max_len)
        cos, sin = model.rope_cos[:max_len], model.rope_sin[:max_len]  # the positions this plan holds
        self.blocks = [_LeanBlock(b, cos, sin, batch_size, max_len)
                       for b in model.layers]
        self.emb = model.tok_emb.weight
        self.head = folded_norm_weight(model.norm, model.head)  # (D, V): the final RMSNorm, then the head
        self.eps = scale_eps(cfg.dim, cfg.norm_eps, self.head)

    @staticmethod
    def unsupported(model) -> str | None:
        """Why the plan cannot run ``model`` (a sentence), or None when it can."""
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
        start = self._room_for(T)
        mask = causal_bias(T, start, self.emb)
        x = F.embedding(idx.reshape(-1), self.emb)  # (B·T, D)
        for block in self.blocks:
            x = block(x, B, T, start, mask)
        self.length = start + T
        return x.view(B, T, -1)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (N, D) → logits (N, V): the final RMSNorm and the head."""
        return (hidden @ self.head).mul_(row_scale(hidden, self.eps))

class DraftPlan(_Positions):
    """MTP module 1 of a model, arranged the same way, for self-speculative drafting: ``draft(hidden,
    tokens)`` equals ``model.mtp.draft_logits(model, hidden, tokens, cache)``'s last position."""

    def __init__(self, model, max_len: int):
        reason = self.unsupported(model)
        if reason is not None:
            raise ValueError(f"DraftPlan does not cover this model: {reason}")
        check_int("max_len", max_len, min_value=1, max_value=model.config.max_seq_len, where="DraftPlan")
        module = model.mtp.layers._modules["0"]
        super().__init__(max_len)
        self.norm_eps = model.config.norm_eps
        self.hnorm, self.enorm = module.hnorm.weight, module.enorm.weight
        self.proj = stacked_weight(module, module.proj)  # (2D, D)
        self.block = _LeanBlock(module.block, model.rope_cos[:max_len], model.rope_sin[:max_len], 1, max_len)
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
        n, D = hidden.shape[1], hidden.shape[-1]
        start = self._room_for(n)
        h = F.rms_norm(hidden.reshape(n, D), (D,), self.hnorm, self.norm_eps)
        e = F.rms_norm(F.embedding(tokens_ahead.reshape(-1), self.emb), (D,), self.enorm, self.norm_eps)
        x = torch.cat([h, e], dim=1) @ self.proj  # (n, D): M_1 [h ; Emb]
        mask = causal_bias(n, start, hidden)
        x = self.block(x, 1, n, start, mask)
        self.length = start + n
        last = x[-1:]  # (1, D)
        return (last @ self.head).mul_(row_scale(last, self.eps))[0]
