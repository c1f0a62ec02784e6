"""The training loop every lesson uses: seeded, with a progress bar, periodic validation loss and a
history for plotting. It minimises ``ModelOutput.loss`` (next-token loss plus whatever balance or MTP
terms the model adds), calls ``model.after_optimizer_step()`` after each step (the MoE bias update
lives there), and stops with ``FloatingPointError`` naming the step if the loss stops being finite.

Every update in the course goes through ``optimizer_step``; ``train``'s step is ``training_step``; a
sweep with a loss, batches or optimiser of its own (DSA's warm-up, distillation) trains through
``run_steps``, and GRPO hands ``optimizer_step`` its accumulated backward pass, so no training loop or
update lives outside this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .data import Corpus
from .device import pick_device
from .timing import synced_clock
from .validate import InputTypeError, check_int, check_number


@dataclass
class TrainConfig:
    steps: int = 300
    batch_size: int = 16  # B
    seq_len: int = 64  # T
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decay to lr * this
    warmup: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_iters: int = 8
    seed: int = 0

    def __post_init__(self):
        where = "TrainConfig"
        for name in ("steps", "batch_size", "seq_len", "eval_every", "eval_iters"):
            check_int(name, getattr(self, name), min_value=1, where=where)
        check_int("warmup", self.warmup, min_value=0, where=where)
        check_int("seed", self.seed, where=where)
        check_number("lr", self.lr, min_value=0.0, strict_min=True, where=where)
        check_number("min_lr_ratio", self.min_lr_ratio, min_value=0.0, max_value=1.0, where=where)
        # A negative clip norm would flip the gradient (clip_grad_norm_ scales by max_norm / norm):
        # the model would train backwards. 0 switches clipping off.
        check_number("grad_clip", self.grad_clip, min_value=0.0, where=where)
        check_number("weight_decay", self.weight_decay, min_value=0.0, where=where)


@dataclass
class History:
    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)  # main next-token loss, every step
    val_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    tokens: int = 0  # training tokens seen
    seconds: float = 0.0  # training wall time, validation excluded

    @property
    def tokens_per_sec(self) -> float:
        return self.tokens / self.seconds if self.seconds else float("nan")

    @property
    def final_val_loss(self) -> float:
        return self.val_loss[-1] if self.val_loss else float("nan")


def lr_at(step: int, tc: TrainConfig) -> float:
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    progress = (step - tc.warmup) / max(1, tc.steps - tc.warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return tc.lr * (tc.min_lr_ratio + (1 - tc.min_lr_ratio) * cosine)


@torch.no_grad()
def evaluate(model, data: Corpus, *, batch_size: int = 16, seq_len: int = 64, iters: int = 8,
             seed: int = 1234, split: str = "val", domain: str | None = None,
             autocast: torch.dtype | None = None) -> float:
    """Mean next-token loss over ``iters`` fixed batches (same seed → same batches every call).
    ``autocast`` (e.g. ``torch.bfloat16``) runs the forward passes under ``torch.autocast``."""
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("iters", iters)):
        check_int(name, value, min_value=1, where="evaluate")
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(iters):
        b = data.get_batch(split, batch_size, seq_len, generator=gen, device=model.device,
                           domain=domain)
        with _autocast(model.device, autocast):
            losses.append(model.run(b.x, targets=b.y).main_loss.item())
    model.train(was_training)
    return sum(losses) / len(losses)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision for the forward pass (weights and optimiser stay float32); off when dtype is None."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor | Callable[[], object], *,
                   model=None, grad_clip: float = 0.0) -> None:
    """One update, taken the same way by every training loop of the course: clear the gradients,
    backpropagate ``loss``, clip the gradient norm of ``model``'s parameters (when ``grad_clip`` > 0),
    step, then ``model.after_optimizer_step()`` (the MoE bias update) when ``model`` has one.

    ``loss`` may instead be a function that runs the backward pass itself, for a batch whose gradient is
    accumulated over several parts (GRPO's length groups, each weighted by its share): it is called once
    the gradients are cleared, and the update follows."""
    optimizer.zero_grad(set_to_none=True)
    if callable(loss):
        loss()
    else:
        loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    if model is not None and hasattr(model, "after_optimizer_step"):
        model.after_optimizer_step()


def training_step(model, batch, optimizer: torch.optim.Optimizer | None = None, *,
                  autocast: torch.dtype | None = None, grad_clip: float = 0.0):
    """One step of ``train`` on ``batch`` (``x``, ``y``): the forward pass (under ``autocast``), a check
    that the loss is finite (``FloatingPointError`` if not), then ``optimizer_step``. Returns the
    ``ModelOutput``. Without an ``optimizer``: the forward and backward pass only (gradients cleared first,
    left in place after), the part of a step whose cost ``helpers.bench.mtp.training_overhead`` times."""
    with _autocast(model.device, autocast):
        out = model.run(batch.x, targets=batch.y)
    if not torch.isfinite(out.loss):
        raise FloatingPointError(f"training loss became {out.loss.item()}")
    if optimizer is None:
        model.zero_grad(set_to_none=True)
        out.loss.backward()
    else:
        optimizer_step(optimizer, out.loss, model=model, grad_clip=grad_clip)
    return out


def run_steps(optimizer: torch.optim.Optimizer, steps: int, step_fn: Callable[[int], torch.Tensor], *,
              callback: Callable | None = None) -> None:
    """``steps`` updates on the loss ``step_fn(step)`` returns: the loop for a sweep that trains on a
    loss of its own (DSA's indexer KL, distillation's KD loss) with its own batches and optimiser.
    ``callback(step, loss)`` runs after each update (learning curves, live plots)."""
    check_int("steps", steps, min_value=0, where="run_steps")
    for step in range(steps):
        loss = step_fn(step)
        optimizer_step(optimizer, loss)
        if callback is not None:
            callback(step, loss)


def train(model, data: Corpus, tc: TrainConfig | None = None, *, device=None,
          callback: Callable | None = None, progress: bool = True,
          autocast: torch.dtype | None = None, **overrides) -> History:
    """Train ``model`` on ``data``; returns a ``History``.

    ``overrides`` change fields of ``tc`` (``train(model, data, steps=200)``). ``callback(step, out,
    batch)`` runs after every optimiser step with the step's ``ModelOutput``: the live widgets use it.
    ``autocast=torch.bfloat16`` runs forward passes under ``torch.autocast`` (GPU kernels).
    """
    if tc is not None and not isinstance(tc, TrainConfig):
        raise InputTypeError(f"tc must be a TrainConfig (or None), got {type(tc).__name__}")
    unknown = set(overrides) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise InputTypeError(f"train() got unknown setting(s) {sorted(unknown)}; TrainConfig has "
                        f"{sorted(TrainConfig.__dataclass_fields__)}")
    tc = TrainConfig(**{**(tc.__dict__ if tc else {}), **overrides})
    device = pick_device(device)
    model.to(device)
    torch.manual_seed(tc.seed)
    gen = torch.Generator().manual_seed(tc.seed)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tc.lr, betas=(0.9, 0.95))
    hist = History()
    model.train()
    t0 = synced_clock()  # helpers.timing's clock: the accelerator is synchronised before each reading
    bar = tqdm(range(tc.steps), disable=not progress, desc="training", leave=False)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tc)
        batch = data.get_batch("train", tc.batch_size, tc.seq_len, generator=gen, device=device)
        try:
            out = training_step(model, batch, opt, autocast=autocast, grad_clip=tc.grad_clip)
        except FloatingPointError as err:
            raise FloatingPointError(f"{err} at step {step} (lr={lr_at(step, tc):.2e}); lower the learning "
                                     "rate or check the model for overflow") from None
        hist.step.append(step)
        hist.train_loss.append(out.main_loss.item())
        hist.tokens += batch.x.numel()
        if callback is not None:
            callback(step, out, batch)
        if (step + 1) % tc.eval_every == 0 or step == tc.steps - 1:
            t_eval = synced_clock()
            hist.val_step.append(step)
            hist.val_loss.append(evaluate(model, data, batch_size=tc.batch_size,
                                          seq_len=tc.seq_len, iters=tc.eval_iters, autocast=autocast))
            bar.set_postfix(train=f"{hist.train_loss[-1]:.3f}", val=f"{hist.val_loss[-1]:.3f}")
            t0 += synced_clock() - t_eval  # leave validation out of the throughput
    hist.seconds = synced_clock() - t0
    return hist
