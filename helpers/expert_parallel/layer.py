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

The traffic accounting and node-limited routing are pure functions of routing decisions and need no
processes: they are in ``helpers.expert_parallel.traffic``.

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

from ..moe import MoE
from ..validate import check_activations, check_choice, check_int, check_number

WHERE = "ep_forward"


class ExpertParallelError(RuntimeError):
    """A rank failed; the message holds the rank's own traceback."""


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
