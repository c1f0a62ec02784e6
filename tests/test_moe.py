"""Properties of helpers.moe: routing, balance losses, aux-loss-free bias, dispatch (Hugging Face parity:
test_interop_deepseek.py)."""

import math

import pytest
import torch

from helpers.config import ModelConfig
from helpers.model import Transformer
from helpers.moe import (
    Gate,
    MoE,
    dispatch_grouped,
    dispatch_loop,
    load_entropy,
    loss_free_update,
    max_vio,
    moe_layers,
    seq_aux_loss,
    switch_aux_loss,
)


def moe_cfg(**changes) -> ModelConfig:
    base = dict(dim=32, n_layers=2, n_heads=4, inter_dim=64, max_seq_len=32, n_routed_experts=8,
                n_activated_experts=2, moe_inter_dim=16)
    base.update(changes)
    return ModelConfig(**base)


def randomise_gate(gate: Gate, std: float = 1.0) -> None:
    """Spread the router's scores so routing decisions are far from ties."""
    with torch.no_grad():
        gate.weight.normal_(std=std)


ROUTING_CONFIGS = {
    "softmax": moe_cfg(),
    "sigmoid": moe_cfg(score_func="sigmoid", route_scale=2.5),
    "groups": moe_cfg(score_func="sigmoid", n_expert_groups=4, n_limited_groups=2, n_activated_experts=3),
    "k1-unnormalised": moe_cfg(n_activated_experts=1, norm_topk_prob=False),
}


@pytest.mark.parametrize("name", list(ROUTING_CONFIGS))
def test_every_token_gets_exactly_k_distinct_experts(name):
    cfg = ROUTING_CONFIGS[name]
    gate = Gate(cfg)
    randomise_gate(gate)
    r = gate(torch.randn(40, cfg.dim))
    K = cfg.n_activated_experts
    assert r.indices.shape == (40, K)
    assert all(len(set(row)) == K for row in r.indices.tolist())
    assert int(r.indices.min()) >= 0 and int(r.indices.max()) < cfg.n_routed_experts
    # the chosen experts are the K best (biased) scores when there is no group limit
    if cfg.n_expert_groups == 1:
        kth = r.scores.topk(K, dim=-1).values[:, -1:]
        assert (r.scores.gather(1, r.indices) >= kth).all()


@pytest.mark.parametrize("score_func", ["softmax", "sigmoid"])
def test_renormalised_gates_sum_to_route_scale(score_func):
    cfg = moe_cfg(score_func=score_func, route_scale=2.5, n_activated_experts=3)
    gate = Gate(cfg)
    randomise_gate(gate)
    r = gate(torch.randn(30, cfg.dim))
    torch.testing.assert_close(r.weights.sum(-1), torch.full((30,), 2.5))
    # without renormalisation the gates are the raw scores times route_scale
    raw = Gate(cfg.replace(norm_topk_prob=False))
    raw.load_state_dict(gate.state_dict())
    r2 = raw(torch.randn(30, cfg.dim))
    torch.testing.assert_close(r2.weights, 2.5 * r2.scores.gather(1, r2.indices))


def uniform_routing(N: int, E: int, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every expert gets exactly N·K/E assignments and every probability is 1/E."""
    assert (N * K) % E == 0
    indices = (torch.arange(N).unsqueeze(1) * K + torch.arange(K)) % E  # (N, K), distinct per row
    probs = torch.full((N, E), 1.0 / E)
    return probs, indices


@pytest.mark.parametrize("K", [1, 2])
def test_balance_losses_equal_alpha_under_uniform_routing(K):
    E, alpha = 8, 0.03
    probs, indices = uniform_routing(16, E, K)
    torch.testing.assert_close(switch_aux_loss(probs, indices, alpha), torch.tensor(alpha))
    torch.testing.assert_close(seq_aux_loss(probs.view(2, 8, E), indices.view(2, 8, K), alpha),
                               torch.tensor(alpha))


def test_balance_losses_grow_under_imbalance():
    E, K, alpha = 8, 2, 0.01
    probs = torch.softmax(torch.randn(16, E), -1)
    skew = torch.zeros(E)
    skew[:2] = 5.0  # experts 0 and 1 favoured
    skewed_probs = torch.softmax(torch.randn(16, E) + skew, -1)
    collapsed = torch.tensor([[0, 1]] * 16)
    _, uniform = uniform_routing(16, E, K)
    assert switch_aux_loss(skewed_probs, collapsed, alpha) > 2 * alpha
    assert switch_aux_loss(skewed_probs, collapsed, alpha) > switch_aux_loss(probs, uniform, alpha)
    assert seq_aux_loss(skewed_probs.view(2, 8, E), collapsed.view(2, 8, K), alpha) > 2 * alpha
    # with a single sequence the V3 sequence-wise loss is the Switch loss
    torch.testing.assert_close(seq_aux_loss(skewed_probs.view(1, 16, E), collapsed.view(1, 16, K), alpha),
                               switch_aux_loss(skewed_probs, collapsed, alpha))


def test_switch_loss_uses_hard_counts():
    E, K, alpha = 8, 2, 0.01
    logits = torch.randn(24, E, requires_grad=True)
    probs = logits.softmax(-1)
    indices = probs.topk(K, dim=-1).indices
    loss = switch_aux_loss(probs, indices, alpha)
    # the gradient equals the one through P alone, with f held fixed at the hard counts
    f = torch.bincount(indices.flatten(), minlength=E).float() / indices.numel()
    expected = torch.autograd.grad(alpha * E * (f * probs.mean(0)).sum(), logits, retain_graph=True)[0]
    torch.testing.assert_close(torch.autograd.grad(loss, logits)[0], expected)
    # a tiny change of the logits that keeps the argmax keeps f: the loss moves only through P
    nudged = (logits + 1e-4 * torch.randn_like(logits)).softmax(-1)
    assert torch.equal(nudged.topk(K, dim=-1).indices, indices)
    loss2 = switch_aux_loss(nudged, indices, alpha)
    manual = alpha * E * (f * nudged.mean(0)).sum()
    torch.testing.assert_close(loss2, manual)


def test_moe_balance_loss_by_mode():
    x = torch.randn(2, 12, 32)
    for mode in ["none", "loss_free"]:
        assert MoE(moe_cfg(balance=mode))(x).balance_loss.item() == 0.0
    aux = MoE(moe_cfg(balance="aux", aux_loss_alpha=0.5))
    res = aux(x)
    r = aux.gate(x.view(-1, 32))
    torch.testing.assert_close(res.balance_loss, switch_aux_loss(r.probs, r.indices, 0.5))
    seq = MoE(moe_cfg(balance="seq_aux", aux_loss_alpha=0.5, score_func="sigmoid"))
    res = seq(x)
    r = seq.gate(x.view(-1, 32))
    expected = seq_aux_loss(r.probs.view(2, 12, 8), r.indices.view(2, 12, 2), 0.5)
    torch.testing.assert_close(res.balance_loss, expected)
    res.balance_loss.backward()
    assert seq.gate.weight.grad is not None and seq.gate.weight.grad.abs().sum() > 0


def test_bias_changes_selection_but_not_gate_values():
    cfg = moe_cfg(score_func="sigmoid", route_scale=2.5)
    gate = Gate(cfg)
    randomise_gate(gate)
    x = torch.randn(64, cfg.dim)
    before = gate(x)
    with torch.no_grad():
        gate.bias[3] = 10.0  # expert 3 now wins every selection
    after = gate(x)
    assert (after.indices == 3).any(-1).all() and not (before.indices == 3).any(-1).all()
    torch.testing.assert_close(after.scores, before.scores)  # scores ignore the bias
    # gate values are the unbiased scores of the chosen experts, renormalised, times route_scale
    chosen = after.scores.gather(1, after.indices)
    torch.testing.assert_close(after.weights, 2.5 * chosen / chosen.sum(-1, keepdim=True))
    # same chosen experts → same gate values, whatever the bias: a bias that does not change any
    # token's selection leaves the gates bit-for-bit identical
    with torch.no_grad():
        gate.bias.zero_()
        gate.bias += 1e-3 * torch.arange(8.0) / 8  # far smaller than the score gaps here
    small = gate(x)
    same = (small.indices.sort(-1).values == before.indices.sort(-1).values).all(-1)
    assert same.float().mean() > 0.5
    torch.testing.assert_close(small.weights.sort(-1).values[same], before.weights.sort(-1).values[same])


def test_bias_is_a_buffer_and_gets_no_gradient():
    model = Transformer(moe_cfg(balance="loss_free"))
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.endswith("gate.bias") for n in names)
    assert any(n.endswith("gate.bias") for n in model.state_dict())  # saved with the model
    layer = moe_layers(model)[0]
    with torch.no_grad():
        layer.gate.bias.normal_()
    idx = torch.randint(0, 256, (2, 16))
    model.run(idx, targets=idx).loss.backward()
    assert layer.gate.bias.grad is None and not layer.gate.bias.requires_grad
    assert layer.gate.weight.grad is not None


def test_after_optimizer_step_moves_bias_toward_underloaded_experts():
    gamma = 0.05
    model = Transformer(moe_cfg(balance="loss_free", bias_update_speed=gamma)).train()
    layers = moe_layers(model)
    idx = torch.randint(0, 256, (2, 16))
    out1, out2 = model.run(idx), model.run(idx)  # two forwards before one step: loads accumulate
    loads = [a.counts + b.counts for a, b in zip(out1.moe, out2.moe)]
    before = [m.gate.bias.clone() for m in layers]
    model.after_optimizer_step()
    for m, load, b0 in zip(layers, loads, before):
        step = m.gate.bias - b0
        expected = gamma * torch.sign(load.float().mean() - load.float())
        torch.testing.assert_close(step, expected)
        assert (step[load == load.max()] < 0).all() and (step[load == load.min()] > 0).all()
        assert m.load.sum() == 0  # counts reset
    # evaluation forwards do not count toward the next update, and other modes never move the bias
    model.eval()
    model.run(idx)
    assert all(m.load.sum() == 0 for m in layers)
    aux = Transformer(moe_cfg(balance="aux")).train()
    aux.run(idx)
    aux.after_optimizer_step()
    assert all(m.gate.bias.abs().sum() == 0 for m in moe_layers(aux))


def test_loss_free_update_function():
    bias = torch.tensor([0.0, 0.1, -0.1, 0.0])
    load = torch.tensor([10.0, 2.0, 4.0, 4.0])  # mean 5
    torch.testing.assert_close(loss_free_update(bias, load, 0.01), torch.tensor([-0.01, 0.11, -0.09, 0.01]))


def test_bias_balancing_reduces_max_vio():
    """A router skewed toward a few experts becomes balanced by the bias rule alone."""
    cfg = moe_cfg(score_func="sigmoid", balance="loss_free", bias_update_speed=0.05)
    layer = MoE(cfg).train()
    with torch.no_grad():
        layer.gate.weight.normal_(std=0.3)
        layer.gate.weight[:2] += 0.5 * torch.ones(cfg.dim)  # experts 0, 1 favoured by every token
    x = torch.randn(4, 16, cfg.dim) + 0.5
    with torch.no_grad():
        start = layer(x).max_vio
        for _ in range(60):
            layer(x)
            layer.after_optimizer_step()
        end = layer(x).max_vio
    assert start > 1.0 and end < 0.5 * start


def test_group_limited_routing_stays_inside_top_groups():
    cfg = moe_cfg(score_func="sigmoid", n_routed_experts=16, n_expert_groups=4, n_limited_groups=2,
                  n_activated_experts=3)
    gate = Gate(cfg)
    randomise_gate(gate)
    with torch.no_grad():
        gate.bias.normal_(std=0.2)
    x = torch.randn(50, cfg.dim)
    r = gate(x)
    biased = (r.scores + gate.bias).view(50, 4, 4)
    group_scores = biased.topk(2, dim=-1).values.sum(-1)  # (N, G)
    top_groups = group_scores.topk(2, dim=-1).indices.sort(-1).values
    chosen_groups = r.indices // 4
    for t in range(50):
        assert set(chosen_groups[t].tolist()) <= set(top_groups[t].tolist())
    # and the group limit changes decisions compared with plain top-K
    free = Gate(cfg.replace(n_expert_groups=1, n_limited_groups=1))
    free.load_state_dict(gate.state_dict())
    assert not torch.equal(free(x).indices.sort(-1).values, r.indices.sort(-1).values)


def test_group_limit_holds_when_every_biased_score_is_negative():
    """Sigmoid scores plus a bias around -1.2: every selection score is negative. Dropped groups must
    be masked with -inf; a 0.0 fill (the bug Hugging Face fixed in transformers 5.6) would make every
    dropped expert beat every kept one, so top-K would pick only experts of groups that were dropped."""
    cfg = moe_cfg(score_func="sigmoid", n_routed_experts=16, n_expert_groups=4, n_limited_groups=2,
                  n_activated_experts=3)
    gate = Gate(cfg)
    randomise_gate(gate)
    with torch.no_grad():
        gate.bias.normal_(-1.2, 0.05)
    x = torch.randn(50, cfg.dim)
    r = gate(x)
    biased = r.scores + gate.bias  # (N, E)
    assert biased.max() < 0  # the case the test is about
    group_scores = biased.view(50, 4, 4).topk(2, dim=-1).values.sum(-1)  # (N, G)
    top_groups = group_scores.topk(2, dim=-1).indices  # (N, 2)
    in_top_group = (r.indices // 4).unsqueeze(-1) == top_groups.unsqueeze(1)  # (N, K, 2)
    assert in_top_group.any(-1).all()  # every chosen expert lies in one of the token's kept groups
    assert torch.isfinite(r.weights).all() and (r.weights > 0).all()


@pytest.mark.parametrize("shared", [0, 2])
def test_dispatch_equals_reference_loop(shared):
    cfg = moe_cfg(n_shared_experts=shared, n_activated_experts=3)
    layer = MoE(cfg)
    randomise_gate(layer.gate)
    x = torch.randn(2, 10, cfg.dim, requires_grad=True)
    fast = layer(x)
    layer.dispatch = "loop"
    slow = layer(x)
    torch.testing.assert_close(fast.out, slow.out, atol=1e-6, rtol=1e-5)
    # gradients agree too (experts and router weights)
    g_fast = torch.autograd.grad(fast.out.square().sum(), [x, layer.gate.weight, layer.experts[0].w1.weight])
    g_slow = torch.autograd.grad(slow.out.square().sum(), [x, layer.gate.weight, layer.experts[0].w1.weight])
    for a, b in zip(g_fast, g_slow):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # and the functions directly, on an expert that gets no token
    flat = x.detach().view(-1, cfg.dim)
    idx = torch.randint(0, 7, (20, 1))  # expert 7 unused
    w = torch.rand(20, 1)
    torch.testing.assert_close(dispatch_grouped(flat, idx, w, layer.experts),
                               dispatch_loop(flat, idx, w, layer.experts), atol=1e-6, rtol=1e-5)


def test_moe_in_transformer_and_counts():
    cfg = moe_cfg(n_dense_layers=1, n_layers=3, balance="aux")
    model = Transformer(cfg)
    assert len(moe_layers(model)) == 2
    idx = torch.randint(0, 256, (2, 12))
    out = model.run(idx, targets=idx)
    assert len(out.moe) == 2
    for res in out.moe:
        assert res.out.shape == (2, 12, cfg.dim) and res.counts.shape == (8,)
        assert int(res.counts.sum()) == 2 * 12 * 2  # N·K assignments
        assert res.indices.shape == (2, 12, 2) and res.scores.shape == (2, 12, 8)
    torch.testing.assert_close(out.aux_loss, sum(r.balance_loss for r in out.moe))


def test_metrics():
    assert max_vio(torch.tensor([4, 4, 4, 4])).item() == 0.0
    assert max_vio(torch.tensor([8, 0, 0, 0])).item() == 3.0  # (8 − 2) / 2
    assert load_entropy(torch.tensor([5, 5, 5, 5])).item() == pytest.approx(2.0)
    assert load_entropy(torch.tensor([7, 0, 0, 0])).item() == pytest.approx(0.0)
    batched = max_vio(torch.tensor([[1, 1], [3, 1]]))
    torch.testing.assert_close(batched, torch.tensor([0.0, 0.5], dtype=torch.float64))
    assert math.isclose(load_entropy(torch.ones(8)).item(), 3.0)


def test_bad_configs_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="n_activated_experts=9 exceeds n_routed_experts=8"):
        moe_cfg(n_activated_experts=9)
    with pytest.raises(ValueError, match="n_routed_experts=8 is not divisible by n_expert_groups=3"):
        moe_cfg(n_expert_groups=3)
    with pytest.raises(ValueError, match="n_limited_groups=5 exceeds n_expert_groups=4"):
        moe_cfg(n_expert_groups=4, n_limited_groups=5)
    with pytest.raises(ValueError, match="cannot hold n_activated_experts=3"):
        moe_cfg(n_expert_groups=4, n_limited_groups=1, n_activated_experts=3)
    with pytest.raises(ValueError, match="n_activated_experts=0 must be positive"):
        moe_cfg(n_activated_experts=0)
    with pytest.raises(ValueError, match="balance='auxx'"):
        moe_cfg(balance="auxx")
    with pytest.raises(ValueError, match="n_routed_experts > 0"):
        MoE(moe_cfg(n_routed_experts=0))
    with pytest.raises(ValueError, match=r"shape \(B, T, D=32\)"):
        MoE(moe_cfg())(torch.randn(4, 16))


def test_toy_simulation_collapses_and_both_fixes_rescue_it():
    from helpers.lessons.routing_toy import simulate_routing

    collapsed = simulate_routing(steps=200)
    assert (collapsed.loads.sum(-1) == 512).all()  # N·K assignments every step (K = 1)
    assert collapsed.final_max_vio > 2.0  # most of the 8 experts end up with no tokens
    aux = simulate_routing(steps=200, alpha=1.0)
    free = simulate_routing(steps=200, gamma=0.01)
    assert aux.final_max_vio < 0.5 and free.final_max_vio < 0.5
    assert aux.bias.abs().sum() == 0 and free.bias.abs().sum() > 0
    # in this toy, the balanced routers also fit the clusters better than the collapsed one
    assert aux.loss[-1] < collapsed.loss[-1] and free.loss[-1] < collapsed.loss[-1]
    with pytest.raises(ValueError, match="top_k=9"):
        simulate_routing(top_k=9)


def test_bench_suite_names_and_values():
    """Structure only (timings are never asserted): names, finite positive values, consistent ratio."""
    from helpers import bench
    from helpers.bench import moe as moe_bench

    assert "moe" in bench.suites()
    sizes = dict(moe_bench.HF_SIZES, hidden_size=32, moe_intermediate_size=16)
    out = moe_bench.run(quick=True, n_tokens=64, loop_tokens=16, sizes=sizes)
    assert set(out) == {"moe.ours_ms@64", "moe.hf_ms@64", "moe.hf_eager_ms@64", "moe.ours_over_hf",
                        "moe.dispatch_speedup"}
    assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in out.values())
    assert out["moe.ours_over_hf"] == pytest.approx(out["moe.ours_ms@64"] / out["moe.hf_ms@64"])
    with pytest.raises(ValueError, match="loop_tokens=99"):
        moe_bench.run(quick=True, n_tokens=64, loop_tokens=99, sizes=sizes)


# --- token dropping at a capacity factor (GShard/Switch; what DeepSeek-V3 does not do) ---------------
def _capacity_by_hand(indices, n_experts, capacity):
    """The reference: serve first choices of every token in order, then second choices, counting slots."""
    used = [0] * n_experts
    keep = [[False] * indices.shape[1] for _ in range(indices.shape[0])]
    for k in range(indices.shape[1]):
        for t in range(indices.shape[0]):
            e = int(indices[t, k])
            if used[e] < capacity:
                used[e] += 1
                keep[t][k] = True
    return torch.tensor(keep)


def test_capacity_mask_matches_the_slot_by_slot_reference():
    from helpers.moe import capacity_mask, expert_capacity

    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        E, K, N = 6, 2, 40
        idx = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(N)])
        idx[:25, 0] = 0  # a hot expert, so dropping happens
        for cap in (1, 3, 7, 13, 80):
            assert torch.equal(capacity_mask(idx, E, cap), _capacity_by_hand(idx, E, cap))
    assert expert_capacity(1024, 2, 8, 1.0) == 256 and expert_capacity(1024, 2, 8, 1.25) == 320
    assert expert_capacity(3, 1, 8, 1.0) == 1  # never zero slots
    with pytest.raises(ValueError, match="capacity_factor"):
        expert_capacity(10, 2, 8, 0.0)


def test_a_capacity_factor_drops_over_full_experts_and_only_them():
    cfg = ModelConfig(dim=16, n_heads=2, n_routed_experts=4, n_activated_experts=2, moe_inter_dim=8)
    torch.manual_seed(0)
    free = MoE(cfg).eval()
    with torch.no_grad():
        free.gate.bias.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0]))  # expert 0 chosen by every token
    tight = MoE(cfg.replace(capacity_factor=1.0)).eval()
    tight.load_state_dict(free.state_dict())
    x = torch.randn(2, 10, 16)
    with torch.no_grad():
        a, b = free(x), tight(x)
    idx = a.indices.reshape(-1, 2)
    keep = _capacity_by_hand(idx, 4, 10)  # C = ceil(1.0 · 20·2 / 4) = 10
    assert b.dropped == pytest.approx(1 - keep.float().mean().item()) and b.dropped > 0
    assert torch.equal(b.weights.reshape(-1, 2), a.weights.reshape(-1, 2) * keep)
    assert torch.equal(b.counts, a.counts)  # the router's choices are counted before dropping
    expected = dispatch_loop(x.reshape(-1, 16), idx, a.weights.reshape(-1, 2) * keep, free.experts)
    torch.testing.assert_close(b.out.reshape(-1, 16), expected, rtol=1e-5, atol=1e-6)
    roomy = MoE(cfg.replace(capacity_factor=4.0)).eval()  # C = N·K: nothing can be dropped
    roomy.load_state_dict(free.state_dict())
    with torch.no_grad():
        c = roomy(x)
    assert c.dropped == 0.0 and torch.equal(c.out, a.out)
    with pytest.raises(ValueError, match="capacity_factor"):
        cfg.replace(capacity_factor=-1.0)
