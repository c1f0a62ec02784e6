"""Lesson 10 exercises: the dispatch's send counts, the tokens that cross nodes, and the 1F1B bubble.
Reference solutions are in ``tests/test_exercises.py``."""

from __future__ import annotations

import torch

from ..expert_parallel import traffic
from . import Checked, call_or_none, not_attempted, report


def _cases():
    gen = torch.Generator().manual_seed(10)
    out = []
    for n, k, e, w in [(6, 2, 4, 2), (9, 3, 8, 4), (5, 1, 8, 4)]:
        idx = torch.stack([torch.randperm(e, generator=gen)[:k] for _ in range(n)])  # (N, K) distinct
        out.append((idx, w, e))
    return out


def check_send_counts(fn) -> Checked:
    """``fn(indices (N, K), world_size, n_experts)`` → (W, W) rows rank i sends to rank j in the dispatch:
    one row per (token, expert) pair; tokens sit on ranks in contiguous shares (``torch.tensor_split``),
    experts in contiguous blocks of E / W."""
    name = "the dispatch's send counts"
    cases = _cases()
    answers = [call_or_none(fn, idx.clone(), w, e) for idx, w, e in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    want = [traffic(idx, w, e).assignments for idx, w, e in cases]
    ok = all(torch.is_tensor(a) and a.shape == x.shape and torch.equal(a.long(), x)
             for a, x in zip(answers, want))
    hint = ""
    if not ok:
        a, (idx, w, e) = answers[1], cases[1]
        t = traffic(idx, w, e)
        if torch.is_tensor(a) and a.shape == t.tokens.shape and torch.equal(a.long(), t.tokens):
            hint = "count one row per (token, expert) pair: two experts on one rank are two rows"
        elif torch.is_tensor(a) and a.shape == t.assignments.shape and torch.equal(a.long(), t.assignments.T):
            hint = "row i is the sender (the token's rank), column j the receiver (the expert's rank)"
        else:
            hint = ("token t sits on rank r where t falls in tensor_split's r-th share; expert e on rank "
                    "e // (E/W)")
    return report(ok, name, hint)


def check_cross_node(fn) -> Checked:
    """``fn(indices (N, K), world_size, n_experts, ranks_per_node)`` → int: tokens sent across nodes,
    each token counted once per node it visits other than its own."""
    name = "tokens that cross nodes"
    cases = [(idx, w, e, 2) for idx, w, e in _cases()[1:]] + [(_cases()[0][0], 2, 4, 1)]
    answers = [call_or_none(fn, idx.clone(), w, e, r) for idx, w, e, r in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    want = [traffic(idx, w, e, ranks_per_node=r).cross_node for idx, w, e, r in cases]
    ok = all(isinstance(a, (int, torch.Tensor)) and int(a) == x for a, x in zip(answers, want))
    hint = ""
    if not ok:
        idx, w, e, r = cases[0]
        t = traffic(idx, w, e, ranks_per_node=r)
        node_of_rank = torch.arange(w) // r
        rows = int((t.assignments * (node_of_rank[:, None] != node_of_rank[None, :])).sum())
        if isinstance(answers[0], (int, torch.Tensor)) and int(answers[0]) == rows:
            hint = ("a token sent to two experts on one other node crosses once: count distinct nodes per "
                    "token")
        elif isinstance(answers[0], (int, torch.Tensor)) and int(answers[0]) == t.cross_rank:
            hint = "ranks on the same node talk over NVLink: only a different *node* counts"
        else:
            hint = "per token: the set of nodes of its experts, minus its own node; sum the sizes"
    return report(ok, name, hint)


def check_bubble(fn) -> Checked:
    """``fn(stages, f, b)`` → idle time of one stage in a 1F1B pipeline: (PP − 1)(F + B)."""
    name = "the 1F1B bubble"
    cases = [(4, 1, 2), (8, 1, 2), (2, 3, 5)]
    answers = [call_or_none(fn, *c) for c in cases]
    if any(a is None for a in answers):
        return not_attempted(name)
    want = [(pp - 1) * (f + b) for pp, f, b in cases]
    ok = all(isinstance(a, (int, float)) and a == w for a, w in zip(answers, want))
    hint = ""
    if not ok:
        pp, f, b = cases[0]
        if answers[0] == pp * (f + b):
            hint = "the first micro-batch's forward reaches the last stage after PP − 1 steps, not PP"
        elif answers[0] == (pp - 1) * f:
            hint = "the pipeline drains at the end too: the backward ramp idles (PP − 1)·B"
        else:
            hint = "count the idle slots of stage 0 in the lesson's diagram"
    return report(ok, name, hint)
