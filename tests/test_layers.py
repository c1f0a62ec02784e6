"""helpers.layers: RMSNorm and the SwiGLU MLP, each against its paper's formula written independently."""

import torch

from helpers.layers import MLP, RMSNorm


def test_rmsnorm_formula():
    norm = RMSNorm(8, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_()
    x = torch.randn(3, 8)
    expected = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected)


def test_rmsnorm_normalises_in_float32_like_the_references():
    """A bf16 input is normalised in float32 and cast back before the weight (Llama, DeepSeek-V3)."""
    norm = RMSNorm(8)
    x = torch.randn(3, 8).to(torch.bfloat16)
    xf = x.float()
    normalised = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + norm.eps)
    expected = norm.weight * normalised.to(torch.bfloat16)
    assert torch.equal(norm(x), expected)


def test_mlp_is_swiglu_with_gate_w1_up_w3_down_w2():
    """SwiGLU (Shazeer 2020): (Swish(x W) ⊗ x V) W2, Swish(z) = z·σ(z); W = w1 (gate), V = w3 (up)."""
    mlp = MLP(8, 16)
    x = torch.randn(2, 8)
    W, V, W2 = mlp.w1.weight.T, mlp.w3.weight.T, mlp.w2.weight.T  # (8, 16), (8, 16), (16, 8)
    gate = x @ W
    expected = (gate * torch.sigmoid(gate) * (x @ V)) @ W2
    torch.testing.assert_close(mlp(x), expected)
    swapped = (x @ V * torch.sigmoid(x @ V) * gate) @ W2  # gate and up the wrong way round
    assert not torch.allclose(mlp(x), swapped, atol=1e-4)
