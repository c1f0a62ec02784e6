"""Lesson 04's toy of the routing dynamics: routers learning by gradient descent on a task small enough
to run in milliseconds per step, so that sliders can steer it (``helpers.moe`` holds the mechanism)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..moe import _count, loss_free_update, max_vio, switch_aux_loss
from ..validate import check_int, check_number


@dataclass
class ToyRun:
    loads: torch.Tensor  # (St, E) tokens per expert at each step
    loss: torch.Tensor  # (St,) the task's mean squared error at each step
    bias: torch.Tensor  # (St, E) selection bias after each step

    @property
    def final_max_vio(self) -> float:
        """MaxVio of the load summed over the last 20 steps."""
        return max_vio(self.loads[-20:].sum(0)).item()


def simulate_routing(n_experts: int = 8, top_k: int = 1, noise: float = 0.0, alpha: float = 0.0,
                     gamma: float = 0.0, steps: int = 300, n_tokens: int = 512, dim: int = 8,
                     n_clusters: int = 8, lr: float = 0.5, seed: int = 0) -> ToyRun:
    """Routers learning by gradient descent, small enough to run in milliseconds per step.

    Tokens x come from ``n_clusters`` clusters, each with its own linear target map y = A_c x. Each
    expert is a linear map W_e; the router scores experts with sigmoid(x Rᵀ + noise·ε), picks the top-K
    of score + bias, and the output is Σ_k s_k W_k x (gates not renormalised, so the router gets a
    gradient even for K = 1). One full-batch SGD step per iteration on the squared error plus
    ``alpha`` × the Switch balance loss; then the aux-loss-free rule moves the bias by ``gamma``.
    Only the chosen experts receive gradient: the ones chosen early get better and get chosen more.
    """
    where = "simulate_routing"
    for name, value in (("n_experts", n_experts), ("steps", steps), ("n_tokens", n_tokens), ("dim", dim),
                        ("n_clusters", n_clusters)):
        check_int(name, value, min_value=1, where=where)
    check_int("top_k", top_k, min_value=1, max_value=n_experts, where=where)
    check_int("seed", seed, where=where)
    for name, value in (("noise", noise), ("alpha", alpha), ("gamma", gamma)):
        check_number(name, value, min_value=0.0, where=where)
    check_number("lr", lr, min_value=0.0, strict_min=True, where=where)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors this small run fastest (and steadiest) on one thread
    try:
        return _simulate(n_experts, top_k, noise, alpha, gamma, steps, n_tokens, dim, n_clusters, lr, seed)
    finally:
        torch.set_num_threads(threads)


def _simulate(n_experts, top_k, noise, alpha, gamma, steps, n_tokens, dim, n_clusters, lr, seed) -> ToyRun:
    g = torch.Generator().manual_seed(seed)
    centers = 2 * torch.randn(n_clusters, dim, generator=g)
    maps = torch.randn(n_clusters, dim, dim, generator=g) / math.sqrt(dim)
    cluster = torch.randint(n_clusters, (n_tokens,), generator=g)
    x = centers[cluster] + 0.5 * torch.randn(n_tokens, dim, generator=g)  # (N, d)
    y = torch.einsum("nij,nj->ni", maps[cluster], x)  # (N, d)
    W = (0.01 * torch.randn(n_experts, dim, dim, generator=g)).requires_grad_()  # (E, d, d)
    R = (0.01 * torch.randn(n_experts, dim, generator=g)).requires_grad_()  # (E, d)
    bias = torch.zeros(n_experts)
    loads, losses, biases = [], [], []
    for _ in range(steps):
        logits = x @ R.T + noise * torch.randn(n_tokens, n_experts, generator=g)  # (N, E)
        scores = logits.sigmoid()
        idx = (scores.detach() + bias).topk(top_k, dim=-1).indices  # (N, K)
        pred = torch.einsum("nk,nkij,nj->ni", scores.gather(1, idx), W[idx], x)  # (N, d)
        mse = (pred - y).pow(2).mean()
        loss = mse + switch_aux_loss(scores / scores.sum(-1, keepdim=True), idx, alpha)
        gW, gR = torch.autograd.grad(loss, [W, R])
        with torch.no_grad():
            W -= lr * gW
            R -= lr * gR
        counts = _count(idx, n_experts)
        bias = loss_free_update(bias, counts, gamma)
        loads.append(counts)
        losses.append(mse.detach())
        biases.append(bias)
    return ToyRun(torch.stack(loads), torch.stack(losses), torch.stack(biases))
