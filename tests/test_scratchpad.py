"""helpers.tasks.scratchpad: the procedure teacher's format, and grading on the final answer only."""

import pytest
import torch

from helpers.config import ModelConfig
from helpers.model import Transformer
from helpers.tasks import arith, scratchpad
from helpers.tasks.arith import Problem


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def test_scratchpad_writes_the_digits_as_column_addition_makes_them():
    assert scratchpad.scratchpad(Problem(47, 85)) == "231>132"
    assert scratchpad.scratchpad(Problem(3, 4)) == "7>7"
    assert scratchpad.scratchpad(Problem(50, 50)) == "001>100"
    for p in arith.sample_problems(200, 2, torch.Generator().manual_seed(3)):
        scratch, answer = scratchpad.scratchpad(p).split(scratchpad.SEPARATOR)
        assert answer == str(p.a + p.b) and scratch == answer[::-1]
        assert len(scratchpad.scratchpad(p)) + 1 <= scratchpad.budget(p)  # room for the terminator


def test_final_answer_is_what_is_graded():
    p = Problem(47, 85)
    assert scratchpad.final_answer("231>132\nxx") == ("132", True)
    assert scratchpad.final_answer("132") == ("132", False)
    assert scratchpad.graded_reward("231>132\n", p) == 1.0
    assert scratchpad.graded_reward("999>132\n", p) == 1.0  # a wrong scratch with the right answer counts
    assert scratchpad.graded_reward("231>123\n", p) == 0.0
    assert scratchpad.graded_reward("231>132", p) == 0.0  # never terminated
    assert scratchpad.is_scratchpad("231>132\n", p) and not scratchpad.is_scratchpad("999>132\n", p)
    with pytest.raises(TypeError):
        scratchpad.graded_reward(132, p)


def test_graded_reward_equals_the_task_reward_on_bare_answers():
    p = Problem(47, 85)
    for completion in ["132\n", "132", "133\n", " 132\n", "0132\n", "132\n7", "\n", ""]:
        assert scratchpad.graded_reward(completion, p) == arith.reward(completion, p)


def test_graded_accuracy_and_format_share_agree_on_a_model():
    model = Transformer(ModelConfig(dim=32, n_layers=1, n_heads=4, inter_dim=64, max_seq_len=64)).eval()
    problems = arith.sample_problems(12, 2, torch.Generator().manual_seed(0))
    share = scratchpad.format_share(model, problems)
    assert share["final_right"] == scratchpad.graded_accuracy(model, problems)
    assert 0 <= share["exact_scratch"] <= share["uses_scratch"] <= 1
