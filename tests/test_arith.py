"""helpers.tasks.arith: the addition task, its 0/1 reward, the SFT rows' masks and greedy accuracy.

``bigram_model`` builds a Transformer whose next byte depends on the current byte only, with logits
we choose, so accuracy and sampling have hand-computable answers (test_grpo imports it)."""

import math

import pytest
import torch
from testkit import randomise

from helpers import Transformer, generate, preset
from helpers.data import ByteTokenizer
from helpers.distill import generation_passes
from helpers.tasks.arith import (
    PAD_ID,
    Problem,
    accuracy,
    answer_of,
    by_prompt_length,
    decode_greedy,
    reward,
    rewards,
    sample_problems,
    sft_batch,
)

TOK = ByteTokenizer()


def bigram_model(rules: dict[str, dict[str, float]], default: dict[str, float]) -> Transformer:
    """Every block zeroed, so the residual stream at a position is its token's embedding; each byte in
    ``rules`` gets its own one-hot embedding slot, every other byte shares the last. The head maps slot
    k to the logits given (0 for bytes not listed): after byte c the logits are rules[c] (or default)."""
    model = Transformer(preset("test"))
    D = model.config.dim
    slots = {c: i for i, c in enumerate(rules)}
    with torch.no_grad():
        for p in model.layers.parameters():
            p.zero_()
        model.norm.weight.fill_(1.0)
        model.tok_emb.weight.zero_()
        model.head.weight.zero_()
        for tok in range(256):
            model.tok_emb.weight[tok, slots.get(chr(tok), D - 1)] = 1.0
        for k, logits in [*((slots[c], v) for c, v in rules.items()), (D - 1, default)]:
            for nxt, value in logits.items():
                model.head.weight[ord(nxt), k] = value / math.sqrt(D)  # RMSNorm(one-hot) = √D · one-hot
    return model.eval()


def test_problem_strings():
    p = Problem(47, 85)
    assert (p.prompt, p.answer, p.text) == ("47+85=", "132", "47+85=132\n")
    assert Problem(0, 0).text == "0+0=0\n"
    assert p.budget == 4  # two digits → at most three answer digits + "\n"


def test_sample_problems_range_and_determinism():
    one = sample_problems(400, digits=1, generator=torch.Generator().manual_seed(3))
    assert {p.a for p in one} == set(range(10)) and {p.b for p in one} == set(range(10))
    three = sample_problems(300, digits=3, generator=torch.Generator().manual_seed(3))
    assert all(0 <= p.a < 1000 and 0 <= p.b < 1000 for p in three)
    assert max(p.a for p in three) >= 900  # the whole range is used, not two digits
    again = sample_problems(300, digits=3, generator=torch.Generator().manual_seed(3))
    other = sample_problems(300, digits=3, generator=torch.Generator().manual_seed(4))
    assert again == three and other != three
    assert sample_problems(0) == []


@pytest.mark.parametrize("completion,expected", [
    ("132\n", 1.0),  # the answer, then the terminator
    ("132", 0.0),  # ran out of tokens before the terminator
    ("0132\n", 0.0),  # leading zero
    (" 132\n", 0.0),  # leading space
    ("132 \n", 0.0),  # trailing space before the terminator
    ("132\n7+1=8\n", 1.0),  # text after the first "\n" is ignored
    ("133\n", 0.0),  # wrong answer
    ("\n132\n", 0.0),  # empty answer first
    ("", 0.0),
])
def test_reward(completion, expected):
    assert reward(completion, Problem(47, 85)) == expected


def test_reward_of_zero_and_rewards_tensor():
    assert reward("0\n", Problem(0, 0)) == 1.0
    assert reward("00\n", Problem(0, 0)) == 0.0
    r = rewards(["7\n", "8\n", "10\n"], [Problem(3, 4), Problem(3, 4), Problem(9, 1)])
    assert r.dtype == torch.float32 and r.tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="2 completions for 1 problems"):
        rewards(["7\n", "7\n"], [Problem(3, 4)])


def test_sft_batch_targets_only_answer_and_terminator():
    problems = [Problem(47, 85), Problem(3, 4), Problem(99, 1)]
    batch = sft_batch(problems)
    texts = [p.text for p in problems]
    width = max(len(t) for t in texts) - 1
    assert batch.x.shape == batch.y.shape == (3, width)
    assert batch.tokens == sum(len(t) - 1 for t in texts)
    assert batch.supervised == sum(len(p.answer) + 1 for p in problems)
    for row, p in enumerate(problems):
        L = len(p.text) - 1  # real positions in this row
        assert TOK.decode(batch.x[row, :L]) == p.text[:-1]
        assert (batch.x[row, L:] == PAD_ID).all() and (batch.y[row, L:] == -100).all()
        kept = batch.y[row] != -100
        assert TOK.decode(batch.y[row][kept]) == p.answer + "\n"  # the loss sees answer + "\n" only
        assert not kept[:len(p.prompt) - 1].any()
        # where a target exists it is the next input byte (the last one is the terminator)
        t = kept.nonzero().flatten()
        assert torch.equal(batch.y[row, t[:-1]], batch.x[row, t[:-1] + 1])


def test_sft_batch_with_teacher_answers():
    problems = [Problem(47, 85), Problem(3, 4)]
    batch = sft_batch(problems, answers=["131", ""])  # a wrong answer and an empty one
    assert TOK.decode(batch.y[0][batch.y[0] != -100]) == "131\n"
    assert TOK.decode(batch.y[1][batch.y[1] != -100]) == "\n"
    assert batch.tokens == len("47+85=131") + len("3+4=")
    with pytest.raises(ValueError, match="terminator"):
        sft_batch(problems, answers=["132\n", "7"])
    with pytest.raises(ValueError, match="2 problems"):
        sft_batch(problems, answers=["132"])


def test_sft_loss_runs_through_the_model():
    model = Transformer(preset("test"))
    batch = sft_batch(sample_problems(8, generator=torch.Generator().manual_seed(0)))
    loss = model.run(batch.x, batch.y).main_loss
    assert torch.isfinite(loss) and abs(loss.item() - math.log(256)) < 0.5  # near-uniform at init


def test_accuracy_on_a_model_that_always_answers_zero():
    """After "=" the model says "0", after anything else "\\n": right iff a + b == 0."""
    model = bigram_model({"=": {"0": 20.0}}, default={"\n": 20.0})
    problems = [Problem(0, 0), Problem(3, 4), Problem(0, 0), Problem(10, 0)]
    decoded = decode_greedy(model, problems)
    assert [answer_of(c) for c in decoded.completions] == ["0", "0", "0", "0"]
    assert accuracy(model, problems) == 0.5
    # prompt lengths 4, 4, 4 (budget 3) and 5 (budget 4): one batched generate per length
    assert by_prompt_length(problems) == {4: [0, 1, 2], 5: [3]}
    assert decoded.passes == generation_passes(3, 4, 3) + generation_passes(1, 5, 4) == 26


def test_batched_greedy_equals_one_prompt_at_a_time():
    model = randomise(Transformer(preset("test")))
    problems = sample_problems(6, generator=torch.Generator().manual_seed(1))
    decoded = decode_greedy(model, problems, max_new_tokens=4)
    for p, c in zip(problems, decoded.completions):
        out = generate(model, torch.tensor([TOK.encode(p.prompt)]), 4)
        assert TOK.decode(out[0, len(p.prompt):]) == c


@pytest.mark.parametrize("call,name", [
    (lambda: sample_problems(3, digits=0), "digits"),
    (lambda: sample_problems(-1), "n"),
    (lambda: sample_problems(3, digits=19), "digits"),
    (lambda: Problem(-1, 2), "a"),
    (lambda: decode_greedy(Transformer(preset("test")), [Problem(1, 2)], max_new_tokens=0), "max_new_tokens"),
])
def test_bad_inputs_name_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()


def test_bad_types():
    with pytest.raises(TypeError, match="Problem"):
        sft_batch(["1+2="])
    with pytest.raises(TypeError, match="completion"):
        reward(132, Problem(47, 85))
