"""Multi-query associative recall (MQAR; Arora et al. 2023, "Zoology", arXiv 2312.04927, §3): a task where
what the K/V cache can hold decides the score.

A sequence holds N key–value pairs, then every one of its keys again, in a new order; at each of those
queries the model must emit the value that followed that key earlier. In bytes, with ``N`` pairs::

    k1 v1 k2 v2 … kN vN | q1 q2 … qN        targets: -100 everywhere except at q_j, where it is q_j's value

With ``RecallTask(pair_base=…)`` a pair is one token (``pair_base + key·n_values + value``), the sequence
``p1 … pN | q1 … qN``. Then a single attention step answers: the query's key must match the key vector
cached for the pair, and the value vector cached beside it must carry the value. Zoology's two-token
pairs need a two-layer circuit instead (a previous-token head that copies each key onto its value's
position, then a head that matches the query against it), which the course's CPU budget does not train
(``results/pilots/recall.jsonl``: at 1,000–2,000 steps no arm got past guessing among the values in
context).

Keys are distinct within a sequence (so every query has one answer); values are drawn with replacement.
Only the N answer positions are scored (``answer_accuracy``): the pairs themselves are random and
unpredictable, so a loss over them would only add noise. Chance is 1/``n_values``.

To answer, a query must find the position where its key sat and read the value stored beside it: the
keys and values of every earlier token have to stay distinguishable in the cache. With narrow heads and
many pairs that is what sharing K/V heads (GQA, MQA) or compressing them (MLA) takes away.

Held-out sequences never equal training ones: a sequence belongs to the ``"val"`` split when the sum of
its keys' indices is even and to ``"train"`` when it is odd. The lookup does not use that parity (any
key can sit in either split), but no sequence can be in both.

Shape letters: B sequences, N pairs, T = 3N positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..training import TrainConfig, lr_at, optimizer_step
from ..validate import check_choice, check_int

SPLITS = ("train", "val")


@dataclass(frozen=True)
class RecallTask:
    """The alphabets, as byte ranges of the course's 256-token vocabulary."""

    n_keys: int = 64  # key alphabet; N ≤ n_keys / 2 (the split needs spare keys of either parity)
    n_values: int = 64  # value alphabet; chance accuracy is 1 / n_values
    key_base: int = 128  # byte of key 0 (keys are key_base … key_base + n_keys − 1)
    value_base: int = 32  # byte of value 0 (disjoint from the keys)
    # None: a pair is two tokens, key then value (Zoology's MQAR). A byte: a pair is ONE token,
    # pair_base + key·n_values + value, so the lookup is a single attention step (see the module notes)
    pair_base: int | None = None

    def __post_init__(self):
        check_int("n_keys", self.n_keys, min_value=4, where="RecallTask")
        check_int("n_values", self.n_values, min_value=2, where="RecallTask")
        keys = range(self.key_base, self.key_base + self.n_keys)
        values = range(self.value_base, self.value_base + self.n_values)
        if min(keys) < 0 or max(keys) > 255 or min(values) < 0 or max(values) > 255:
            raise ValueError(f"keys {keys} and values {values} must be bytes (0–255)")
        if set(keys) & set(values):
            raise ValueError(f"key bytes {keys} and value bytes {values} overlap")
        if self.pair_base is not None:
            pairs = range(self.pair_base, self.pair_base + self.n_keys * self.n_values)
            if min(pairs) < 0 or max(pairs) > 255 or set(pairs) & (set(keys) | set(values)):
                raise ValueError(f"pair bytes {pairs} must be bytes, apart from keys {keys} and "
                                 f"values {values}")

    @property
    def fused(self) -> bool:
        return self.pair_base is not None

    def seq_len(self, n_pairs: int) -> int:
        """Positions of one sequence: 3N (two tokens a pair, then N queries), 2N when pairs are fused."""
        return (2 if self.fused else 3) * n_pairs

    def max_pairs(self) -> int:
        return self.n_keys // 2


@dataclass
class RecallBatch:
    x: torch.Tensor  # (B, 3N) byte ids (B, 2N fused): the pairs, then the queries
    y: torch.Tensor  # like x: the value at each query position, -100 elsewhere
    keys: torch.Tensor  # (B, N) key indices (0 … n_keys − 1) in context order
    values: torch.Tensor  # (B, N) value indices of those keys
    order: torch.Tensor  # (B, N) which pair each query asks for

    @property
    def n_pairs(self) -> int:
        return self.keys.shape[1]


def _distinct_keys(task: RecallTask, B: int, N: int, split: str, generator) -> torch.Tensor:
    """(B, N) distinct key indices whose sum is even ("val") or odd ("train")."""
    perm = torch.rand(B, task.n_keys, generator=generator).argsort(dim=1)  # (B, n_keys) random order
    keys, spare = perm[:, :N].clone(), perm[:, N:]  # (B, N), (B, n_keys − N)
    wrong = keys.sum(dim=1) % 2 != (0 if split == "val" else 1)  # (B,)
    # swap the last key for the first spare key of the other parity: that flips the sum's parity
    other = spare % 2 != (keys[:, -1:] % 2)  # (B, n_keys − N)
    swap_in = spare.gather(1, other.float().argmax(dim=1, keepdim=True)).squeeze(1)  # (B,)
    keys[:, -1] = torch.where(wrong, swap_in, keys[:, -1])
    return keys


def recall_batch(task: RecallTask, n_pairs: int, batch_size: int, *, split: str = "train",
                 generator: torch.Generator | None = None) -> RecallBatch:
    """``batch_size`` MQAR sequences of ``n_pairs`` pairs, drawn with ``generator`` (on the CPU)."""
    split = check_choice("split", split, SPLITS)
    N = check_int("n_pairs", n_pairs, min_value=1, max_value=task.max_pairs(), where="recall_batch")
    B = check_int("batch_size", batch_size, min_value=1, where="recall_batch")
    keys = _distinct_keys(task, B, N, split, generator)  # (B, N)
    values = torch.randint(task.n_values, (B, N), generator=generator)  # (B, N)
    order = torch.rand(B, N, generator=generator).argsort(dim=1)  # (B, N) a permutation per sequence
    key_ids, value_ids = keys + task.key_base, values + task.value_base
    if task.fused:
        pairs = task.pair_base + keys * task.n_values + values  # (B, N): one token per pair
    else:
        pairs = torch.stack([key_ids, value_ids], dim=2).flatten(1)  # (B, 2N): k1 v1 k2 v2 …
    queries = key_ids.gather(1, order)  # (B, N)
    x = torch.cat([pairs, queries], dim=1)  # (B, 3N), or (B, 2N) fused
    y = torch.full_like(x, -100)
    y[:, pairs.shape[1]:] = value_ids.gather(1, order)  # (B, N) each query's answer, at the query
    return RecallBatch(x, y, keys, values, order)


def answer_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of answer positions (``y != -100``) where the top logit is the answer.
    logits (B, T, V), y (B, T)."""
    if logits.shape[:2] != y.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(y.shape)} disagree on (B, T)")
    scored = y != -100
    if not scored.any():
        raise ValueError("no answer positions (every target is -100)")
    return (logits.argmax(dim=-1)[scored] == y[scored]).float().mean().item()


@torch.no_grad()
def evaluate_recall(model, task: RecallTask, n_pairs: int, *, n_seqs: int = 512, batch_size: int = 128,
                    seed: int = 1234) -> float:
    """Answer accuracy on ``n_seqs`` held-out sequences of ``n_pairs`` pairs (the same ones every call)."""
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    hits, total = 0.0, 0
    for start in range(0, n_seqs, batch_size):
        b = recall_batch(task, n_pairs, min(batch_size, n_seqs - start), split="val", generator=gen)
        logits = model(b.x.to(model.device)).float()  # (B, 3N, V)
        n = int((b.y != -100).sum())
        hits += answer_accuracy(logits, b.y.to(model.device)) * n
        total += n
    model.train(was_training)
    return hits / total


@dataclass
class RecallHistory:
    step: list[int]
    n_pairs: list[int]
    loss: list[float]  # answer-only cross-entropy of each training step
    accuracy: list[float]  # training-batch answer accuracy of each step


def train_recall(model, task: RecallTask, *, pairs: tuple[int, ...], steps: int, batch_size: int,
                 lr: float, seed: int, warmup: int = 50, min_lr_ratio: float = 0.1,
                 weight_decay: float = 0.01, grad_clip: float = 1.0, callback=None) -> RecallHistory:
    """AdamW on MQAR with the course's schedule (``training.lr_at``: warmup, then cosine), on the CPU.
    Step ``i`` uses ``pairs[i % len(pairs)]`` pairs; the batches come from a generator seeded by ``seed``
    alone, so every arm of a seed sees the same sequences. Loss on the answer positions only."""
    tc = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, min_lr_ratio=min_lr_ratio,
                     weight_decay=weight_decay, grad_clip=grad_clip, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    hist = RecallHistory([], [], [], [])
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tc)
        N = pairs[step % len(pairs)]
        b = recall_batch(task, N, batch_size, generator=gen)
        logits = model(b.x.to(model.device))  # (B, 3N, V)
        y = b.y.to(model.device)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)
        optimizer_step(opt, loss, model=model, grad_clip=grad_clip)
        hist.step.append(step)
        hist.n_pairs.append(N)
        hist.loss.append(loss.item())
        hist.accuracy.append(answer_accuracy(logits.detach(), y))
        if callback is not None:
            callback(step, hist)
    return hist
