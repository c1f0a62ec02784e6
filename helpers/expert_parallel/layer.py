"""Expert parallelism on ``torch.distributed``: one MoE layer's routed experts spread over ranks.

DeepSeek-V3 §2.1.2 and §3.2: the routed experts live on different GPUs and nodes. Every MoE layer then
takes two all-to-all steps: **dispatch** (each token travels to the ranks that hold its chosen experts)
and **combine** (the experts' outputs travel back to the token's own rank, which adds them up with the
gates). Node-limited routing sends each token to at most ``M`` nodes (V3: M = 4 of 8), so that the slow
cross-node links carry less; it is group-limited routing (``helpers.moe.group_limit_mask``) with one
group per node.

``ep_forward(moe, x, world_size)`` runs a ``helpers.moe.MoE`` this way on real processes: ``world_size``
ranks spawned with ``torch.multiprocessing`` (start method "spawn"), joined by ``torch.distributed``
(gloo on the CPU, NCCL when every rank has its own CUDA device), each holding ``E / world_size``
routed experts and a contiguous share of the ``N = B·T`` tokens. Each rank routes its own tokens with
the (replicated) router, bias and group limit included, runs the (replicated) shared experts on them,
sends the (token, expert) rows to the experts' ranks with ``all_to_all_single`` (uneven splits), runs
its experts, sends the results back with a second ``all_to_all_single`` and combines. The result equals
``moe(x).out``; ``ep_run`` also runs a backward pass (the all-to-all's gradient is the all-to-all with
the splits swapped) and returns the gradients, which equal the single-process ones once the replicated
parameters' gradients are summed over ranks (an all-reduce, as data parallelism does).

The workers live in this module because a spawned process imports its target by name: a function
defined in a notebook cell cannot be found there. A worker's exception comes back as
``ExpertParallelError`` carrying its traceback; the processes are terminated and joined in a
``finally``, so nothing is left running after an error, a timeout or a KeyboardInterrupt.

The traffic accounting (``traffic``) and node-limited routing (``node_limited_topk``) are pure
functions of routing decisions and need no processes.

Shape letters (``docs/GLOSSARY.md``): N tokens, D width, E routed experts, K experts per token,
W world size (ranks), Wn ranks per node, Nn nodes, M nodes a token may use.
"""

from __future__ import annotations

import datetime
import io
import os
import queue as queue_module
import socket
import time
import traceback
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ..moe import MoE, group_limit_mask
from ..validate import check_activations, check_choice, check_int, check_number

WHERE = "ep_forward"


class ExpertParallelError(RuntimeError):
    """A rank failed; the message holds the rank's own traceback."""


# --- placement and traffic (pure functions) --------------------------------------------------------
def expert_ranks(n_experts: int, world_size: int) -> torch.Tensor:
    """(E,) the rank holding each routed expert: contiguous blocks of ``E / W`` experts per rank."""
    n_experts = check_int("n_experts", n_experts, min_value=1, where="expert_ranks")
    world_size = check_int("world_size", world_size, min_value=1, where="expert_ranks")
    if n_experts % world_size:
        raise ValueError(f"expert_ranks: n_experts={n_experts} is not divisible by world_size={world_size}; "
                         "every rank holds the same number of routed experts")
    return torch.arange(n_experts) // (n_experts // world_size)


def token_ranks(n_tokens: int, world_size: int) -> torch.Tensor:
    """(N,) the rank that owns each token: contiguous shares as ``torch.tensor_split`` makes them (the
    first ``N mod W`` ranks hold one token more; a rank may hold none when N < W)."""
    n_tokens = check_int("n_tokens", n_tokens, min_value=0, where="token_ranks")
    world_size = check_int("world_size", world_size, min_value=1, where="token_ranks")
    sizes = [len(c) for c in torch.tensor_split(torch.arange(n_tokens), world_size)]
    return torch.repeat_interleave(torch.arange(world_size), torch.tensor(sizes, dtype=torch.long))


@dataclass
class Traffic:
    """What one MoE layer's dispatch sends (the combine sends the same amounts back)."""

    assignments: torch.Tensor  # (W, W) (token, expert) rows sent from rank i to rank j
    tokens: torch.Tensor  # (W, W) tokens sent from rank i to rank j, once per destination rank
    node_tokens: torch.Tensor  # (Nn, Nn) tokens sent from node a to node b, once per destination node
    nodes_per_token: torch.Tensor  # (N,) distinct nodes each token visits

    @property
    def cross_node(self) -> int:
        """Tokens that cross a node boundary (once per destination node, as V3 sends them over IB)."""
        return int(self.node_tokens.sum() - self.node_tokens.diagonal().sum())

    @property
    def cross_rank(self) -> int:
        """Tokens that leave their rank (once per destination rank)."""
        return int(self.tokens.sum() - self.tokens.diagonal().sum())


def traffic(indices: torch.Tensor, world_size: int, n_experts: int, *, ranks_per_node: int = 1,
            token_rank: torch.Tensor | None = None) -> Traffic:
    """Count the dispatch of routing ``indices`` (N, K) over ``world_size`` ranks.

    Experts sit on ranks as ``expert_ranks`` places them; tokens on ``token_rank`` (default
    ``token_ranks(N, W)``); consecutive groups of ``ranks_per_node`` ranks form a node."""
    where = "traffic"
    world_size = check_int("world_size", world_size, min_value=1, where=where)
    n_experts = check_int("n_experts", n_experts, min_value=1, where=where)
    ranks_per_node = check_int("ranks_per_node", ranks_per_node, min_value=1, max_value=world_size,
                               where=where)
    if world_size % ranks_per_node:
        raise ValueError(f"traffic: world_size={world_size} is not divisible by "
                         f"ranks_per_node={ranks_per_node}")
    if not torch.is_tensor(indices) or indices.ndim != 2 or indices.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"traffic: indices must be an (N, K) integer tensor, got "
                         f"{getattr(indices, 'shape', type(indices).__name__)}")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= n_experts):
        raise ValueError(f"traffic: expert indices must be in [0, {n_experts}), got "
                         f"{int(indices.min())}..{int(indices.max())}")
    N, K = indices.shape
    e_rank = expert_ranks(n_experts, world_size)
    t_rank = token_ranks(N, world_size) if token_rank is None else token_rank.long()
    if t_rank.shape != (N,) or (N and (int(t_rank.min()) < 0 or int(t_rank.max()) >= world_size)):
        raise ValueError(f"traffic: token_rank must be (N,) = ({N},) ranks in [0, {world_size})")
    W, Nn = world_size, world_size // ranks_per_node
    src = t_rank.unsqueeze(1).expand(N, K)  # (N, K)
    dst = e_rank[indices.long()]  # (N, K)
    assignments = torch.bincount((src * W + dst).flatten(), minlength=W * W).view(W, W)
    hit_rank = torch.zeros(N, W, dtype=torch.bool).scatter_(1, dst, True)  # (N, W) ranks each token visits
    tokens = torch.zeros(W, W, dtype=torch.long).index_add_(0, t_rank, hit_rank.long())
    hit_node = hit_rank.view(N, Nn, ranks_per_node).any(-1)  # (N, Nn)
    src_node = t_rank // ranks_per_node
    node_tokens = torch.zeros(Nn, Nn, dtype=torch.long).index_add_(0, src_node, hit_node.long())
    return Traffic(assignments, tokens, node_tokens, hit_node.sum(-1))


def node_limited_topk(biased: torch.Tensor, k: int, n_nodes: int, max_nodes: int) -> torch.Tensor:
    """(N, K) experts chosen from ``biased`` (N, E) scores with at most ``max_nodes`` nodes per token.

    The E experts sit on ``n_nodes`` nodes in contiguous blocks; a node's score is the sum of its top-2
    biased scores (DeepSeek-V3; ``helpers.moe.group_limit_mask``); the best ``max_nodes`` nodes stay and
    the top-K experts are chosen among theirs. ``max_nodes = n_nodes`` is plain top-K."""
    where = "node_limited_topk"
    if not torch.is_tensor(biased) or biased.ndim != 2 or not biased.is_floating_point():
        raise ValueError(f"{where}: biased must be an (N, E) float tensor, got "
                         f"{getattr(biased, 'shape', type(biased).__name__)}")
    E = biased.shape[1]
    n_nodes = check_int("n_nodes", n_nodes, min_value=1, max_value=E, where=where)
    max_nodes = check_int("max_nodes", max_nodes, min_value=1, max_value=n_nodes, where=where)
    if E % n_nodes:
        raise ValueError(f"{where}: E={E} experts do not split evenly over n_nodes={n_nodes}")
    k = check_int("k", k, min_value=1, max_value=max_nodes * (E // n_nodes), where=where)
    if max_nodes < n_nodes:
        biased = biased.masked_fill(~group_limit_mask(biased, n_nodes, max_nodes), float("-inf"))
    return biased.topk(k, dim=-1).indices


def rank_loads(counts: torch.Tensor, world_size: int) -> torch.Tensor:
    """(…, W) routed rows each rank's experts process, from per-expert ``counts`` (…, E)."""
    world_size = check_int("world_size", world_size, min_value=1, where="rank_loads")
    E = counts.shape[-1]
    expert_ranks(E, world_size)  # checks divisibility
    return counts.reshape(*counts.shape[:-1], world_size, E // world_size).sum(-1)


# --- the distributed layer ---------------------------------------------------------------------------
@dataclass
class EPRun:
    """What ``ep_run`` brings back from the ranks, assembled in token order."""

    out: torch.Tensor  # (B, T, D) the layer's output
    x_grad: torch.Tensor | None  # (B, T, D) gradient of x (None without grad_out)
    grads: dict[str, torch.Tensor] | None  # parameter name → gradient, named as in moe.named_parameters()
    sent: torch.Tensor  # (W, W) (token, expert) rows each rank sent to each rank in the dispatch
    world_size: int
    backend: str


class _AllToAll(torch.autograd.Function):
    """``all_to_all_single`` with uneven splits that autograd can go through: the backward pass sends the
    gradients back along the same routes (the splits swapped)."""

    @staticmethod
    def forward(ctx, x, send_splits: list[int], recv_splits: list[int]):
        ctx.splits = (send_splits, recv_splits)
        out = x.new_empty((sum(recv_splits), *x.shape[1:]))
        dist.all_to_all_single(out, x.contiguous(), output_split_sizes=recv_splits,
                               input_split_sizes=send_splits)
        return out

    @staticmethod
    def backward(ctx, grad):
        send_splits, recv_splits = ctx.splits
        back = grad.new_empty((sum(send_splits), *grad.shape[1:]))
        dist.all_to_all_single(back, grad.contiguous(), output_split_sizes=send_splits,
                               input_split_sizes=recv_splits)
        return back, None, None


def all_to_all(x: torch.Tensor, send_splits: list[int], recv_splits: list[int]) -> torch.Tensor:
    """Rows ``x`` (S, …) cut into ``send_splits`` go to ranks 0..W-1; returns the (R, …) rows received."""
    return _AllToAll.apply(x, send_splits, recv_splits)


def exchange_counts(send_splits: list[int], device: torch.device) -> list[int]:
    """Every rank tells every other how many rows to expect (an all-to-all of one number per pair)."""
    send = torch.tensor(send_splits, dtype=torch.long, device=device)  # (W,)
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send)
    return recv.tolist()


def ep_layer(moe: MoE, x_local: torch.Tensor, rank: int, world_size: int) -> tuple[torch.Tensor, list[int]]:
    """One rank's part of the layer on its tokens ``x_local`` (n, D), inside an initialised process group:
    route here, dispatch, run this rank's experts, combine. Returns (n, D) and the rows sent per rank."""
    E, K = moe.cfg.n_routed_experts, moe.cfg.n_activated_experts
    per_rank = E // world_size
    r = moe.gate(x_local)  # routing on the token's own rank (bias and group limit included)
    flat = r.indices.flatten()  # (n·K,)
    order = flat.argsort(stable=True)  # rows sorted by expert, hence by destination rank
    token = order // K  # (n·K,) the local token of each sorted row
    expert = flat[order]  # (n·K,)
    send_splits = torch.bincount(expert // per_rank, minlength=world_size).tolist()
    recv_splits = exchange_counts(send_splits, x_local.device)
    # 1st all-to-all (dispatch): the token vectors, and which expert each row is for.
    rows = all_to_all(x_local[token], send_splits, recv_splits)  # (R, D)
    got_expert = torch.empty(sum(recv_splits), dtype=torch.long, device=x_local.device)
    dist.all_to_all_single(got_expert, expert, output_split_sizes=recv_splits, input_split_sizes=send_splits)
    # Every rank must take part in the backward all-to-all, even one whose experts received no rows:
    # the "+ 0 · rows" keeps rows in the graph so that autograd calls it (else the other ranks wait forever).
    y = torch.zeros_like(rows) + 0 * rows  # (R, D)
    for e in range(rank * per_rank, (rank + 1) * per_rank):  # this rank's experts
        mask = got_expert == e
        if mask.any():
            y = y.index_put((mask.nonzero().squeeze(1),), moe.experts[e](rows[mask]))
    # 2nd all-to-all (combine): the results go back to the tokens' ranks, in the order they left.
    back = all_to_all(y, recv_splits, send_splits)  # (n·K, D)
    gate = r.weights.flatten()[order].unsqueeze(-1).to(x_local.dtype)  # (n·K, 1)
    out = torch.zeros_like(x_local).index_add(0, token, back * gate)  # (n, D)
    if moe.shared_experts is not None:
        out = out + moe.shared_experts(x_local)
    return out, send_splits


def _serialise(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _worker(rank: int, world_size: int, port: int, backend: str, payload: bytes, timeout_s: float, results,
            fault: tuple[int, str] | None) -> None:
    """One spawned rank: join the group, run its share, send back its rows (or its traceback)."""
    try:
        torch.set_num_threads(1)  # W ranks share the machine's cores: one thread each
        moe, x, grad_out = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)
        device = torch.device("cpu")
        if backend == "nccl":
            device = torch.device("cuda", rank)
            torch.cuda.set_device(device)
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s))
        try:
            moe = moe.to(device).train(False)
            keep = set(range(rank * (len(moe.experts) // world_size),
                             (rank + 1) * (len(moe.experts) // world_size)))
            for e in range(len(moe.experts)):
                if e not in keep:  # this rank holds only its own experts
                    moe.experts[e] = nn.Identity()
            B, T, D = x.shape
            chunks = torch.tensor_split(torch.arange(B * T), world_size)
            x_local = x.reshape(B * T, D)[chunks[rank]].to(device)
            if grad_out is not None:
                x_local.requires_grad_(True)
            if fault is not None and fault[0] == rank:
                if fault[1] == "hang":
                    time.sleep(3600)
                raise RuntimeError(f"injected fault on rank {rank} (fault={fault!r})")
            out, sent = ep_layer(moe, x_local, rank, world_size)
            x_grad, grads = None, None
            if grad_out is not None:
                g = grad_out.reshape(B * T, D)[chunks[rank]].to(device)
                out.backward(g)
                x_grad = x_local.grad.cpu()
                grads = {}
                for name, p in moe.named_parameters():
                    if name.startswith("experts."):
                        if int(name.split(".")[1]) in keep:  # complete on the owner rank
                            grads[name] = (p.grad if p.grad is not None else torch.zeros_like(p)).cpu()
                    else:  # replicated (router, shared experts): sum the ranks' parts
                        gp = p.grad if p.grad is not None else torch.zeros_like(p)
                        dist.all_reduce(gp)
                        if rank == 0:
                            grads[name] = gp.cpu()
            results.put(("ok", rank, _serialise({"out": out.detach().cpu(), "x_grad": x_grad,
                                                 "grads": grads, "sent": sent})))
            dist.barrier()  # no rank leaves while another may still be talking to it
        finally:
            dist.destroy_process_group()
    except BaseException:  # every failure, KeyboardInterrupt included, goes back with its traceback
        results.put(("error", rank, traceback.format_exc()))


def free_port() -> int:
    """A TCP port on localhost that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pick_backend(world_size: int) -> str:
    """NCCL when every rank can have its own CUDA device, else gloo (the CPU)."""
    return "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= world_size else "gloo"


def max_world_size(backend: str) -> int:
    """The most ranks this machine will start: one per GPU under NCCL; under gloo at most 4 per CPU core
    (and never more than 16): the ranks then time-share the cores, each start-up costs seconds, and a
    larger world would only wait on itself."""
    if backend == "nccl":
        return torch.cuda.device_count()
    return min(16, 4 * (os.cpu_count() or 1))


def _stop(procs) -> None:
    """Terminate and join every process still alive (kill those that ignore the terminate)."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)


def ep_run(moe: MoE, x: torch.Tensor, world_size: int, *, grad_out: torch.Tensor | None = None,
           backend: str | None = None, timeout_s: float = 120.0,
           fault: tuple[int, str] | None = None) -> EPRun:
    """Run ``moe`` on ``x`` (B, T, D) expert-parallel over ``world_size`` spawned ranks (see the module
    docstring); with ``grad_out`` (B, T, D) also the backward pass of ``(out * grad_out).sum()``.

    ``fault=(rank, "raise" | "hang")`` makes that rank fail or hang after joining the group: it shows
    what a failing worker looks like from here (and is how the tests check the clean-up)."""
    if not isinstance(moe, MoE):
        raise TypeError(f"{WHERE}: moe must be a helpers.moe.MoE, got {type(moe).__name__}")
    check_activations(x, moe.cfg.dim, moe.gate.weight)
    world_size = check_int("world_size", world_size, min_value=1, where=WHERE)
    E = moe.cfg.n_routed_experts
    if E % world_size:
        raise ValueError(f"{WHERE}: the layer's E={E} routed experts cannot be split evenly over "
                         f"world_size={world_size} ranks; pick a world size that divides {E}")
    backend = pick_backend(world_size) if backend is None else check_choice("backend", backend,
                                                                           ("gloo", "nccl"), where=WHERE)
    limit = max_world_size(backend)
    if world_size > limit:
        raise ValueError(f"{WHERE}: world_size={world_size} ranks cannot be started here: {backend} "
                         f"allows at most {limit} on this machine ({os.cpu_count()} CPU cores, "
                         f"{torch.cuda.device_count() if torch.cuda.is_available() else 0} GPUs)")
    timeout_s = check_number("timeout_s", timeout_s, min_value=1.0, where=WHERE)
    if grad_out is not None and (not torch.is_tensor(grad_out) or grad_out.shape != x.shape):
        raise ValueError(f"{WHERE}: grad_out must have x's shape {tuple(x.shape)}, got "
                         f"{getattr(grad_out, 'shape', type(grad_out).__name__)}")
    if fault is not None and (not isinstance(fault, tuple) or len(fault) != 2
                              or fault[1] not in ("raise", "hang") or not isinstance(fault[0], int)
                              or not 0 <= fault[0] < world_size):
        raise ValueError(f"{WHERE}: fault must be (rank in [0, {world_size}), 'raise' or 'hang'), "
                         f"got {fault!r}")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    # The layer and the inputs travel as bytes (torch.save): no caller's tensor is moved to shared memory.
    payload = _serialise((moe, x.detach().cpu(), None if grad_out is None else grad_out.detach().cpu()))
    args = (world_size, port, backend, payload, timeout_s, results, fault)
    procs = []
    try:
        for rank in range(world_size):
            p = ctx.Process(target=_worker, args=(rank, *args), daemon=True)
            p.start()
            procs.append(p)
        parts = _collect(procs, results, world_size, timeout_s)
    finally:
        _stop(procs)
        results.close()
        results.join_thread()
    return _assemble(moe, x, parts, world_size, backend, grad_out is not None)


def _collect(procs, results, world_size: int, timeout_s: float) -> dict[int, dict]:
    """Wait for every rank's result; raise at the first error, a silent death or the timeout."""
    parts: dict[int, dict] = {}
    deadline = time.monotonic() + timeout_s
    while len(parts) < world_size:
        try:
            status, rank, payload = results.get(timeout=0.2)
        except queue_module.Empty:
            dead = [i for i, p in enumerate(procs) if p.exitcode not in (None, 0) and i not in parts]
            if dead:
                raise ExpertParallelError(f"rank {dead[0]} of {world_size} died with exit code "
                                          f"{procs[dead[0]].exitcode} before sending a result") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{WHERE}: the {world_size} ranks did not finish within timeout_s="
                                   f"{timeout_s:g} s; they were stopped") from None
            continue
        if status == "error":
            raise ExpertParallelError(_first_cause(results, {rank: payload}, world_size))
        parts[rank] = torch.load(io.BytesIO(payload), weights_only=False)
    return parts


def _first_cause(results, errors: dict[int, str], world_size: int, wait_s: float = 2.0) -> str:
    """When one rank fails, its peers fail too ("Connection closed by peer"), sometimes first: gather the
    errors for ``wait_s`` and report the root cause, naming the ranks that only lost their peer."""
    deadline = time.monotonic() + wait_s
    while len(errors) < world_size and time.monotonic() < deadline:
        try:
            status, rank, payload = results.get(timeout=0.1)
        except queue_module.Empty:
            continue
        if status == "error":
            errors[rank] = payload
    secondary = [r for r, tb in errors.items() if "closed by peer" in tb or "remote worker" in tb.lower()]
    primary = [r for r in errors if r not in secondary] or sorted(errors)
    rank = primary[0]
    also = (f"\n(ranks {sorted(set(secondary) - {rank})} then lost their connection to it)"
            if set(secondary) - {rank} else "")
    return f"rank {rank} of {world_size} failed:\n{errors[rank]}{also}"


def _assemble(moe: MoE, x: torch.Tensor, parts: dict[int, dict], world_size: int, backend: str,
              with_grad: bool) -> EPRun:
    B, T, D = x.shape
    out = torch.cat([parts[r]["out"] for r in range(world_size)]).view(B, T, D).to(x.device)
    sent = torch.tensor([parts[r]["sent"] for r in range(world_size)], dtype=torch.long)  # (W, W)
    x_grad, grads = None, None
    if with_grad:
        x_grad = torch.cat([parts[r]["x_grad"] for r in range(world_size)]).view(B, T, D).to(x.device)
        grads = {}
        for r in range(world_size):
            grads.update({k: v.to(x.device) for k, v in parts[r]["grads"].items()})
    return EPRun(out, x_grad, grads, sent, world_size, backend)


def ep_forward(moe: MoE, x: torch.Tensor, world_size: int, **kwargs) -> torch.Tensor:
    """``moe(x).out`` computed expert-parallel over ``world_size`` spawned ranks (``ep_run``'s output)."""
    return ep_run(moe, x, world_size, **kwargs).out


# --- schedules (computed in time units, not timed) ----------------------------------------------------
@dataclass
class Slot:
    chain: str  # which micro-batch chunk
    op: str  # e.g. "attn", "dispatch"
    stream: str  # "compute" or "comm"
    start: float
    end: float


def two_stream_schedule(chains: dict[str, list[tuple[str, str, float]]], *, overlap: bool) -> list[Slot]:
    """Greedy list schedule of chains of ops ``(op, stream, duration)``, each chain in order.

    With ``overlap`` the "compute" and "comm" streams run at once (DualPipe's idea: one chunk's
    all-to-all runs while another chunk computes); without, everything shares one stream."""
    where = "two_stream_schedule"
    if not isinstance(chains, dict) or not chains:
        raise ValueError(f"{where}: chains must be a non-empty dict name → [(op, stream, duration), ...]")
    for name, ops in chains.items():
        for op in ops:
            if len(op) != 3 or op[1] not in ("compute", "comm") or not op[2] >= 0:
                raise ValueError(f"{where}: chain {name!r} has {op!r}; each op is (name, 'compute' | "
                                 "'comm', duration >= 0)")
    pos = {c: 0 for c in chains}
    chain_free = {c: 0.0 for c in chains}
    stream_free: dict[str, float] = {}
    slots = []
    while any(pos[c] < len(ops) for c, ops in chains.items()):
        best = None
        for c, ops in chains.items():
            if pos[c] < len(ops):
                op, stream, dur = ops[pos[c]]
                key = stream if overlap else "device"
                start = max(chain_free[c], stream_free.get(key, 0.0))
                if best is None or start < best[0]:
                    best = (start, c, op, stream, dur, key)
        start, c, op, stream, dur, key = best
        slots.append(Slot(c, op, stream, start, start + dur))
        chain_free[c] = stream_free[key] = start + dur
        pos[c] += 1
    return slots


def makespan(slots: list[Slot]) -> float:
    return max(s.end for s in slots)


def one_f_one_b(stages: int, micro: int, f: int = 1, b: int = 2) -> list[list[tuple[str, int, int]]]:
    """The 1F1B pipeline schedule: per stage, its ops ``(kind "F"|"B", micro-batch, start)``, each F taking
    ``f`` and each B ``b`` time units; stage s warms up with ``stages − s − 1`` forwards, then alternates."""
    where = "one_f_one_b"
    stages = check_int("stages", stages, min_value=1, where=where)
    micro = check_int("micro", micro, min_value=stages, where=where)
    f = check_int("f", f, min_value=1, where=where)
    b = check_int("b", b, min_value=1, where=where)
    order = []
    for s in range(stages):
        warm = stages - s - 1
        seq = [("F", m) for m in range(warm)]
        for m in range(micro - warm):
            seq += [("F", warm + m), ("B", m)]
        seq += [("B", m) for m in range(micro - warm, micro)]
        order.append(seq)
    done: dict[tuple[str, int, int], int] = {}
    pos, free = [0] * stages, [0] * stages
    out: list[list[tuple[str, int, int]]] = [[] for _ in range(stages)]
    while any(pos[s] < len(order[s]) for s in range(stages)):
        progressed = False
        for s in range(stages):
            if pos[s] == len(order[s]):
                continue
            kind, m = order[s][pos[s]]
            dep = ("F", s - 1, m) if kind == "F" else ("B", s + 1, m)
            if (kind == "F" and s == 0) or (kind == "B" and s == stages - 1 and ("F", s, m) in done):
                ready = done.get(("F", s, m), 0) if kind == "B" else 0
            elif dep in done:
                ready = done[dep]
            else:
                continue
            start = max(ready, free[s])
            free[s] = done[(kind, s, m)] = start + (f if kind == "F" else b)
            out[s].append((kind, m, start))
            pos[s] += 1
            progressed = True
        if not progressed:
            raise RuntimeError("one_f_one_b: the schedule deadlocked")  # cannot happen for micro >= stages
    return out


def pipeline_bubble(schedule: list[list[tuple[str, int, int]]], f: int = 1, b: int = 2) -> int:
    """Idle time units of one stage: the makespan minus its own work (the same on every stage in 1F1B)."""
    end = max(start + (f if kind == "F" else b) for ops in schedule for kind, _, start in ops)
    work = sum(f if kind == "F" else b for kind, _, _ in schedule[0])
    return end - work


def dualpipe_bubble(stages: int, f: float, b: float, w: float, fb: float) -> float:
    """DeepSeek-V3 Table 2: DualPipe's bubble ``(PP/2 − 1)(F&B + B − 3W)`` (formula from the paper;
    the bidirectional schedule itself is not simulated here)."""
    stages = check_int("stages", stages, min_value=2, where="dualpipe_bubble")
    if stages % 2:
        raise ValueError(f"dualpipe_bubble: DualPipe needs an even number of stages, got stages={stages}")
    return (stages / 2 - 1) * (fb + b - 3 * w)
