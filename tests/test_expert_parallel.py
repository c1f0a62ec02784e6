"""helpers.expert_parallel: the distributed layer equals the single-process MoE (forward and gradients),
the traffic counts on hand-made routings, node-limited routing, the schedules, and the error cases with
nothing left running. Each spawn costs seconds on 2 cores: the distributed tests are few and tiny."""

import multiprocessing
import os
import signal

import pytest
import torch

from helpers.config import ModelConfig
from helpers.expert_parallel import (
    ExpertParallelError,
    dualpipe_bubble,
    ep_forward,
    ep_run,
    expert_ranks,
    makespan,
    node_limited_topk,
    one_f_one_b,
    pipeline_bubble,
    rank_loads,
    token_ranks,
    traffic,
    two_stream_schedule,
)
from helpers.moe import MoE, group_limit_mask


def children_of_me() -> list[int]:
    """Live (non-zombie) child processes of this process, read from /proc (no psutil)."""
    me, kids = os.getpid(), []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z":
            kids.append(int(pid))
    return kids


def no_rank_left(before: list[int]) -> bool:
    """No child started by the call survives it (the resource tracker, shared by all, is not a rank)."""
    new = [p for p in children_of_me() if p not in before]
    cmd = [open(f"/proc/{p}/cmdline").read() for p in new if os.path.exists(f"/proc/{p}/cmdline")]
    return not multiprocessing.active_children() and not [c for c in cmd if "resource_tracker" not in c]


def small_moe(**kw) -> MoE:
    cfg = ModelConfig(dim=16, n_heads=2, n_routed_experts=kw.pop("E", 4), n_activated_experts=kw.pop("K", 2),
                      moe_inter_dim=8, **kw)
    return MoE(cfg)


def reference(moe, x, g):
    xx = x.clone().requires_grad_()
    out = moe(xx).out
    out.backward(g)
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in moe.named_parameters()}
    moe.zero_grad(set_to_none=True)
    return out.detach(), xx.grad, grads


def assert_run_equal(run, moe, x, g):
    out, x_grad, grads = reference(moe, x, g)
    torch.testing.assert_close(run.out, out)
    torch.testing.assert_close(run.x_grad, x_grad)
    assert set(run.grads) == set(grads)
    for name in grads:
        torch.testing.assert_close(run.grads[name], grads[name], msg=name)


# --- distributed equality ------------------------------------------------------------------------------
def test_two_ranks_forward_and_gradients_uneven_split():
    moe = small_moe(E=4, K=2)
    x, g = torch.randn(1, 7, 16), torch.randn(1, 7, 16)  # 7 tokens: shares of 4 and 3
    before = children_of_me()
    run = ep_run(moe, x, 2, grad_out=g)
    assert_run_equal(run, moe, x, g)
    assert run.sent.sum() == 7 * 2 and run.sent.tolist() != [[7, 7], [0, 0]]
    assert no_rank_left(before)


@pytest.mark.slow
def test_four_ranks_v3_router_with_groups_shared_bias_and_an_idle_rank():
    moe = small_moe(E=8, K=3, n_shared_experts=1, score_func="sigmoid", n_expert_groups=4, n_limited_groups=2,
                    route_scale=2.5, balance="loss_free")
    with torch.no_grad():
        moe.gate.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, -9.0, -9.0, 0.0, 0.0]))  # rank 2 starves
    x, g = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    assert (moe(x).indices // 2 != 2).all()  # the setting works: no token picks rank 2's experts
    before = children_of_me()
    run = ep_run(moe, x, 4, grad_out=g)
    assert run.sent[:, 2].sum() == 0
    assert_run_equal(run, moe, x, g)
    assert no_rank_left(before)


def test_rank_with_no_tokens_of_its_own():
    moe = small_moe(E=2, K=1, score_func="sigmoid")
    x = torch.randn(1, 1, 16)  # one token, two ranks: rank 1 holds none
    torch.testing.assert_close(ep_forward(moe, x, 2), moe(x).out)


# --- errors and clean-up --------------------------------------------------------------------------------
def test_errors_before_spawning():
    moe = small_moe(E=4, K=2)
    x = torch.randn(1, 4, 16)
    with pytest.raises(ValueError, match="world_size=3"):
        ep_forward(moe, x, 3)
    with pytest.raises(ValueError, match="cannot be started"):
        ep_forward(small_moe(E=64, K=2), x, 64)
    with pytest.raises(ValueError, match="world_size"):
        ep_forward(moe, x, 0)
    with pytest.raises(TypeError, match="moe"):
        ep_forward(torch.nn.Linear(16, 16), x, 2)
    with pytest.raises(ValueError, match="grad_out"):
        ep_run(moe, x, 2, grad_out=torch.randn(1, 3, 16))
    with pytest.raises(ValueError, match="fault"):
        ep_run(moe, x, 2, fault=(5, "raise"))
    assert not multiprocessing.active_children()


def test_failing_worker_raises_its_traceback_and_leaves_nothing():
    moe, x = small_moe(E=4, K=2), torch.randn(1, 4, 16)
    before = children_of_me()
    cause = r"rank 1 of 2 failed:(.|\n)*Traceback(.|\n)*injected fault"
    with pytest.raises(ExpertParallelError, match=cause):
        ep_forward(moe, x, 2, fault=(1, "raise"))
    assert no_rank_left(before)


@pytest.mark.slow
def test_hanging_worker_times_out_and_interrupt_cleans_up():
    moe, x = small_moe(E=4, K=2), torch.randn(1, 4, 16)
    before = children_of_me()
    with pytest.raises(TimeoutError, match="timeout_s=4"):
        ep_forward(moe, x, 2, fault=(0, "hang"), timeout_s=4)
    assert no_rank_left(before)

    def interrupt(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(4)
    try:
        with pytest.raises(KeyboardInterrupt):
            ep_forward(moe, x, 2, fault=(1, "hang"), timeout_s=60)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert no_rank_left(before)


# --- traffic, placement, node-limited routing (pure) ----------------------------------------------------
def test_placement():
    assert expert_ranks(8, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert token_ranks(7, 2).tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert token_ranks(1, 2).tolist() == [0]
    with pytest.raises(ValueError, match="n_experts=6"):
        expert_ranks(6, 4)
    assert rank_loads(torch.tensor([1, 2, 3, 4, 5, 6, 7, 8]), 4).tolist() == [3, 7, 11, 15]


def test_traffic_on_a_hand_made_routing():
    # 4 ranks, 2 per node (nodes {0,1} and {2,3}); 8 experts, 2 per rank; 4 tokens, one per rank.
    idx = torch.tensor([[0, 1],   # token on rank 0 → experts 0, 1: both on rank 0 (local)
                        [0, 6],   # token on rank 1 → ranks 0 (same node) and 3 (other node)
                        [4, 7],   # token on rank 2 → ranks 2 (itself) and 3 (same node)
                        [2, 5]])  # token on rank 3 → ranks 1 (other node) and 2 (same node)
    t = traffic(idx, 4, 8, ranks_per_node=2)
    assert t.assignments.tolist() == [[2, 0, 0, 0], [1, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 0]]
    assert t.tokens.tolist() == [[1, 0, 0, 0], [1, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 0]]
    assert t.node_tokens.tolist() == [[2, 1], [1, 2]]
    assert t.cross_node == 2 and t.cross_rank == 5  # 1→0, 1→3, 2→3, 3→1, 3→2
    assert t.nodes_per_token.tolist() == [1, 2, 1, 2]
    # two experts on one rank are one token sent, not two
    t2 = traffic(torch.tensor([[2, 3]]), 4, 8, token_rank=torch.tensor([0]))
    assert t2.assignments[0, 1] == 2 and t2.tokens[0, 1] == 1
    with pytest.raises(ValueError, match="indices"):
        traffic(torch.tensor([[8, 0]]), 4, 8)
    with pytest.raises(ValueError, match="ranks_per_node=3"):
        traffic(idx, 4, 8, ranks_per_node=3)


def test_sent_rows_match_the_traffic_count():
    moe, x = small_moe(E=4, K=2), torch.randn(2, 3, 16)
    run = ep_run(moe, x, 2)
    assert torch.equal(run.sent, traffic(moe(x).indices.view(6, 2), 2, 4).assignments)


def test_node_limited_topk():
    torch.manual_seed(3)
    scores = torch.rand(64, 16)
    limited = node_limited_topk(scores, 4, n_nodes=8, max_nodes=2)
    nodes = limited // 2
    assert all(len(set(row)) <= 2 for row in nodes.tolist())
    assert torch.equal(node_limited_topk(scores, 4, 8, 8), scores.topk(4, dim=-1).indices)
    mask = group_limit_mask(scores, 8, 2)  # the same rule as the router's group limit
    assert torch.equal(limited, scores.masked_fill(~mask, float("-inf")).topk(4, dim=-1).indices)
    free = traffic(scores.topk(4, dim=-1).indices, 8, 16).nodes_per_token
    assert (traffic(limited, 8, 16).nodes_per_token <= 2).all() and free.max() > 2
    with pytest.raises(ValueError, match="k=5"):
        node_limited_topk(scores, 5, 8, 2)  # 2 nodes hold only 4 experts


# --- schedules ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stages,micro", [(2, 2), (4, 8), (8, 16), (4, 5)])
def test_one_f_one_b_bubble_is_the_textbook_count(stages, micro):
    s = one_f_one_b(stages, micro, f=1, b=2)
    assert pipeline_bubble(s, 1, 2) == (stages - 1) * (1 + 2)
    assert all(len(ops) == 2 * micro for ops in s)


def test_overlap_hides_communication():
    ch = {"F": [("attn", "compute", 2), ("dispatch", "comm", 1), ("mlp", "compute", 2),
                ("combine", "comm", 1)],
          "B": [("combine", "comm", 1), ("mlp", "compute", 4), ("dispatch", "comm", 1),
                ("attn", "compute", 4)]}
    assert makespan(two_stream_schedule(ch, overlap=False)) == 16  # everything in a row
    assert makespan(two_stream_schedule(ch, overlap=True)) == 12  # = the compute alone
    assert dualpipe_bubble(8, 1, 2, 1, 3) == 3 * (3 + 2 - 3)
    with pytest.raises(ValueError, match="stages=3"):
        dualpipe_bubble(3, 1, 2, 1, 3)


def test_backend_choice_with_faked_gpus(monkeypatch):
    from helpers import expert_parallel as ep

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ep.pick_backend(2) == "gloo"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert ep.pick_backend(4) == "nccl" and ep.pick_backend(8) == "gloo"  # one GPU per rank, or the CPU
    assert ep.max_world_size("nccl") == 4
    with pytest.raises(ValueError, match="world_size=8 ranks cannot be started here: nccl"):
        ep_forward(small_moe(E=8, K=2), torch.randn(1, 4, 16), 8, backend="nccl")
