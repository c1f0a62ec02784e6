"""A scratchpad for lesson 08's addition: what a teacher that knows the *procedure* writes, beyond the answer.

A bare label ("47+85=" → "132") says what the sum is, not how it is made. Column addition makes the sum's
digits from the right: 7 + 5 = 12, write 2 carry 1; 4 + 8 + 1 = 13, write 3 carry 1; write the 1. The
scratchpad writes the digits in that order, least significant first, then the answer itself:

    prompt  "47+85="
    scratch "231>132"          the digits as computed (2, 3, 1), ">", the answer as read
    graded  "132"              the text after the last ">" on the line (all of it when there is none)

Each scratch digit depends only on two operand digits and the carry out of the digit written just before
it, so a model that writes the scratch never has to look ahead to a carry it has not yet computed; the
answer is then the scratch read backwards. Grading reads the *final answer only* (``final_answer``), so a
student that answers bare ("132\\n") and one that writes the scratchpad ("231>132\\n") are graded alike:
``graded_reward`` is ``arith.reward`` applied to the final answer.

Shape letters (``docs/GLOSSARY.md``): B problems.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..validate import InputTypeError
from .arith import TERMINATOR, Problem, _check_problems, decode_greedy

SEPARATOR = ">"  # between the scratch (digits as computed) and the answer (digits as read)


def scratchpad(problem: Problem) -> str:
    """The sum's digits least significant first, ``SEPARATOR``, then the answer: "47+85=" → "231>132"."""
    if not isinstance(problem, Problem):
        raise InputTypeError(f"problem must be a Problem, got {type(problem).__name__}")
    return problem.answer[::-1] + SEPARATOR + problem.answer


def budget(problem: Problem) -> int:
    """New tokens enough for the scratchpad and its terminator: twice the answer's budget (less one
    terminator, plus the separator)."""
    return 2 * problem.budget


def final_answer(completion: str) -> tuple[str, bool]:
    """(the text after the last ``SEPARATOR`` of the first line, whether that line was terminated)."""
    if not isinstance(completion, str):
        raise InputTypeError(f"completion must be a str, got {type(completion).__name__}")
    line, terminated, _ = completion.partition(TERMINATOR)
    return line.rpartition(SEPARATOR)[2], bool(terminated)


def graded_reward(completion: str, problem: Problem) -> float:
    """1.0 iff the completion's line ends (after any scratch) in exactly the answer and is terminated."""
    if not isinstance(problem, Problem):
        raise InputTypeError(f"problem must be a Problem, got {type(problem).__name__}")
    answer, terminated = final_answer(completion)
    return 1.0 if terminated and answer == problem.answer else 0.0


def is_scratchpad(completion: str, problem: Problem) -> bool:
    """Whether the completion is exactly the right scratchpad and terminator (the teacher's job)."""
    return completion.partition(TERMINATOR)[0] == scratchpad(problem) and TERMINATOR in completion


def graded_accuracy(model, problems: Sequence[Problem]) -> float:
    """Greedy final-answer accuracy with room for a scratchpad (``budget``), whatever format the model
    answers in."""
    problems = _check_problems(problems)
    decoded = decode_greedy(model, problems, max(budget(p) for p in problems))
    return float(torch.tensor([graded_reward(c, p) for c, p in zip(decoded.completions, problems)]).mean())


def format_share(model, problems: Sequence[Problem]) -> dict:
    """What a model writes: the share of greedy completions that use a scratchpad (contain ``SEPARATOR``),
    that are exactly the right scratchpad, and whose final answer is right."""
    problems = _check_problems(problems)
    decoded = decode_greedy(model, problems, max(budget(p) for p in problems))
    n = len(problems)
    return {"uses_scratch": sum(SEPARATOR in c.partition(TERMINATOR)[0] for c in decoded.completions) / n,
            "exact_scratch": sum(is_scratchpad(c, p) for c, p in zip(decoded.completions, problems)) / n,
            "final_right": sum(graded_reward(c, p) for c, p in zip(decoded.completions, problems)) / n}
