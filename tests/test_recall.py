"""Multi-query associative recall: the generator's sequences, its splits, and the accuracy metric."""

import pytest
import torch

from helpers.tasks.recall import RecallTask, answer_accuracy, evaluate_recall, recall_batch, train_recall

TASK = RecallTask(n_keys=16, n_values=8)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("split", ["train", "val"])
@pytest.mark.parametrize("N", [1, 3, 8])
def test_every_query_is_answered_by_the_value_after_its_key(split, N):
    b = recall_batch(TASK, N, 64, split=split, generator=_gen())
    assert b.x.shape == b.y.shape == (64, 3 * N)
    for x, y in zip(b.x.tolist(), b.y.tolist()):
        pairs = dict(zip(x[0:2 * N:2], x[1:2 * N:2]))  # key byte -> value byte
        assert len(pairs) == N  # keys distinct within a sequence
        assert y[:2 * N] == [-100] * (2 * N)  # only the queries are scored
        assert sorted(x[2 * N:]) == sorted(pairs)  # every key queried once
        assert y[2 * N:] == [pairs[q] for q in x[2 * N:]]


def test_keys_and_values_stay_in_their_byte_ranges():
    b = recall_batch(TASK, 8, 64, generator=_gen())
    keys, values = b.x[:, 0:16:2], b.x[:, 1:16:2]
    assert keys.min() >= TASK.key_base and keys.max() < TASK.key_base + TASK.n_keys
    assert values.min() >= TASK.value_base and values.max() < TASK.value_base + TASK.n_values


def test_held_out_sequences_never_occur_in_training():
    train = recall_batch(TASK, 4, 2000, split="train", generator=_gen(1))
    val = recall_batch(TASK, 4, 2000, split="val", generator=_gen(2))
    assert (train.keys.sum(1) % 2 == 1).all() and (val.keys.sum(1) % 2 == 0).all()
    seen = {tuple(r) for r in train.x.tolist()}
    assert not any(tuple(r) in seen for r in val.x.tolist())
    # and both splits use every key (the split does not hide keys from training)
    assert set(train.keys.flatten().tolist()) == set(val.keys.flatten().tolist()) == set(range(TASK.n_keys))


def test_same_generator_seed_same_batch():
    a = recall_batch(TASK, 5, 8, generator=_gen(3))
    b = recall_batch(TASK, 5, 8, generator=_gen(3))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        recall_batch(TASK, TASK.n_keys // 2 + 1, 4, generator=_gen())
    with pytest.raises(ValueError):
        recall_batch(TASK, 4, 4, split="test", generator=_gen())
    with pytest.raises(ValueError):
        RecallTask(n_keys=16, n_values=16, key_base=40, value_base=50)  # overlapping bytes


def test_accuracy_counts_answer_positions_only():
    y = torch.tensor([[-100, -100, 3, 5]])  # (1, 4): two answers
    logits = torch.zeros(1, 4, 8)
    logits[0, 0, 1] = logits[0, 1, 1] = 9.0  # wrong at unscored positions: must not matter
    logits[0, 2, 3] = 9.0  # right
    logits[0, 3, 4] = 9.0  # wrong
    assert answer_accuracy(logits, y) == 0.5
    with pytest.raises(ValueError):
        answer_accuracy(logits, torch.full((1, 4), -100))


class _Oracle(torch.nn.Module):
    """Reads the answer off the sequence itself: a perfect recall model (and a check of the layout)."""

    def __init__(self, N):
        super().__init__()
        self.N, self.w = N, torch.nn.Parameter(torch.zeros(()))

    @property
    def device(self):
        return self.w.device

    def forward(self, x):
        N, out = self.N, torch.zeros(*x.shape, 256)
        for b in range(x.shape[0]):
            pairs = dict(zip(x[b, 0:2 * N:2].tolist(), x[b, 1:2 * N:2].tolist()))
            for t in range(2 * N, 3 * N):
                out[b, t, pairs[x[b, t].item()]] = 1.0
        return out


def test_evaluate_recall_scores_an_oracle_perfectly_and_repeats():
    assert evaluate_recall(_Oracle(4), TASK, 4, n_seqs=40, batch_size=16) == 1.0


def test_training_is_deterministic_and_cycles_through_the_pair_counts():
    from helpers.config import ModelConfig
    from helpers.experiments.paired_init import paired_init
    from helpers.model import Transformer

    cfg = ModelConfig(dim=32, n_layers=2, n_heads=4, inter_dim=64, max_seq_len=12)
    task = RecallTask(n_keys=8, n_values=4)
    runs = []
    for _ in range(2):
        model = paired_init(Transformer(cfg), 0)
        hist = train_recall(model, task, pairs=(2, 4), steps=20, batch_size=16, lr=3e-3, seed=0, warmup=2)
        runs.append((hist.loss, evaluate_recall(model, task, 4, n_seqs=32)))
    assert runs[0] == runs[1]
    assert hist.n_pairs[:4] == [2, 4, 2, 4]
    assert 0.0 <= runs[0][1] <= 1.0


def test_fused_pairs_are_one_token_that_encodes_key_and_value():
    task = RecallTask(n_keys=16, n_values=8, key_base=64, pair_base=128)
    N = 5
    b = recall_batch(task, N, 32, split="val", generator=_gen(4))
    assert b.x.shape == (32, 2 * N) == b.y.shape
    for x, y in zip(b.x.tolist(), b.y.tolist()):
        pairs = {task.key_base + (p - 128) // 8: task.value_base + (p - 128) % 8 for p in x[:N]}
        assert len(pairs) == N and y[:N] == [-100] * N
        assert y[N:] == [pairs[q] for q in x[N:]]
    with pytest.raises(ValueError):
        RecallTask(n_keys=32, n_values=8, key_base=64, pair_base=128)  # 256 pair bytes do not fit
