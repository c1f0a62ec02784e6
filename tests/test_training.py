import pytest
import torch

from helpers.config import preset
from helpers.data import load_corpus
from helpers.model import Transformer
from helpers.training import TrainConfig, evaluate, train

SMALL = dict(steps=30, batch_size=4, seq_len=16, eval_every=15, eval_iters=2, progress=False)


def test_training_lowers_the_loss_and_records_history():
    corpus = load_corpus()
    model = Transformer(preset("test"))
    before = evaluate(model, corpus, batch_size=4, seq_len=16, iters=2)
    hist = train(model, corpus, device="cpu", **SMALL)
    assert hist.step == list(range(30)) and len(hist.train_loss) == 30
    assert hist.val_step == [14, 29]
    assert hist.val_loss[-1] < before
    assert hist.tokens == 30 * 4 * 16 and hist.tokens_per_sec > 0


def test_training_is_seeded():
    corpus = load_corpus()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = Transformer(preset("test"))
        runs.append(train(model, corpus, device="cpu", **SMALL).train_loss)
    assert runs[0] == runs[1]


def test_non_finite_loss_names_the_step():
    corpus = load_corpus()
    model = Transformer(preset("test"))
    calls = []

    def poison(step, out, batch):
        calls.append(step)
        if step == 2:
            with torch.no_grad():
                model.head.weight.fill_(float("nan"))

    with pytest.raises(FloatingPointError, match="at step 3"):
        train(model, corpus, device="cpu", callback=poison, **SMALL)
    assert calls == [0, 1, 2]


def test_after_optimizer_step_hook_runs_each_step():
    corpus = load_corpus()
    model = Transformer(preset("test"))
    counter = torch.nn.Module()
    counter.n = 0

    def bump():
        counter.n += 1

    counter.after_optimizer_step = bump
    model.layers[0].counter = counter
    train(model, corpus, device="cpu", **SMALL)
    assert counter.n == SMALL["steps"]


def test_bad_train_config():
    with pytest.raises(ValueError, match="steps=0"):
        TrainConfig(steps=0)


def test_run_steps_is_the_hand_written_loop():
    """``run_steps`` takes exactly the updates a hand-written zero_grad/backward/step loop takes."""
    from helpers.training import run_steps

    def make():
        torch.manual_seed(0)
        return torch.nn.Linear(4, 3)

    x = torch.randn(5, 8, 4)
    by_hand, looped = make(), make()
    opt = torch.optim.AdamW(by_hand.parameters(), lr=1e-2, weight_decay=0.0)
    for step in range(5):
        loss = by_hand(x[step]).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seen = []
    opt = torch.optim.AdamW(looped.parameters(), lr=1e-2, weight_decay=0.0)
    run_steps(opt, 5, lambda step: looped(x[step]).square().mean(), callback=lambda s, loss: seen.append(s))
    assert seen == list(range(5))
    for a, b in zip(by_hand.parameters(), looped.parameters()):
        assert torch.equal(a, b)


def test_training_step_without_an_optimizer_is_the_steps_forward_and_backward():
    """What ``bench.mtp.training_overhead`` times: the gradients of one batch, no update."""
    from helpers.training import training_step

    corpus = load_corpus()
    torch.manual_seed(0)
    model = Transformer(preset("test", mtp_depth=1))
    batch = corpus.get_batch("train", 2, 16, generator=torch.Generator().manual_seed(0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = training_step(model, batch)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # no update
    model.zero_grad(set_to_none=True)
    model.run(batch.x, targets=batch.y).loss.backward()  # by hand
    assert grads.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
    assert all(torch.equal(grads[n], p.grad) for n, p in model.named_parameters() if p.grad is not None)
    assert out.mtp_loss is not None and torch.isfinite(out.loss)


def test_optimizer_step_takes_an_accumulated_backward_pass():
    """GRPO's update: a function that runs several weighted backward passes, then one step, equals one
    backward of the weighted sum."""
    from helpers.training import optimizer_step

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(3))
    x1, x2 = torch.randn(3), torch.randn(3)
    opt = torch.optim.SGD([w], lr=0.1)
    start = w.detach().clone()
    w.grad = torch.ones(3)  # stale: optimizer_step clears it before the backward pass

    def backward():
        (0.25 * (w @ x1) ** 2).backward()
        (0.75 * (w @ x2) ** 2).backward()

    optimizer_step(opt, backward)
    expected = start - 0.1 * (0.25 * 2 * (start @ x1) * x1 + 0.75 * 2 * (start @ x2) * x2)
    torch.testing.assert_close(w.detach(), expected)


def test_grpo_updates_through_the_training_module(monkeypatch):
    """No optimiser step of its own: every GRPO update is ``helpers.training.optimizer_step``."""
    import copy

    from test_grpo import coin_model

    from helpers import grpo
    from helpers.tasks.arith import Problem

    calls = []
    real = grpo.optimizer_step
    monkeypatch.setattr(grpo, "optimizer_step", lambda *a, **k: (calls.append(a[1]), real(*a, **k)))
    torch.manual_seed(0)
    model = coin_model()
    grpo.grpo_step(model, copy.deepcopy(model), torch.optim.SGD(model.parameters(), lr=0.1),
                   [Problem(0, 0)] * 2, group_size=4, generator=torch.Generator().manual_seed(0), updates=3)
    assert len(calls) == 3 and all(callable(c) for c in calls)
