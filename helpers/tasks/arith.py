"""A verifiable task for lesson 08: multi-digit addition in the course's byte alphabet.

DeepSeek-R1 (arXiv 2501.12948, §2.2.2) trains with *rule-based* rewards: an answer that can be
checked by a program, so no learned reward model can be fooled ("reward hacking"). Addition is the
smallest such task that still has to be learned:

    prompt  "{a}+{b}="          e.g. "47+85="
    answer  "{a + b}" + "\\n"    e.g. "132\\n"   (the newline is the terminator: the model says "done")

* **verifiable by a one-line check**: ``completion.split("\\n")[0] == str(a + b)``;
* **exactly one right answer** per prompt (no leading zeros, no spaces), so the reward is 0 or 1;
* **difficulty set by one knob**, ``digits``: the operands are drawn uniformly from [0, 10**digits);
* **carries make it non-trivial**: each answer digit depends on the digits to its right, so the
  model cannot copy or look up a digit independently (and with uniform operands the answer's length
  varies, so the model must also learn when to stop).

The reward (``reward``) is 1.0 iff the completion, cut at its first "\\n", is exactly the answer and
that "\\n" is there; anything after it is ignored. A completion that runs out of tokens before the
terminator scores 0, as do leading zeros ("07") and spaces (" 7").

Supervised data (``sft_batch``): rows ``prompt + answer + "\\n"``, right-padded with byte 0 (NUL,
which never occurs in the task, so a padded position is visible as such), next-token targets with −100
on the prompt and the padding: the loss is on the answer and the terminator only. A teacher's answers
(sequence-level distillation) can replace the right ones.

Shape letters (``docs/GLOSSARY.md``): B batch (problems), T positions, n new tokens.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data import ByteTokenizer
from ..distill import IGNORE, generation_passes
from ..generate import generate
from ..validate import InputTypeError, check_int

TERMINATOR = "\n"
PAD_ID = 0  # byte NUL pads the SFT rows on the right; its targets are −100
MAX_DIGITS = 18  # operands below 10**18 fit a torch.long
_TOKENIZER = ByteTokenizer()


@dataclass(frozen=True)
class Problem:
    a: int
    b: int

    def __post_init__(self):
        check_int("a", self.a, min_value=0, where="Problem")
        check_int("b", self.b, min_value=0, where="Problem")

    @property
    def prompt(self) -> str:
        return f"{self.a}+{self.b}="

    @property
    def answer(self) -> str:
        """The right answer, without the terminator."""
        return str(self.a + self.b)

    @property
    def text(self) -> str:
        """The whole supervised example: prompt, answer, terminator."""
        return self.prompt + self.answer + TERMINATOR

    @property
    def budget(self) -> int:
        """New tokens enough for the answer and its terminator, read off the prompt alone: the sum of
        two numbers has at most one digit more than the longer one."""
        return max(len(str(self.a)), len(str(self.b))) + 2


def _check_problems(problems, *, allow_empty: bool = False) -> list[Problem]:
    if isinstance(problems, Problem) or not isinstance(problems, Sequence):
        raise InputTypeError(f"problems must be a list of Problem, got {type(problems).__name__}")
    for i, p in enumerate(problems):
        if not isinstance(p, Problem):
            raise InputTypeError(f"problems[{i}] must be a Problem, got {type(p).__name__}")
    if not problems and not allow_empty:
        raise ValueError("problems is empty; pass at least one Problem")
    return list(problems)


def sample_problems(n: int, digits: int = 2, generator: torch.Generator | None = None) -> list[Problem]:
    """``n`` problems with both operands uniform in [0, 10**digits); reproducible with a ``generator``."""
    n = check_int("n", n, min_value=0)
    digits = check_int("digits", digits, min_value=1, max_value=MAX_DIGITS)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InputTypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    ab = torch.randint(0, 10 ** digits, (n, 2), generator=generator)  # (n, 2)
    return [Problem(int(a), int(b)) for a, b in ab.tolist()]


def reward(completion: str, problem: Problem) -> float:
    """1.0 iff ``completion`` is the answer followed by "\\n" (text after that "\\n" is ignored), else 0.0."""
    if not isinstance(completion, str):
        raise InputTypeError(f"completion must be a str, got {type(completion).__name__}")
    if not isinstance(problem, Problem):
        raise InputTypeError(f"problem must be a Problem, got {type(problem).__name__}")
    answer, terminated, _ = completion.partition(TERMINATOR)
    return 1.0 if terminated and answer == problem.answer else 0.0


def rewards(completions: Sequence[str], problems: Sequence[Problem]) -> torch.Tensor:
    """``reward`` for each pair: a float tensor (B,)."""
    problems = _check_problems(problems, allow_empty=True)
    if isinstance(completions, str) or not isinstance(completions, Sequence):
        raise InputTypeError(f"completions must be a list of str, got {type(completions).__name__}")
    if len(completions) != len(problems):
        raise ValueError(f"got {len(completions)} completions for {len(problems)} problems; "
                         "they must pair up one to one")
    return torch.tensor([reward(c, p) for c, p in zip(completions, problems)], dtype=torch.float32)


@dataclass
class SFTBatch:
    x: torch.Tensor  # (B, T) inputs: prompt + answer + "\n" without its last byte, right-padded with PAD_ID
    y: torch.Tensor  # (B, T) next-token targets; −100 on prompt positions and padding
    tokens: int  # non-pad input tokens: what a packed batch would run through the model

    @property
    def supervised(self) -> int:
        """Positions with a loss: answer bytes and terminators."""
        return int((self.y != IGNORE).sum())


def sft_batch(problems: Sequence[Problem], answers: Sequence[str] | None = None,
              device: torch.device | str | None = None) -> SFTBatch:
    """Supervised rows ``prompt + answer + "\\n"``; ``answers`` (strings without the "\\n", e.g. a
    teacher's) replace the right ones. The targets cover the answer and the terminator only."""
    problems = _check_problems(problems)
    if answers is None:
        answers = [p.answer for p in problems]
    if isinstance(answers, str) or not isinstance(answers, Sequence):
        raise InputTypeError(f"answers must be a list of str, got {type(answers).__name__}")
    if len(answers) != len(problems):
        raise ValueError(f"got {len(answers)} answers for {len(problems)} problems; they must pair up")
    rows, prompt_lens = [], []
    for i, (p, ans) in enumerate(zip(problems, answers)):
        if not isinstance(ans, str):
            raise InputTypeError(f"answers[{i}] must be a str, got {type(ans).__name__}")
        if TERMINATOR in ans:
            raise ValueError(f"answers[{i}]={ans!r} contains the terminator '\\n'; pass the text before "
                             "it (sft_batch appends the terminator itself)")
        rows.append(_TOKENIZER.encode(p.prompt + ans + TERMINATOR))
        prompt_lens.append(len(p.prompt))  # prompts are ASCII: one byte per character
    width = max(len(r) for r in rows) - 1
    x = torch.full((len(rows), width), PAD_ID, dtype=torch.long)  # (B, T)
    y = torch.full((len(rows), width), IGNORE, dtype=torch.long)  # (B, T)
    for i, (row, plen) in enumerate(zip(rows, prompt_lens)):
        seq = torch.tensor(row)
        x[i, :len(row) - 1] = seq[:-1]
        y[i, plen - 1:len(row) - 1] = seq[plen:]  # position t predicts byte t + 1: answer and "\n" only
    return SFTBatch(x.to(device), y.to(device), tokens=sum(len(r) - 1 for r in rows))


@dataclass
class Decoded:
    completions: list[str]  # per problem, in the given order: the n generated bytes, decoded
    passes: int  # token-passes spent (``distill.generation_passes`` summed over the length groups)


def by_prompt_length(problems: Sequence[Problem]) -> dict[int, list[int]]:
    """Indices of the problems grouped by prompt length (in bytes): each group batches without padding."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(_check_problems(problems)):
        groups[len(p.prompt)].append(i)
    return dict(groups)


def decode_greedy(model, problems: Sequence[Problem], max_new_tokens: int | None = None) -> Decoded:
    """Greedy completions of every prompt, batched per prompt length. ``max_new_tokens`` defaults to
    the largest ``Problem.budget`` of the group (what the prompts say the answer can need)."""
    problems = _check_problems(problems)
    if max_new_tokens is not None:
        check_int("max_new_tokens", max_new_tokens, min_value=1)
    completions: list[str] = [""] * len(problems)
    passes = 0
    for plen, idxs in by_prompt_length(problems).items():
        n = max_new_tokens or max(problems[i].budget for i in idxs)
        prompts = torch.tensor([_TOKENIZER.encode(problems[i].prompt) for i in idxs],
                               device=model.device)  # (B, T)
        out = generate(model, prompts, n, temperature=0.0)  # (B, T + n)
        for i, row in zip(idxs, out[:, plen:].tolist()):
            completions[i] = _TOKENIZER.decode(row)
        passes += generation_passes(len(idxs), plen, n)
    return Decoded(completions, passes)


def accuracy(model, problems: Sequence[Problem], max_new_tokens: int | None = None) -> float:
    """The share of problems whose greedy completion earns reward 1 (exact answer, then "\\n")."""
    problems = _check_problems(problems)
    decoded = decode_greedy(model, problems, max_new_tokens)
    return float(rewards(decoded.completions, problems).mean())


def answer_of(completion: str) -> str:
    """The text before the first "\\n" (all of it if there is none): a teacher's answer for ``sft_batch``."""
    if not isinstance(completion, str):
        raise InputTypeError(f"completion must be a str, got {type(completion).__name__}")
    return completion.partition(TERMINATOR)[0]
