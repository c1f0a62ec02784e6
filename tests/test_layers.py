"""helpers.layers: RMSNorm and the SwiGLU MLP, each against its paper's formula written independently."""

import torch

from helpers.layers import MLP, RMSNorm, stacked_weight


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


# --- the decode paths (taken under torch.inference_mode) equal the formulas -------------------------
def test_rmsnorm_decode_path_equals_reference():
    norm = RMSNorm(24)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 5, 24) * 3
    with torch.inference_mode():
        fast = norm(x)
    torch.testing.assert_close(fast, norm.reference(x), atol=1e-6, rtol=1e-6)


def test_mlp_decode_path_equals_reference():
    mlp = MLP(16, 40)
    x = torch.randn(2, 3, 16)
    with torch.inference_mode():
        fast = mlp(x)
    torch.testing.assert_close(fast, mlp.reference(x), atol=1e-6, rtol=1e-5)


def test_stacked_weight_is_kept_until_a_weight_changes():
    mlp = MLP(8, 4)
    first = stacked_weight(mlp, mlp.w1, mlp.w3)
    assert torch.equal(first, torch.cat([mlp.w1.weight, mlp.w3.weight]).T)  # (in, Σ out)
    assert first.is_contiguous()
    assert stacked_weight(mlp, mlp.w1, mlp.w3) is first  # built once
    assert torch.equal(stacked_weight(mlp, mlp.w2), mlp.w2.weight.T)  # a second entry, kept apart
    with torch.no_grad():
        mlp.w3.weight.add_(1.0)  # an in-place update (an optimiser step) bumps the version
    second = stacked_weight(mlp, mlp.w1, mlp.w3)
    assert second is not first and torch.equal(second[:, 4:], mlp.w3.weight.T)
    x = torch.randn(2, 8)
    with torch.inference_mode():
        fast = mlp(x)
    torch.testing.assert_close(fast, mlp.reference(x), atol=1e-6, rtol=1e-5)  # not a stale stack


def test_stacked_weight_of_a_module_made_under_inference_mode():
    """Inference tensors carry no version counter: the stack is then rebuilt on every call."""
    with torch.inference_mode():
        mlp = MLP(8, 4)
        x = torch.randn(2, 8)
        torch.testing.assert_close(mlp(x), mlp.reference(x), atol=1e-6, rtol=1e-5)
