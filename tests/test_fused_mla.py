"""The single-pass absorbed decode (helpers.fused_mla) against the readable two-pass one: the compiled
loop where it builds, the torch fallback everywhere, and the MLA layer through either."""

import platform
from pathlib import Path

import pytest
import torch

from helpers import fused_mla as fm
from helpers.attention import rope_tables
from helpers.config import ModelConfig
from helpers.kv_cache import StaticKVCache
from helpers.mla import MLA, absorbed_attention_explicit

CPP = fm.backend() == "c++"


def inputs(B=2, H=4, Dc=64, Dr=16, S=100, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, 1, Dc, generator=g) * spread, torch.randn(B, H, 1, Dr, generator=g) * spread,
            torch.randn(B, S, Dc, generator=g), torch.randn(B, S, Dr, generator=g))


@pytest.mark.parametrize("B,H,Dc,Dr,S", [(2, 4, 64, 16, 100), (1, 6, 40, 8, 33), (3, 1, 512, 64, 300),
                                         (1, 4, 512, 64, 1), (2, 5, 48, 16, fm.TILE * 3)])
def test_both_backends_equal_the_two_pass_path(B, H, Dc, Dr, S):
    q_lat, q_pe, c_kv, k_pe = inputs(B, H, Dc, Dr, S, spread=0.5)
    ref = absorbed_attention_explicit(q_lat, q_pe, c_kv, k_pe, 0.1)
    for block in (1, 7, S, 10 * S):  # the torch fallback, block by block, and in one block
        torch.testing.assert_close(fm.online_softmax_blocks(q_lat, q_pe, c_kv, k_pe, 0.1, block), ref,
                                   rtol=1e-5, atol=1e-6)
    out = fm.absorbed_attention_fused(q_lat, q_pe, c_kv, k_pe, 0.1)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_a_peaked_softmax_whose_max_arrives_late_is_rescaled_right():
    """Scores that rise along the cache: every tile raises the running max, and the first tiles' weights
    must shrink to almost nothing. A loop that forgot to rescale (or rescaled the wrong way) is far off."""
    q_lat, q_pe, c_kv, k_pe = inputs(1, 4, 64, 16, 200, spread=0.0)
    q_lat[..., 0] = 1.0
    c_kv[..., 0] = torch.linspace(-30, 30, 200)  # head scores rise from −30·scale to +30·scale
    ref = absorbed_attention_explicit(q_lat, q_pe, c_kv, k_pe, 0.5)
    for out in (fm.absorbed_attention_fused(q_lat, q_pe, c_kv, k_pe, 0.5),
                fm.online_softmax_blocks(q_lat, q_pe, c_kv, k_pe, 0.5, 16)):
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_what_is_not_a_decode_step_goes_to_the_two_pass_path_exactly():
    q_lat, q_pe, c_kv, k_pe = inputs(S=12)
    q3 = torch.cat([q_lat] * 3, dim=2), torch.cat([q_pe] * 3, dim=2)  # T = 3: a prefill, causal
    assert torch.equal(fm.absorbed_attention_fused(*q3, c_kv, k_pe, 0.1),
                       absorbed_attention_explicit(*q3, c_kv, k_pe, 0.1))


def test_gradients_flow_through_the_fallback():
    q_lat, q_pe, c_kv, k_pe = inputs(S=20)
    q_lat.requires_grad_(True)
    fm.absorbed_attention_fused(q_lat, q_pe, c_kv, k_pe, 0.1).sum().backward()
    ref = q_lat.grad.clone()
    q_lat.grad = None
    absorbed_attention_explicit(q_lat, q_pe, c_kv, k_pe, 0.1).sum().backward()
    torch.testing.assert_close(ref, q_lat.grad, rtol=1e-5, atol=1e-6)


def test_the_environment_switch_forces_the_fallback(monkeypatch):
    monkeypatch.setenv(fm.BACKEND_VAR, "torch")
    assert fm.backend() == "torch" and fm.why_not_cpp() == f"{fm.BACKEND_VAR}=torch"
    called = []
    monkeypatch.setattr(fm, "online_softmax_blocks", lambda *a, **k: called.append(1) or "fallback")
    assert fm.absorbed_attention_fused(*inputs(S=5), 0.1) == "fallback" and called


def cpu_flags() -> set[str]:
    """The x86 CPU's feature flags (empty elsewhere)."""
    if platform.machine() not in ("x86_64", "AMD64") or not Path("/proc/cpuinfo").exists():
        return set()
    return {flag for line in open("/proc/cpuinfo") if line.startswith("flags") for flag in line.split()[2:]}


FLAGS = cpu_flags()
AVX512, AVX2 = "avx512f" in FLAGS, {"avx2", "fma"} <= FLAGS


def paths_here() -> dict[str, object]:
    """Every build of the loop this CPU can run, by the inner loops it runs: the native build, and the
    same source with AVX-512, then AVX2 as well, switched off."""
    builds = {fm._build().vector_path(): fm._build()}
    for variant in ("avx2", "portable") if AVX512 else ("portable",):
        ext = fm._build_variant(variant)
        assert not isinstance(ext, str), ext
        builds[ext.vector_path()] = ext
    return builds


@pytest.mark.skipif(not (CPP and FLAGS), reason="the vectorised forms need a C++ build on an x86 CPU")
def test_the_native_build_runs_the_widest_loops_this_cpu_has():
    """A typo in a feature test would silently run the portable loops everywhere (and the tests below
    would still pass): the native build must name the widest form, each variant its own."""
    want = "avx512" if AVX512 else "avx2" if AVX2 else "portable"
    assert fm.vector_path() == want
    assert set(paths_here()) == ({"avx512", "avx2", "portable"} if AVX512 else {want, "portable"})
    with pytest.raises(ValueError, match="variant must be one of"):
        fm._build_variant("avx1024")


@pytest.mark.skipif(not (CPP and FLAGS), reason="the vectorised forms need a C++ build on an x86 CPU")
@pytest.mark.parametrize("S,H,Dc,Dr", [(37, 4, 512, 64), (1, 4, 512, 64), (33, 8, 32, 16), (70, 6, 96, 32),
                                       (9, 3, 17, 5), (50, 8, 40, 8), (65, 4, 64, 12)])
def test_every_vectorised_path_agrees_with_the_portable_loops(S, H, Dc, Dr):
    """Each build this CPU can run (AVX-512 intrinsics, AVX2 intrinsics, the portable loops) equals the
    two-pass path, including the shapes the intrinsics hand to the portable loops (H not a multiple of 4,
    widths not multiples of the vector, latents left over after the blocks of 2 or 3, a 24-float group
    and an 8-float remainder, two head groups sharing one prefetch cursor)."""
    g = torch.Generator().manual_seed(S)
    q_lat, q_pe = torch.randn(2, H, 1, Dc, generator=g), torch.randn(2, H, 1, Dr, generator=g)
    c_kv, k_pe = torch.randn(2, S, Dc, generator=g), torch.randn(2, S, Dr, generator=g)
    want = absorbed_attention_explicit(q_lat, q_pe, c_kv, k_pe, 0.1)
    ql, qp = q_lat.reshape(2, H, Dc).contiguous(), q_pe.reshape(2, H, Dr).contiguous()
    args = (ql, qp, c_kv, k_pe, 0.1, fm.TILE)
    for name, ext in paths_here().items():
        got = ext.fused_decode(*args)
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), f"{name}: {(got - want).abs().max():.2e} off"


@pytest.mark.skipif(not CPP, reason=f"the C++ loop could not be built here: {fm.why_not_cpp()}")
def test_the_compiled_loop_is_the_one_that_runs_where_it_builds(monkeypatch):
    monkeypatch.setattr(fm, "online_softmax_blocks", lambda *a, **k: pytest.fail("fell back to torch"))
    fm.absorbed_attention_fused(*inputs(S=5), 0.1)


def test_an_mla_layer_decodes_the_same_through_the_fused_path():
    cfg = ModelConfig(dim=64, n_heads=4, attn_type="mla", q_lora_rank=0, kv_lora_rank=32, qk_nope_head_dim=16,
                      qk_rope_head_dim=8, v_head_dim=16, n_layers=1, max_seq_len=64, attn_impl="explicit")
    torch.manual_seed(0)
    layer = MLA(cfg).eval()
    x = torch.randn(2, 40, 64)
    cos, sin = rope_tables(8, 40)
    outs = {}
    for impl in ("explicit", "fused"):
        layer.impl = impl
        cache = StaticKVCache(1, 40)
        with torch.inference_mode():
            steps = [layer(x[:, :30], cos[:30], sin[:30], cache)]
            steps += [layer(x[:, t:t + 1], cos[t:t + 1], sin[t:t + 1], cache) for t in range(30, 40)]
        outs[impl] = torch.cat(steps, dim=1)
    torch.testing.assert_close(outs["fused"], outs["explicit"], rtol=1e-5, atol=1e-6)
