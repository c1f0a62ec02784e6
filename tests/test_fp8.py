"""helpers.fp8: block quantisation's contract, the accumulator model, the FP8 linear and _scaled_mm."""

import math

import pytest
import torch

from helpers import fp8
from helpers.config import preset
from helpers.model import Transformer


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def independent_fake_quant(x, block, fmax, dtype):
    """The same quantise-dequantise written element by element from the formula, block by block."""
    out = torch.empty_like(x, dtype=torch.float32)
    br, bc = block
    for i in range(0, x.shape[0], br):
        for j in range(0, x.shape[1], bc):
            blk = x[i:i + br, j:j + bc].float()
            amax = blk.abs().max().item()
            s = amax / fmax if amax > 0 else 1.0
            out[i:i + br, j:j + bc] = (blk / s).to(dtype).float() * s
    return out


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
@pytest.mark.parametrize("block", [(1, 16), (8, 8), (4, 32)])
def test_quantize_matches_formula(gen, fmt, block):
    x = torch.randn(8, 32, generator=gen) * torch.logspace(-3, 3, 32)  # columns of very different sizes
    q, scale = fp8.quantize(x, block, fmt)
    assert q.dtype == fp8.FORMATS[fmt] and q.shape == x.shape
    assert scale.dtype == torch.float32 and scale.shape == (8 // block[0], 32 // block[1])
    got = fp8.dequantize(q, scale, block)
    want = independent_fake_quant(x, block, fp8.fmt_max(fmt), fp8.FORMATS[fmt])
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)


def test_every_nonzero_block_reaches_the_format_max_and_zero_blocks_stay_zero(gen):
    x = torch.randn(6, 12, generator=gen)
    x[0:2, 4:8] = 0.0  # one all-zero block of (2, 4)
    x[2:4, 0:4] *= 1e4  # one outlier block: its neighbours must not see it
    for fmt in ("e4m3", "e5m2"):
        q, scale = fp8.quantize(x, (2, 4), fmt)
        amax = q.float().reshape(3, 2, 3, 4).abs().amax(dim=(1, 3))  # (3, 3)
        assert amax[0, 1] == 0 and scale[0, 1] == 1.0
        mask = torch.ones(3, 3, dtype=torch.bool)
        mask[0, 1] = False
        assert torch.all(amax[mask] == fp8.fmt_max(fmt))
        back = fp8.dequantize(q, scale, (2, 4))
        assert torch.all(back[0:2, 4:8] == 0)
        # the outlier block's neighbours come back exactly as they would without it: blocks are isolated
        calm = x.clone()
        calm[2:4, 0:4] /= 1e4
        calm_back = fp8.dequantize(*fp8.quantize(calm, (2, 4), fmt), (2, 4))
        outside = torch.ones_like(x, dtype=torch.bool)
        outside[2:4, 0:4] = False
        assert torch.equal(back[outside], calm_back[outside])
        assert not torch.equal(fp8.fake_quant(x, (6, 12), fmt)[outside], calm_back[outside])  # one scale: not


def test_per_tensor_flushes_what_tiles_keep(gen):
    x = torch.randn(4, 256, generator=gen)
    x[:, 3] = 1e6  # an outlier channel: per tensor, ordinary values fall below E4M3's smallest step
    tensor = fp8.fake_quant(x, (4, 256))
    tiles = fp8.fake_quant(x, (1, 128))
    ordinary = torch.ones_like(x, dtype=torch.bool)
    ordinary[:, :128] = False  # the tiles without the outlier
    assert (tensor[ordinary] == 0).float().mean() > 0.5
    assert (tiles[ordinary] == 0).float().mean() < 0.01


@pytest.mark.parametrize("bad, match", [
    (lambda: fp8.quantize(torch.randn(3, 8), (2, 4)), r"\(3, 8\).*\(2, 4\)"),
    (lambda: fp8.quantize(torch.randn(8), (1, 4)), r"2-D.*\(8,\)"),
    (lambda: fp8.quantize(torch.randn(2, 4, 4), (1, 4)), r"2-D.*\(2, 4, 4\)"),
    (lambda: fp8.quantize(torch.randn(4, 4), (1, 4), fmt="e3m4"), r"'e3m4'"),
    (lambda: fp8.quantize(torch.tensor([[1.0, float("inf")], [float("nan"), 0.0]]), (1, 2)), r"2 non-finite"),
    (lambda: fp8.dequantize(torch.zeros(4, 4, dtype=torch.float8_e4m3fn), torch.ones(2, 2), (1, 4)),
     r"\(4, 1\)"),
])
def test_bad_inputs_raise_value_error_naming_them(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_bad_types():
    with pytest.raises(TypeError, match="block"):
        fp8.quantize(torch.randn(4, 4), 4)
    with pytest.raises(TypeError, match="int64"):
        fp8.quantize(torch.ones(4, 4, dtype=torch.int64), (1, 4))
    with pytest.raises(TypeError, match="float8"):
        fp8.dequantize(torch.ones(4, 4), torch.ones(4, 1), (1, 4))


def test_round_bits_and_the_accumulator(gen):
    x = torch.tensor([1.0 + 2 ** -10, -(1.0 + 2 ** -10)], dtype=torch.float64)
    assert fp8.round_bits(x, 8).tolist() == [1.0, -1.0]  # truncation drops the low bit, towards zero
    assert fp8.round_bits(torch.tensor([1.75], dtype=torch.float64), 2, "nearest").item() == 2.0
    a = torch.randn(4, 64, generator=gen).double()
    b = torch.randn(4, 64, generator=gen).double()
    # with 52 bits only the final FP32 register rounds
    torch.testing.assert_close(fp8.limited_dot(a, b, bits=52), (a * b).sum(-1).float().double(), rtol=1e-6,
                               atol=1e-6)
    # fewer bits, more error; promotion cuts it
    e_lo, e_hi = fp8.accumulation_error(512, bits=10), fp8.accumulation_error(512, bits=16)
    assert e_lo > 10 * e_hi
    assert fp8.accumulation_error(512, promote_every=128) < fp8.accumulation_error(512) / 3


@pytest.mark.slow
def test_accumulation_reproduces_the_report_order_of_magnitude():
    """14 bits at Kg = 4096: about the report's "nearly 2%" (same order), and ≤ 0.1% with Nc = 128."""
    without = fp8.accumulation_error(4096)
    with_promotion = fp8.accumulation_error(4096, promote_every=fp8.N_C)
    assert 0.01 < without < 0.06
    assert with_promotion < 0.001


def test_fp8_linear_forward_and_backward_use_quantised_operands(gen):
    x = torch.randn(2, 8, 128, generator=gen, requires_grad=True)
    w = torch.randn(256, 128, generator=gen, requires_grad=True)
    y = fp8.fp8_linear(x, w)
    xq = fp8.fake_quant(x.detach().reshape(-1, 128), (1, 128))
    wq = fp8.fake_quant(w.detach(), (128, 128))
    torch.testing.assert_close(y.detach().reshape(-1, 256), xq @ wq.t())
    dy = torch.randn(2, 8, 256, generator=gen)
    y.backward(dy)
    dy2 = dy.reshape(-1, 256)
    torch.testing.assert_close(x.grad.reshape(-1, 128), fp8.fake_quant(dy2, (1, 128)) @ wq)
    dw = fp8.fake_quant(dy2.t(), (1, 128)) @ fp8.fake_quant(x.detach().reshape(-1, 128).t(), (1, 128)).t()
    torch.testing.assert_close(w.grad, dw)
    # and it is close to, but not equal to, the full-precision gradient
    ref = dy2.t() @ x.detach().reshape(-1, 128)
    rel = ((w.grad - ref).norm() / ref.norm()).item()
    assert 0 < rel < 0.1


def test_to_fp8_keeps_embedding_head_gate_norms(gen):
    cfg = preset("test", n_routed_experts=4, n_activated_experts=2, moe_inter_dim=32)
    torch.manual_seed(0)
    model = Transformer(cfg)
    params = {n: p for n, p in model.named_parameters()}
    idx = torch.randint(0, 256, (2, 16), generator=gen)
    before = model(idx).detach()
    plan = fp8.to_fp8(model)
    assert plan.kept == ("head",)
    assert any("experts" in n for n in plan.fp8) and any("attn" in n for n in plan.fp8)
    assert all(p is params[n] for n, p in model.named_parameters())  # the same parameter objects
    assert type(model.tok_emb) is torch.nn.Embedding and type(model.head) is torch.nn.Linear
    after = model(idx).detach()
    assert not torch.equal(before, after)
    assert (after - before).abs().max() < 0.05 * before.abs().max()
    out = model.run(idx, targets=idx)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())  # FP8 layers pass gradients through


@pytest.mark.parametrize("rowwise", [False, True])
def test_scaled_mm_equals_emulation(gen, rowwise):
    if not hasattr(torch, "_scaled_mm"):
        pytest.skip("this torch has no _scaled_mm")
    a = torch.randn(16, 64, generator=gen)
    b = torch.randn(64, 32, generator=gen)
    try:
        got = fp8.scaled_mm(a, b, rowwise=rowwise)
    except (RuntimeError, NotImplementedError) as err:  # a build without the CPU kernel
        pytest.skip(f"_scaled_mm not available here: {err}")
    torch.testing.assert_close(got, fp8.emulated_mm(a, b, rowwise=rowwise), rtol=1e-5, atol=1e-5)
    rel = ((got - a @ b).norm() / (a @ b).norm()).item()
    assert 0 < rel < 0.1


def test_fp8_bytes():
    b = fp8.fp8_bytes(128 * 128 * 3)
    assert b["fp32"] == 4 * b["bf16"] / 2 and b["fp8"] == 128 * 128 * 3 + 12
    assert math.isclose(b["fp8"] / b["bf16"], 0.5, rel_tol=1e-3)


def test_the_gpu_timing_plan_runs_on_the_cpu():
    """CI has no FP8 GPU: the plan the lesson runs there (BF16 @ against _scaled_mm) is forced on the CPU."""
    assert not fp8.has_fp8_tensor_cores("cpu")
    try:
        times = fp8.time_matmuls(32, "cpu", rounds=1, min_run_time=0.0)
    except (RuntimeError, NotImplementedError) as err:
        pytest.skip(f"_scaled_mm not available here: {err}")
    assert set(times) == {"bf16", "fp8 _scaled_mm"}
    assert all(t.median > 0 for t in times.values())
    with pytest.raises(ValueError, match="n=4"):
        fp8.time_matmuls(4, "cpu")


@pytest.mark.gpu
def test_scaled_mm_on_an_fp8_gpu(gen):
    if not (torch.cuda.is_available() and fp8.has_fp8_tensor_cores("cuda")):
        pytest.skip("needs a CUDA GPU with FP8 tensor cores (sm89/sm90)")
    a = torch.randn(128, 256, generator=gen).cuda()
    b = torch.randn(256, 64, generator=gen).cuda()
    for rowwise in (False, True):
        got = fp8.scaled_mm(a, b, rowwise=rowwise)
        torch.testing.assert_close(got, fp8.emulated_mm(a, b, rowwise=rowwise), rtol=1e-3, atol=1e-3)
