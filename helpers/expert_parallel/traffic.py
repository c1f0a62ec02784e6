"""Placement and traffic of expert parallelism, as pure functions of routing decisions (no processes):
which rank holds which expert and token, how many (token, expert) rows cross ranks and nodes
(``traffic``), node-limited routing (``node_limited_topk``, DeepSeek-V3 §2.1.2: at most M nodes per
token) and each rank's load.

Shape letters (``docs/GLOSSARY.md``): N tokens, E routed experts, K experts per token, W world size
(ranks), Wn ranks per node, Nn nodes, M nodes a token may use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..moe import group_limit_mask
from ..validate import check_int


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
