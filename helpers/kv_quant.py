"""Compressing the KV cache the blunt way: int8 keys and values (lesson 01, section 6).

Symmetric absmax quantisation: a block of numbers shares one scale ``s = max|x| / qmax`` (``qmax = 127``
for 8 bits), is stored as ``q = round(x / s)`` in int8 and read back as ``q · s``. Rounding moves each
number by at most ``s / 2``, so the error is bounded by half a step of the block it sits in.

Which numbers share a scale matters (KIVI, Liu et al. 2024, arXiv 2402.02750, §3):

- **Keys per channel.** A few key channels carry much larger magnitudes than the rest, at every
  position (RoPE rotates channel pairs at fixed frequencies, and the projections leave some channels
  large). One scale per *token* would be set by those outlier channels and would round the small
  channels to a handful of levels; one scale per *channel* gives each channel a step fitted to it.
  A streaming cache cannot know a channel's range over future tokens, so keys are quantised in groups
  of ``group_size`` tokens (one scale per channel per group); the newest ``< group_size`` keys wait in
  full precision (the "residual") until their group is complete.
- **Values per token.** Values have no outlier channels, and the attention output is a weighted mix of
  value *rows*, so the error that matters is per row: one scale per token, quantised on arrival.

``quantize`` returns the integers as int8, one per number, which is easy to read and to check.
``QuantizedKVCache`` stores them the way a real low-bit cache would: ``pack`` puts 2-bit values four to
a byte and 3- or 4-bit values two to a byte (a 3-bit value sits in a 4-bit field); 5 to 8 bits stay one
int8 each (they do not divide a byte, and packing them across bytes would gain at most 3/8). ``unpack``
is the exact inverse. ``update`` hands attention the dequantised tensors: memory shrinks, arithmetic
stays in floating point. ``nbytes()`` counts what the cache really holds: the (packed) payload, the
scales and the full-precision residual. The measuring functions below report the error this
introduces in the tensors, in attention outputs and in next-token predictions.

Shape letters (``docs/GLOSSARY.md``): B batch, G KV heads, S cached positions, Dh head width, R group
size (tokens per key scale). In ``pack``/``unpack``: w bits per stored field (``field_bits``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .attention import attend
from .kv_cache import SEQ_DIM, KVCache
from .validate import InputTypeError, check_int

AXES = ("token", "channel")


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise InputTypeError(f"bits={bits!r} must be an int in [2, 8], got {type(bits).__name__}")
    if not 2 <= bits <= 8:
        raise ValueError(f"bits={bits!r} must be an int in [2, 8]")
    return bits


def _qmax(bits: int) -> int:
    return 2 ** (_check_bits(bits) - 1) - 1


def field_bits(bits: int) -> int:
    """Bits one stored value takes in the cache (w): 2 for 2-bit values (four per byte), 4 for 3- and
    4-bit values (two per byte; a 3-bit value leaves one bit unused), 8 for 5 to 8 bits (one int8 each)."""
    bits = _check_bits(bits)
    return 2 if bits == 2 else 4 if bits <= 4 else 8


def pack(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack the int8 values of a ``bits``-bit quantisation into bytes, along the last dim.

    With w = ``field_bits(bits)`` < 8, a value v in [-2^(w-1), 2^(w-1) - 1] is stored as the unsigned
    w-bit number v + 2^(w-1) (offset binary); 8 / w of them share a byte, the first in the lowest bits.
    A row of Dh values becomes ceil(Dh · w / 8) bytes: when Dh is not a multiple of 8 / w, the last
    byte of every row is padded with zero bits, and that byte is stored (and counted by ``nbytes``) like
    any other. For w = 8 (5- to 8-bit values) ``q`` is returned as it is. ``unpack`` is the inverse.

    q: int8 (..., Dh)  ->  uint8 (..., ceil(Dh · w / 8)), or int8 (..., Dh) unchanged for w = 8.
    """
    w = field_bits(bits)
    if q.dtype != torch.int8:
        raise ValueError(f"pack expects int8 values, got {q.dtype}")
    if w == 8:
        return q
    per_byte, offset = 8 // w, 2 ** (w - 1)
    if q.numel() and not (-offset <= q.min().item() and q.max().item() < offset):
        raise ValueError(f"values in [{q.min().item()}, {q.max().item()}] do not fit a {w}-bit field "
                         f"[{-offset}, {offset - 1}] (bits={bits})")
    *lead, Dh = q.shape
    u = F.pad(q.to(torch.int32) + offset, (0, -Dh % per_byte))  # (..., Dh + pad), each in [0, 2^w)
    fields = u.reshape(*lead, -1, per_byte)  # (..., ceil(Dh·w/8), 8 / w)
    shifts = torch.arange(per_byte, dtype=torch.int32, device=q.device) * w  # (8 / w,) field j: bits j·w..
    return (fields << shifts).sum(-1).to(torch.uint8)  # (..., ceil(Dh·w/8)): no overlap, so sum = OR


def unpack(packed: torch.Tensor, bits: int, width: int) -> torch.Tensor:
    """Inverse of ``pack``: the first ``width`` (Dh) values of every row, as int8 (padding dropped).

    packed: uint8 (..., ceil(Dh · w / 8))  ->  int8 (..., Dh); for w = 8 the int8 input is returned as is.
    """
    w = field_bits(bits)
    if w == 8:
        return packed
    per_byte, offset = 8 // w, 2 ** (w - 1)
    if packed.dtype != torch.uint8 or packed.shape[-1] != -(-width // per_byte):
        raise ValueError(f"unpack expects uint8 (..., {-(-width // per_byte)}) for width={width} values of "
                         f"{w} bits, got {packed.dtype} {tuple(packed.shape)}")
    shifts = torch.arange(per_byte, dtype=torch.int32, device=packed.device) * w  # (8 / w,)
    fields = (packed.to(torch.int32).unsqueeze(-1) >> shifts) & (2 ** w - 1)  # (..., ceil(Dh·w/8), 8 / w)
    return (fields.flatten(-2)[..., :width] - offset).to(torch.int8)  # (..., Dh)


@dataclass
class QuantizedTensor:
    """int8 payload ``q`` (one int8 per number, whatever ``bits``) and its scales; ``dequantize()``
    gives ``q · scale`` back. ``QuantizedKVCache`` stores ``pack(q, bits)`` instead of ``q``."""

    q: torch.Tensor  # int8, shape of the original (..., S, Dh)
    scale: torch.Tensor  # token: (..., S, 1); channel: (..., S / R, 1, Dh) once per group of R tokens
    axis: str  # "token" or "channel"
    group_size: int  # R: tokens per scale along the sequence ("channel" only; S for "token")
    dtype: torch.dtype  # the original floating dtype

    def dequantize(self) -> torch.Tensor:
        if self.axis == "token":
            return self.q.to(self.dtype) * self.scale  # (..., S, Dh)
        *lead, S, Dh = self.q.shape
        grouped = self.q.view(*lead, S // self.group_size, self.group_size, Dh)  # (..., S/R, R, Dh)
        return (grouped.to(self.dtype) * self.scale).view(*lead, S, Dh)  # (..., S, Dh)

    def step(self) -> torch.Tensor:
        """The scale broadcast to every element: the rounding error is at most half of this."""
        if self.axis == "token":
            return self.scale.expand(self.q.shape)
        *lead, S, Dh = self.q.shape
        return self.scale.expand(*lead, S // self.group_size, self.group_size, Dh).reshape(self.q.shape)

    def nbytes(self) -> int:
        return self.q.numel() * self.q.element_size() + self.scale.numel() * self.scale.element_size()


def quantize(x: torch.Tensor, axis: str = "token", group_size: int | None = None,
             bits: int = 8) -> QuantizedTensor:
    """Symmetric absmax quantisation of ``x`` (..., S, Dh) with one scale per token (``axis="token"``)
    or one scale per channel per group of ``group_size`` tokens (``axis="channel"``; ``None`` means
    one group spanning all S tokens)."""
    if axis not in AXES:
        raise ValueError(f"axis={axis!r} must be one of {AXES}")
    if x.ndim < 2 or not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor (..., S, Dh), got {x.dtype} {tuple(x.shape)}")
    qmax = _qmax(bits)
    *lead, S, Dh = x.shape
    if axis == "token":
        absmax = x.abs().amax(dim=-1, keepdim=True)  # (..., S, 1)
        group_size = S
        blocks = x
    else:
        group_size = S if group_size is None else check_int("group_size", group_size, min_value=1,
                                                             where="quantize")
        if S % group_size:
            raise ValueError(f"S={S} positions must be a positive multiple of group_size={group_size}")
        blocks = x.reshape(*lead, S // group_size, group_size, Dh)  # (..., S/R, R, Dh)
        absmax = blocks.abs().amax(dim=-2, keepdim=True)  # (..., S/R, 1, Dh)
    scale = (absmax / qmax).clamp_min(torch.finfo(x.dtype).tiny)  # an all-zero block keeps scale > 0
    q = torch.round(blocks / scale).clamp_(-qmax, qmax).to(torch.int8).reshape(x.shape)
    return QuantizedTensor(q, scale, axis, group_size, x.dtype)


class _Stream:
    """One cached tensor (K or V) of one layer: quantised positions, stored packed, plus a
    full-precision residual."""

    def __init__(self, axis: str, group_size: int, bits: int):
        self.axis, self.group_size, self.bits = axis, group_size, bits
        # Sq positions quantised so far, stored as pack(q): uint8 (..., Sq, ceil(Dh·w/8)) for bits <= 4,
        # else int8 (..., Sq, Dh)
        self.payload: torch.Tensor | None = None
        self.scale: torch.Tensor | None = None  # token: (..., Sq, 1); channel: (..., Sq/R, 1, Dh)
        self.width, self.dtype = 0, torch.float32  # Dh and the float dtype, set by the first append
        self.residual: torch.Tensor | None = None  # (..., r, Dh) with r < R, "channel" only

    @property
    def length(self) -> int:
        n = 0 if self.payload is None else self.payload.shape[SEQ_DIM]  # packing keeps the S dim
        return n + (0 if self.residual is None else self.residual.shape[SEQ_DIM])

    @property
    def blocks(self) -> QuantizedTensor | None:
        """Everything quantised so far, unpacked (int8 payload, as ``quantize`` returns it)."""
        if self.payload is None:
            return None
        q = unpack(self.payload, self.bits, self.width)  # (..., Sq, Dh)
        group = q.shape[SEQ_DIM] if self.axis == "token" else self.group_size
        return QuantizedTensor(q, self.scale, self.axis, group, self.dtype)

    def _append(self, x: torch.Tensor, group_size: int | None) -> None:
        qt = quantize(x, self.axis, group_size, self.bits)
        payload = pack(qt.q, self.bits)  # (..., T, ceil(Dh·w/8))
        if self.payload is None:
            self.payload, self.scale, self.width, self.dtype = payload, qt.scale, x.shape[-1], x.dtype
        else:
            dim = SEQ_DIM if self.axis == "token" else -3  # channel scales: (..., S/R, 1, Dh)
            self.payload = torch.cat([self.payload, payload], dim=SEQ_DIM)
            self.scale = torch.cat([self.scale, qt.scale], dim=dim)

    def add(self, x: torch.Tensor) -> torch.Tensor:
        """Store ``x`` (..., T, Dh); return the whole history, dequantised (..., S, Dh)."""
        if self.axis == "token":
            self._append(x, None)
            return self.blocks.dequantize()
        pending = x if self.residual is None else torch.cat([self.residual, x], dim=SEQ_DIM)
        full = pending.shape[SEQ_DIM] // self.group_size * self.group_size
        if full:
            self._append(pending.narrow(SEQ_DIM, 0, full), self.group_size)
        self.residual = pending.narrow(SEQ_DIM, full, pending.shape[SEQ_DIM] - full).clone()
        if self.payload is None:
            return self.residual
        return torch.cat([self.blocks.dequantize(), self.residual], dim=SEQ_DIM)  # (..., S, Dh)

    def dequantized(self) -> torch.Tensor | None:
        parts = ([] if self.payload is None else [self.blocks.dequantize()]) + \
            ([] if self.residual is None else [self.residual])
        return torch.cat(parts, dim=SEQ_DIM) if parts else None

    def nbytes(self) -> int:
        n = 0
        for t in (self.payload, self.scale, self.residual):
            n += 0 if t is None else t.numel() * t.element_size()
        return n


class QuantizedKVCache(KVCache):
    """A ``KVCache`` that keeps keys and values as ``bits``-bit integers plus scales (keys per channel
    in groups of ``group_size`` tokens, values per token, by default). ``update`` returns dequantised
    tensors, so any attention module that uses a ``KVCache`` works unchanged, e.g.
    ``generate(model, idx, n, cache=QuantizedKVCache(cfg.n_layers))``. Stores (k, v) pairs (MHA/GQA/MQA).

    Storage per cached number (``field_bits``): bits=2 packs four to a byte, bits=3 and 4 two to a
    byte (3 bits in a 4-bit field), bits=5 to 8 one int8 each; rows of Dh values are packed separately,
    so when Dh is not a multiple of 4 (2 bits) or 2 (3-4 bits) each row ends in one padded byte.
    Scales and the residual keys stay in the input's float dtype.
    """

    def __init__(self, n_layers: int, key_axis: str = "channel", value_axis: str = "token",
                 group_size: int = 32, bits: int = 8):
        super().__init__(n_layers)
        for name, axis in [("key_axis", key_axis), ("value_axis", value_axis)]:
            if axis not in AXES:
                raise ValueError(f"{name}={axis!r} must be one of {AXES}")
        check_int("group_size", group_size, min_value=1, where="QuantizedKVCache")
        _check_bits(bits)
        self.key_axis, self.value_axis, self.group_size, self.bits = key_axis, value_axis, group_size, bits
        self.streams: list[tuple[_Stream, _Stream] | None] = [None] * n_layers

    def _new_streams(self) -> tuple[_Stream, _Stream]:
        return (_Stream(self.key_axis, self.group_size, self.bits),
                _Stream(self.value_axis, self.group_size, self.bits))

    def update(self, layer_idx: int, *new: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(new) != 2:
            raise ValueError(f"QuantizedKVCache stores (k, v) pairs; got {len(new)} tensors")
        self.check_update(layer_idx, new)
        if not all(t.is_floating_point() for t in new):
            raise InputTypeError(f"QuantizedKVCache quantises float keys and values, "
                                 f"got {[t.dtype for t in new]}")
        if self.streams[layer_idx] is None:
            self.streams[layer_idx] = self._new_streams()
        full = tuple(s.add(t) for s, t in zip(self.streams[layer_idx], new))  # (B, G, S, Dh) each
        return full

    def layer_length(self, layer_idx: int) -> int:
        streams = self.streams[layer_idx]
        return 0 if streams is None else streams[0].length

    def reset(self) -> None:
        super().reset()
        self.streams = [None] * self.n_layers

    def crop(self, length: int) -> None:
        """Keep the first ``length`` positions: dequantise, cut, and quantise again from position 0
        (the same groups form again, so kept positions get back the values they had)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"crop length={length} outside [0, {self.length}]")
        old, self.streams = self.streams, [None] * self.n_layers
        for layer_idx, streams in enumerate(old):
            if streams is None or length == 0:
                continue
            kept = [s.dequantized().narrow(SEQ_DIM, 0, length) for s in streams]
            self.update(layer_idx, *kept)

    def dequantized(self, layer_idx: int) -> tuple[torch.Tensor, ...] | None:
        """The (k, v) attention currently sees for a layer (``None`` if nothing is cached)."""
        streams = self.streams[layer_idx]
        return None if streams is None else tuple(s.dequantized() for s in streams)

    def nbytes(self) -> int:
        """Bytes held, over all layers: the payload as stored (packed for bits <= 4, padding bytes
        included), the scales and the full-precision residual keys."""
        return sum(s.nbytes() for pair in self.streams if pair is not None for s in pair)


# --- measuring the damage -------------------------------------------------------------------------
@dataclass
class QuantError:
    max_abs: float  # max |x - dequant(x)|
    max_over_half_step: float  # max of |x - dequant(x)| / (scale / 2): <= 1 when rounding is right
    rel_rms: float  # ||x - dequant(x)|| / ||x||


def quant_error(x: torch.Tensor, axis: str = "token", group_size: int | None = None,
                bits: int = 8) -> QuantError:
    """How far the round trip ``dequantize(quantize(x))`` moves ``x``."""
    qt = quantize(x, axis, group_size, bits)
    err = (qt.dequantize() - x).abs()
    return QuantError(err.max().item(), (err / (qt.step() / 2)).max().item(),
                      (err.norm() / x.norm().clamp_min(1e-30)).item())


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """||approx - exact|| / ||exact||."""
    return ((approx - exact).norm() / exact.norm().clamp_min(1e-30)).item()


def attention_error(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_axis: str | None = "channel",
                    value_axis: str | None = "token", group_size: int | None = None,
                    bits: int = 8) -> float:
    """Relative error of causal attention softmax(qkᵀ/√Dh)v when k and/or v are quantised (an axis of
    ``None`` leaves that tensor exact). q (B, H, T, Dh); k, v (B, G, S, Dh)."""
    exact = attend(q, k, v, "explicit")  # (B, H, T, Dh)
    kq = k if key_axis is None else quantize(k, key_axis, group_size, bits).dequantize()
    vq = v if value_axis is None else quantize(v, value_axis, group_size, bits).dequantize()
    return relative_error(attend(q, kq, vq, "explicit"), exact)


@torch.no_grad()
def capture_qkv(model, idx: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Each layer's (q, k, v) after RoPE for the sequence ``idx`` (B, T), read with forward hooks on
    the attention modules: q (B, H, T, Dh), k and v (B, G, T, Dh)."""
    found: list = []

    def hook(module, args):
        x, cos, sin = args[:3]
        found.append(module.project(x, cos, sin))

    handles = [layer.attn.register_forward_pre_hook(hook) for layer in model.layers]
    try:
        model(idx)
    finally:
        for h in handles:
            h.remove()
    return found


@dataclass
class PredictionError:
    positions: int  # next-token predictions compared
    top1_agreement: float  # fraction where the argmax token is the same
    mean_kl: float  # mean KL(p_exact || p_quantised) in nats
    max_kl: float
    max_logit_diff: float
    exact_loss: float = float("nan")  # next-token loss (nats) of the exact predictions on the known tokens
    quantised_loss: float = float("nan")  # the same for the predictions made through ``cache``

    @property
    def loss_increase(self) -> float:
        """What the cache costs in next-token loss on this text (nats; can be slightly negative by luck)."""
        return self.quantised_loss - self.exact_loss


@torch.no_grad()
def prediction_error(model, tokens: torch.Tensor, cache: KVCache, prompt_len: int) -> PredictionError:
    """Teacher-forced comparison: prefill ``tokens[:, :prompt_len]`` into ``cache``, then feed the
    remaining tokens one at a time (as decoding would), and compare every next-token distribution with
    the exact one from a single uncached forward pass over ``tokens`` (B, T). Feeding the same tokens
    to both keeps the comparison on equal inputs even where the predictions disagree."""
    B, T = tokens.shape
    if not 0 < prompt_len < T:
        raise ValueError(f"prompt_len={prompt_len} must be in [1, {T - 1}] for T={T} tokens")
    was_training = model.training
    model.eval()
    exact = model(tokens)[:, prompt_len - 1:]  # (B, T - prompt_len + 1, V)
    cache.reset()
    steps = [model(tokens[:, :prompt_len], cache=cache)[:, -1:]]  # (B, 1, V)
    for t in range(prompt_len, T):
        steps.append(model(tokens[:, t:t + 1], cache=cache))  # (B, 1, V)
    model.train(was_training)
    approx = torch.cat(steps, dim=1)  # (B, T - prompt_len + 1, V)
    logp, logq = F.log_softmax(exact.float(), -1), F.log_softmax(approx.float(), -1)
    kl = (logp.exp() * (logp - logq)).sum(-1)  # (B, T - prompt_len + 1)
    agree = (exact.argmax(-1) == approx.argmax(-1)).float()
    targets = tokens[:, prompt_len:].flatten()  # the known next tokens (the last prediction has none)
    exact_loss, quantised_loss = (F.cross_entropy(x[:, :-1].float().flatten(0, 1), targets).item()
                                  for x in (exact, approx))
    return PredictionError(kl.numel(), agree.mean().item(), kl.mean().item(), kl.max().item(),
                           (exact - approx).abs().max().item(), exact_loss, quantised_loss)
