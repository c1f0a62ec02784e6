"""FP8 training as DeepSeek-V3 does it (DeepSeek-V3 technical report, arXiv 2412.19437, §3.3).

Notation (``docs/GLOSSARY.md``): ``Kg`` is a GEMM's inner (summed) dimension (the report's K; K is taken by
the active experts), ``Nc`` the promotion interval (the report's N_C = 128 elements), ``E4M3``/``E5M2``
the two FP8 formats (exponent and mantissa bits), ``amax`` a block's largest magnitude.

- **Fine-grained scaling** (§3.3.2): activations are scaled per 1×128 tile (one token, 128 channels),
  weights per 128×128 block; each group's scale maps its ``amax`` to the format's largest finite value
  (E4M3: 448), so one outlier only coarsens its own group. ``quantize`` / ``dequantize``.
- **Accumulation** (§3.3.2, "Increasing Accumulation Precision"): H800 tensor cores keep about 14 bits
  of an FP8 GEMM's running sum, a maximum relative error of nearly 2% at Kg = 4096 in the report; V3
  promotes the partial sum to an FP32 register every ``Nc = 128`` elements. ``limited_dot`` models the
  accumulator bit by bit (round after every addition to a fixed number of significant bits).
- **Which operators take FP8** (§3.3.1): the three GEMMs of every linear layer (forward ``Fprop``,
  activation gradient ``Dgrad``, weight gradient ``Wgrad``) take FP8 inputs; the embedding, the output
  head, MoE gating, normalisations and attention stay in BF16/FP32, as do master weights, gradients
  and optimiser state. ``FP8Linear`` is that linear layer, fake-quantised: its inputs are quantised
  and dequantised (the values an FP8 GEMM would see) and the product is taken in FP32. ``to_fp8``
  turns a ``helpers.model.Transformer``'s block linears into it and leaves everything else alone.

torch's CPU build has ``float8_e4m3fn`` / ``float8_e5m2`` (casts round to nearest even) and
``torch._scaled_mm`` with per-tensor and per-row scales; block scales are emulated here (quantise,
dequantise, multiply). ``scaled_mm`` runs the real kernel where it exists (sm89/sm90 GPUs, and the CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .validate import InputTypeError, check_int

FORMATS: dict[str, torch.dtype] = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}
ACT_BLOCK = (1, 128)  # activations: one token × 128 channels (§3.3.2)
WEIGHT_BLOCK = (128, 128)  # weights: 128 output × 128 input channels
N_C = 128  # Nc: the report's promotion interval (4 WGMMAs)
ACC_BITS = 14  # significant bits an H800 FP8 GEMM keeps while it accumulates (the report's "about 14")


def fmt_max(fmt: str) -> float:
    """The format's largest finite value (E4M3: 448, E5M2: 57344)."""
    return float(torch.finfo(_dtype(fmt)).max)


def _dtype(fmt) -> torch.dtype:
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ValueError(f"fmt={fmt!r} is not an FP8 format; choose one of {sorted(FORMATS)}")
    return FORMATS[fmt]


def _check_block(block) -> tuple[int, int]:
    if not isinstance(block, (tuple, list)) or len(block) != 2:
        raise InputTypeError(f"block must be a pair (rows, cols) such as (1, 128), got {block!r}")
    return check_int("block[0]", block[0], min_value=1), check_int("block[1]", block[1], min_value=1)


def _check_matrix(name: str, x, block) -> tuple[int, int]:
    if not torch.is_tensor(x):
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, cols), got shape {tuple(x.shape)}")
    br, bc = block
    R, C = x.shape
    if R % br or C % bc:
        raise ValueError(f"{name} of shape {tuple(x.shape)} does not divide into blocks of {(br, bc)}: "
                         f"{R} % {br} = {R % br}, {C} % {bc} = {C % bc}")
    return R, C


def _blocks(x: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """(R, C) → (R/br, C/bc, br, bc): one entry per block, its elements in the last two dims."""
    (R, C), (br, bc) = x.shape, block
    return x.reshape(R // br, br, C // bc, bc).transpose(1, 2)  # (R/br, C/bc, br, bc)


def _unblocks(xb: torch.Tensor) -> torch.Tensor:
    nr, nc, br, bc = xb.shape
    return xb.transpose(1, 2).reshape(nr * br, nc * bc)  # (R, C)


def quantize(x: torch.Tensor, block, fmt: str = "e4m3") -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (R, C) float → ``(q, scale)``: ``q`` (R, C) in the FP8 format, ``scale`` float32 (R/br, C/bc)
    with ``x ≈ q · scale`` block by block. Each block's scale is ``amax / fmt_max``, so its largest
    magnitude lands on the format's largest finite value; an all-zero block gets scale 1 and stays zero."""
    dtype = _dtype(fmt)
    block = _check_block(block)
    _check_matrix("x", x, block)
    if not x.is_floating_point() or x.dtype in FORMATS.values():
        raise InputTypeError(f"x must be a float tensor (float32/bfloat16/float16), got {x.dtype}")
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"x has {bad} non-finite value(s) (inf or nan) of {x.numel()}; a scale cannot be "
                         "chosen for them")
    top = fmt_max(fmt)
    xb = _blocks(x.float(), block)  # (R/br, C/bc, br, bc)
    amax = xb.abs().amax(dim=(-1, -2))  # (R/br, C/bc)
    scale = torch.where(amax > 0, amax / top, torch.ones_like(amax))
    scale = scale.clamp_min(torch.finfo(torch.float32).tiny)  # a subnormal amax: never divide by 0
    q = (xb / scale[..., None, None]).clamp(-top, top).to(dtype)  # round to nearest even
    return _unblocks(q), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor, block) -> torch.Tensor:
    """``q`` (R, C) FP8 and its block scales (R/br, C/bc) → float32 (R, C): ``q.float()`` times its block's
    scale."""
    block = _check_block(block)
    R, C = _check_matrix("q", q, block)
    if q.dtype not in FORMATS.values():
        raise InputTypeError(f"q must be float8_e4m3fn or float8_e5m2 (from quantize), got {q.dtype}")
    want = (R // block[0], C // block[1])
    if not torch.is_tensor(scale) or tuple(scale.shape) != want:
        got = tuple(scale.shape) if torch.is_tensor(scale) else type(scale).__name__
        raise ValueError(f"scale has shape {got}; q of shape {(R, C)} in blocks of {block} needs {want}")
    return _unblocks(_blocks(q.float(), block) * scale.float()[..., None, None])


def fake_quant(x: torch.Tensor, block, fmt: str = "e4m3") -> torch.Tensor:
    """What an FP8 GEMM sees of ``x`` (…, C): quantised per block and dequantised, float32, same shape.
    Leading dimensions are flattened into rows; rows and columns are zero-padded up to whole blocks
    (zeros are exact and change no block's amax), then cropped."""
    block = _check_block(block)
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])  # (R, C)
    R, C = x2.shape
    pr, pc = (-R) % block[0], (-C) % block[1]
    if pr or pc:
        x2 = F.pad(x2, (0, pc, 0, pr))
    out = dequantize(*quantize(x2, block, fmt), block)
    return out[:R, :C].reshape(shape)


# --- the accumulation problem -------------------------------------------------------------------------
def round_bits(x: torch.Tensor, bits: int, mode: str = "truncate") -> torch.Tensor:
    """``x`` (float64) kept to ``bits`` significant binary digits: ``"truncate"`` drops the rest (towards
    zero, as a right-shifted addend loses its low bits), ``"nearest"`` rounds half to even."""
    bits = check_int("bits", bits, min_value=1, max_value=52)
    if mode not in ("truncate", "nearest"):
        raise ValueError(f"mode={mode!r}; choose 'truncate' or 'nearest'")
    m, e = torch.frexp(x.double())  # x = m · 2^e, 0.5 <= |m| < 1
    s = m * 2.0 ** bits
    s = torch.trunc(s) if mode == "truncate" else torch.round(s)
    return s * torch.pow(2.0, (e - bits).double())


def limited_dot(a: torch.Tensor, b: torch.Tensor, *, bits: int = ACC_BITS, promote_every: int | None = None,
                mode: str = "truncate") -> torch.Tensor:
    """Row-wise dot products ``(a * b).sum(-1)`` of (M, Kg) inputs through a limited accumulator: the
    products (exact: FP8 × FP8 fits in FP32) are added one by one and the running sum is cut to
    ``bits`` significant bits after every addition. ``promote_every=Nc`` adds the partial sum into an
    FP32 total every ``Nc`` elements and restarts it from zero (the report's fix). Returns (M,) float64."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a and b must be (M, Kg) of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if promote_every is not None:
        promote_every = check_int("promote_every", promote_every, min_value=1)
    p = a.double() * b.double()  # (M, Kg)
    acc = torch.zeros(p.shape[0], dtype=torch.float64)  # the tensor core's partial sum
    total = torch.zeros(p.shape[0], dtype=torch.float32)  # the CUDA core's FP32 register
    for k in range(p.shape[1]):
        acc = round_bits(acc + p[:, k], bits, mode)
        if promote_every and (k + 1) % promote_every == 0:
            total, acc = total + acc.float(), torch.zeros_like(acc)
    return (total + acc.float()).double()


def accumulation_error(Kg: int, *, bits: int = ACC_BITS, promote_every: int | None = None, rows: int = 256,
                       seed: int = 0, mode: str = "truncate") -> float:
    """Relative error ‖c − c_exact‖ / ‖c_exact‖ of ``rows`` dot products of length ``Kg`` between
    standard-normal vectors cast to E4M3, through ``limited_dot``, against their exact (float64) sums."""
    Kg = check_int("Kg", Kg, min_value=1)
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(rows, Kg, generator=gen).to(torch.float8_e4m3fn).double()  # (rows, Kg)
    b = torch.randn(rows, Kg, generator=gen).to(torch.float8_e4m3fn).double()
    exact = (a * b).sum(-1)
    got = limited_dot(a, b, bits=bits, promote_every=promote_every, mode=mode)
    return ((got - exact).norm() / exact.norm()).item()


# --- the FP8 linear layer, forward and backward --------------------------------------------------------
class _FP8Matmul(torch.autograd.Function):
    """y = x Wᵀ with all three GEMMs on FP8-quantised inputs (§3.3.1, Figure 6):
    Fprop  y  = Q(x; 1×128) · Q(W; 128×128)ᵀ
    Dgrad  dx = Q(dy; 1×128) · Q(W; 128×128)
    Wgrad  dW = Q(dyᵀ; 1×128) · Q(xᵀ; 1×128)ᵀ   (tiles run along the tokens, the summed dimension).
    Each GEMM multiplies the dequantised values in FP32 (an FP32 accumulator, as after promotion)."""

    @staticmethod
    def forward(ctx, x, weight, fmt_fwd, fmt_bwd):
        x2 = x.reshape(-1, x.shape[-1])  # (N, Din)
        xq, wq = fake_quant(x2, ACT_BLOCK, fmt_fwd), fake_quant(weight, WEIGHT_BLOCK, fmt_fwd)
        ctx.save_for_backward(x2, weight)
        ctx.fmt_bwd, ctx.shape = fmt_bwd, x.shape
        return (xq @ wq.t()).reshape(*x.shape[:-1], weight.shape[0]).to(x.dtype)  # (..., Dout)

    @staticmethod
    def backward(ctx, dy):
        x2, weight = ctx.saved_tensors
        fmt = ctx.fmt_bwd
        dy2 = dy.reshape(-1, dy.shape[-1]).float()  # (N, Dout)
        dx = fake_quant(dy2, ACT_BLOCK, fmt) @ fake_quant(weight, WEIGHT_BLOCK, fmt)  # (N, Din)
        xt = fake_quant(x2.float().t(), ACT_BLOCK, fmt)  # (Din, N): tiles along the tokens
        dw = fake_quant(dy2.t(), ACT_BLOCK, fmt) @ xt.t()  # (Dout, Din)
        return dx.reshape(ctx.shape).to(x2.dtype), dw.to(weight.dtype), None, None


def fp8_linear(x: torch.Tensor, weight: torch.Tensor, fmt_fwd: str = "e4m3",
               fmt_bwd: str = "e4m3") -> torch.Tensor:
    """``F.linear(x, weight)`` (no bias) with FP8-quantised inputs in forward and backward."""
    _dtype(fmt_fwd), _dtype(fmt_bwd)
    return _FP8Matmul.apply(x, weight, fmt_fwd, fmt_bwd)


class FP8Linear(nn.Linear):
    """An ``nn.Linear`` whose GEMMs see FP8 inputs (``fp8_linear``); the weight itself stays FP32 (the
    master copy). ``to_fp8`` converts existing layers in place, keeping their parameters."""

    fmt_fwd: str = "e4m3"
    fmt_bwd: str = "e4m3"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = fp8_linear(x, self.weight, self.fmt_fwd, self.fmt_bwd)
        return y if self.bias is None else y + self.bias


@dataclass(frozen=True)
class FP8Plan:
    """What ``to_fp8`` changed: the linears now in FP8 and the ones left in high precision, by name."""

    fp8: tuple[str, ...]
    kept: tuple[str, ...]


def to_fp8(model: nn.Module, *, fmt_fwd: str = "e4m3", fmt_bwd: str = "e4m3") -> FP8Plan:
    """Make the block linears of a ``helpers.model.Transformer`` (attention and MLP/expert projections)
    FP8 in place, as V3 does; the embedding, the output head (``head``), the MoE gate (a plain
    parameter, never an ``nn.Linear``), the norms and attention's score/softmax stay as they are. The
    parameters are the same objects, so an optimiser built before still holds them. Training and
    ``torch.no_grad`` forwards go through FP8; under ``torch.inference_mode`` the blocks' fused decode
    paths read the weights directly, in their own precision."""
    _dtype(fmt_fwd), _dtype(fmt_bwd)
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be an nn.Module, got {type(model).__name__}")
    fp8, kept = [], []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        if name.startswith("layers.") and ".gate" not in name:
            mod.__class__ = FP8Linear
            mod.fmt_fwd, mod.fmt_bwd = fmt_fwd, fmt_bwd
            fp8.append(name)
        else:
            kept.append(name)
    return FP8Plan(tuple(fp8), tuple(kept))


# --- the real kernel -------------------------------------------------------------------------------------
def scaled_mm(a: torch.Tensor, b: torch.Tensor, *, rowwise: bool = False,
              out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``a`` (M, Kg) @ ``b`` (Kg, N) through ``torch._scaled_mm``: both quantised to E4M3 with one scale per
    tensor, or (``rowwise``) one per row of ``a`` and per column of ``b``. Runs where the kernel exists:
    the CPU and FP8 GPUs (sm89/sm90); ``emulated_mm`` is the same product by quantise-dequantise-multiply."""
    aq, sa, bq, sb = _scaled_operands(a, b, rowwise)
    return torch._scaled_mm(aq, bq.t().contiguous().t(), scale_a=sa, scale_b=sb, out_dtype=out_dtype)


def emulated_mm(a: torch.Tensor, b: torch.Tensor, *, rowwise: bool = False) -> torch.Tensor:
    """``scaled_mm``'s product emulated: the same quantisation, dequantised, multiplied in FP32."""
    aq, sa, bq, sb = _scaled_operands(a, b, rowwise)
    return (aq.float() * sa) @ (bq.float() * sb)


def _scaled_operands(a, b, rowwise: bool):
    if (not (torch.is_tensor(a) and torch.is_tensor(b)) or a.ndim != 2 or b.ndim != 2
            or a.shape[1] != b.shape[0]):
        raise ValueError(f"a (M, Kg) and b (Kg, N) must be 2-D with one Kg, got "
                         f"{tuple(getattr(a, 'shape', ()))} and {tuple(getattr(b, 'shape', ()))}")
    M, Kg = a.shape
    N = b.shape[1]
    if rowwise:
        aq, sa = quantize(a, (1, Kg))  # sa (M, 1)
        bq, sb = quantize(b.t().contiguous(), (1, Kg))  # per column of b: sb (N, 1)
        return aq, sa, bq.t(), sb.t()  # scales (M, 1) and (1, N)
    aq, sa = quantize(a, (M, Kg))
    bq, sb = quantize(b, (Kg, N))
    return aq, sa.reshape(()), bq, sb.reshape(())


def fp8_bytes(n_params: int) -> dict[str, float]:
    """Bytes of ``n_params`` weights in FP32, BF16 and FP8, the FP8 number with one float32 scale per
    128×128 block counted."""
    n = check_int("n_params", n_params, min_value=0)
    return {"fp32": 4.0 * n, "bf16": 2.0 * n, "fp8": n + 4.0 * math.ceil(n / (128 * 128))}


def has_fp8_tensor_cores(device) -> bool:
    """True on a CUDA GPU of compute capability 8.9 or higher (Ada sm89, Hopper sm90): FP8 tensor cores."""
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def time_matmuls(n: int, device, *, rounds: int = 10, min_run_time: float = 0.05) -> dict:
    """An (n, n) @ (n, n) product timed side by side (``helpers.timing.interleaved``, ``rounds`` turns
    each): BF16 ``@`` against ``torch._scaled_mm`` on E4M3 operands with per-tensor scales (BF16 out).
    The GPU plan; on a CPU it runs the same code on torch's CPU kernels (what CI exercises)."""
    from .timing import interleaved

    n = check_int("n", n, min_value=16)
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen).to(device), torch.randn(n, n, generator=gen).to(device)
    a16, b16 = a.bfloat16(), b.bfloat16()
    aq, sa, bq, sb = _scaled_operands(a, b, rowwise=False)
    bq = bq.t().contiguous().t()  # column-major, as the kernel wants its second operand
    fns = {"bf16": lambda: a16 @ b16,
           "fp8 _scaled_mm": lambda: torch._scaled_mm(aq, bq, scale_a=sa, scale_b=sb,
                                                      out_dtype=torch.bfloat16)}
    return interleaved(fns, rounds=check_int("rounds", rounds, min_value=1), min_run_time=min_run_time)
