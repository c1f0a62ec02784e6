"""Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network":
§2, the softmax at temperature T (eq. 1) and the T² factor; §2.1, the gradient (eq. 2)) and the compute
bill that lesson 08 sets against reinforcement learning.

DeepSeek-R1 (arXiv 2501.12948, §4.1) ends by asking whether a small model should learn to reason
from a larger teacher or by RL on its own. Two kinds of teaching appear in the lesson:

* **logit distillation** (this module's ``kd_loss``): the student matches the teacher's softened
  next-token distribution on every supervised position, mixed with the usual hard-label loss;
* **sequence-level distillation** (what R1 did for its Qwen and Llama students: SFT on ~800k
  teacher-written samples): the teacher *generates* answers and the student is fine-tuned on them
  with plain cross-entropy (``helpers.tasks.arith.sft_batch(problems, answers=teacher_answers)``).

The loss (Hinton et al. 2015, with p^T = softmax(z / T)):

    loss = α · T² · KL(p_teacher^T ‖ p_student^T) + (1 − α) · CE(student, targets)

* **T, the temperature** (> 0) flattens both distributions so that the teacher's small
  probabilities, its "dark knowledge" (which wrong answers it finds almost right), carry weight.
  T = 1 is the plain softmax; a large T makes every distribution nearly uniform.
* **T²**: the soft term's gradient with respect to a student logit z_i is (1/T)·(p_s,i − p_t,i),
  and for large T the difference of the softened probabilities itself shrinks like 1/T, so the
  gradient falls like 1/T². Multiplying by T² keeps its scale roughly independent of T, so changing
  T does not silently re-weight the soft term against the hard one.
* **α** in [0, 1] mixes them: α = 0 is plain supervised fine-tuning on the targets, α = 1 pure
  distillation (the targets then only choose the positions).

Both terms are averaged over the same positions, those whose target is not −100 (the prompt and the
padding in ``helpers.tasks.arith.sft_batch``). The teacher's logits are detached: the teacher is not trained.

Compute is counted in **token-passes** (``ComputeMeter``): one token through a forward pass is 1, one
token through forward + backward is 3, the usual ≈ 2N and ≈ 6N FLOPs per token for a model with N
parameters (Kaplan et al. 2020, §2.1). Generating n tokens after a prompt of T tokens with the KV cache
runs T + n − 1 token-passes (``generation_passes``: the prefill, then every new token but the last is
fed back once).

Shape letters (``docs/GLOSSARY.md``): B batch, T positions, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .validate import InputTypeError, check_int, check_number

IGNORE = -100  # the target that marks a position without a loss


def _check_logits(name: str, logits) -> None:
    if not torch.is_tensor(logits):
        raise InputTypeError(f"{name} must be a torch tensor (..., V), got {type(logits).__name__}")
    if not logits.dtype.is_floating_point:
        raise InputTypeError(f"{name} must be a float tensor, got dtype {logits.dtype}")
    if logits.ndim < 2 or logits.shape[-1] < 1:
        raise ValueError(f"{name} must have shape (..., V) with at least 2 dims, got {tuple(logits.shape)}")


def soften(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) over the last dim: (..., V) → (..., V) probabilities."""
    _check_logits("logits", logits)
    temperature = check_number("temperature", temperature, min_value=0.0, strict_min=True)
    return (logits.float() / temperature).softmax(dim=-1)


@dataclass
class KDLoss:
    loss: torch.Tensor  # α · T² · kl + (1 − α) · ce: what to minimise
    kl: torch.Tensor  # KL(p_teacher^T ‖ p_student^T), mean over kept positions, before the T² factor
    ce: torch.Tensor  # cross-entropy of the (unsoftened) student on the targets, mean over kept positions


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            temperature: float = 2.0, alpha: float = 0.5) -> KDLoss:
    """Hinton et al.'s distillation loss on the positions whose target is not −100.

    ``student_logits`` and ``teacher_logits``: (..., V), e.g. (B, T, V); ``targets``: (...), e.g. (B, T).
    Returns ``KDLoss(loss, kl, ce)``; gradients reach the student only."""
    _check_logits("student_logits", student_logits)
    _check_logits("teacher_logits", teacher_logits)
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher_logits have shape {tuple(teacher_logits.shape)} but student_logits "
                         f"have {tuple(student_logits.shape)}; they must match (same positions, same V)")
    if not torch.is_tensor(targets) or targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise InputTypeError("targets must be an integer tensor of token ids (−100 = ignored)")
    if targets.shape != student_logits.shape[:-1]:
        raise ValueError(f"targets have shape {tuple(targets.shape)}; the logits need "
                         f"{tuple(student_logits.shape[:-1])} (one target per position)")
    temperature = check_number("temperature", temperature, min_value=0.0, strict_min=True)
    alpha = check_number("alpha", alpha, min_value=0.0, max_value=1.0)
    keep = targets != IGNORE  # (...) positions with a loss
    if not bool(keep.any()):
        raise ValueError("every target is −100, so there is no position to compute a loss on")
    s = student_logits[keep].float()  # (N, V) the kept positions only
    t = teacher_logits[keep].detach().float()  # (N, V)
    log_p_s = F.log_softmax(s / temperature, dim=-1)  # (N, V)
    log_p_t = F.log_softmax(t / temperature, dim=-1)  # (N, V)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1).mean()  # Σ_v p_t (log p_t − log p_s)
    ce = F.cross_entropy(s, targets[keep])
    loss = alpha * temperature ** 2 * kl + (1 - alpha) * ce
    return KDLoss(loss=loss, kl=kl, ce=ce)


def generation_passes(batch: int, prompt_len: int, new_tokens: int) -> int:
    """Token-passes spent generating ``new_tokens`` after a ``prompt_len``-token prompt for ``batch``
    rows with the KV cache: B · (T + n − 1), the prefill and then every new token but the last."""
    batch = check_int("batch", batch, min_value=0)
    prompt_len = check_int("prompt_len", prompt_len, min_value=1)
    new_tokens = check_int("new_tokens", new_tokens, min_value=0)
    return batch * (prompt_len + new_tokens - 1) if new_tokens else 0


@dataclass
class ComputeMeter:
    """Compute spent, in token-passes (1 = one token through a forward pass ≈ 2N FLOPs).

    The student's own bill is ``total``: ``forward`` tokens count 1 each (generation, evaluation done
    as part of training), ``train`` tokens count 3 each (forward + backward ≈ 6N). The other models'
    forwards are kept apart, for the side table, because they are models of another size:

    * ``teacher_forward``: teacher forward tokens in logit distillation (its logits on each batch);
    * ``teacher_generate``: teacher tokens while writing answers for sequence-level distillation;
    * ``reference_forward``: the frozen reference policy of GRPO's KL term (the student's size).

    Multiply a total by 2 × that model's parameter count for FLOPs (``flops``)."""

    forward_tokens: int = 0
    train_tokens: int = 0
    teacher_forward_tokens: int = 0
    teacher_generate_tokens: int = 0
    reference_tokens: int = 0

    def forward(self, tokens: int) -> None:
        self.forward_tokens += check_int("tokens", tokens, min_value=0)

    def train(self, tokens: int) -> None:
        self.train_tokens += check_int("tokens", tokens, min_value=0)

    def teacher_forward(self, tokens: int) -> None:
        self.teacher_forward_tokens += check_int("tokens", tokens, min_value=0)

    def teacher_generate(self, tokens: int) -> None:
        self.teacher_generate_tokens += check_int("tokens", tokens, min_value=0)

    def reference_forward(self, tokens: int) -> None:
        self.reference_tokens += check_int("tokens", tokens, min_value=0)

    @property
    def total(self) -> int:
        """The student's token-passes: forward tokens + 3 × training tokens."""
        return self.forward_tokens + 3 * self.train_tokens

    @property
    def teacher_total(self) -> int:
        """The teacher's token-passes (all forward): logit targets + generation."""
        return self.teacher_forward_tokens + self.teacher_generate_tokens

    @property
    def reference_total(self) -> int:
        return self.reference_tokens

    @staticmethod
    def flops(token_passes: int, n_params: int) -> int:
        """≈ 2 · N FLOPs per token-pass for a model of N parameters (attention's share ignored)."""
        token_passes = check_int("token_passes", token_passes, min_value=0)
        return 2 * check_int("n_params", n_params, min_value=1) * token_passes


@dataclass(frozen=True)
class FlopsBill:
    """A run's compute in FLOPs (≈ 2N per token-pass, ``ComputeMeter.flops``), every model that ran
    counted."""

    student: int  # the student's forward and training passes
    teacher: int  # the teacher's forwards (logit KD's targets) and generated tokens (sequence KD's text)
    reference: int  # GRPO's frozen reference model (a copy of the student's base)

    @property
    def total(self) -> int:
        return self.student + self.teacher + self.reference


def flops_bill(meter: ComputeMeter, student_params: int, teacher_params: int | None = None,
               reference_params: int | None = None) -> FlopsBill:
    """The FLOPs of a metered run: student token-passes × 2·N_student, teacher ones × 2·N_teacher, the
    reference's × 2·N_reference (by default the student's size: GRPO's reference is a copy of its base).
    A meter with teacher passes needs ``teacher_params``: a bill that leaves the teacher out is the error
    this function exists to prevent."""
    if not isinstance(meter, ComputeMeter):
        raise InputTypeError(f"meter must be a ComputeMeter, got {type(meter).__name__}")
    student_params = check_int("student_params", student_params, min_value=1)
    if meter.teacher_total and teacher_params is None:
        raise ValueError(f"the meter counts {meter.teacher_total} teacher token-passes; pass teacher_params "
                         "(the teacher's parameter count) so that they are billed")
    ref_params = student_params if reference_params is None else reference_params
    return FlopsBill(
        student=ComputeMeter.flops(meter.total, student_params),
        teacher=ComputeMeter.flops(meter.teacher_total, teacher_params) if meter.teacher_total else 0,
        reference=ComputeMeter.flops(meter.reference_total, ref_params) if meter.reference_total else 0)
