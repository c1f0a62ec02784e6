"""helpers.distill.flops_bill: every model that ran is billed, by hand on small cases."""

import pytest
import torch

from helpers.distill import ComputeMeter, flops_bill


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def test_logit_kd_bill_counts_the_teachers_forwards():
    # 2 steps of a batch of 3 rows × 4 tokens: the student trains on 24 tokens (3 passes each = 72),
    # the teacher runs forward on the same 24; student 10 parameters, teacher 50
    meter = ComputeMeter()
    for _ in range(2):
        meter.train(12)
        meter.teacher_forward(12)
    bill = flops_bill(meter, student_params=10, teacher_params=50)
    assert bill.student == 2 * 10 * 72 == 1440
    assert bill.teacher == 2 * 50 * 24 == 2400
    assert bill.reference == 0 and bill.total == 3840  # the teacher is 62% of logit KD's bill


def test_grpo_bill_counts_sampling_training_and_the_reference():
    # one GRPO step: 8 rows of 5 positions: sampling 40 forward, training 40 × 3, the reference 40 forward
    meter = ComputeMeter()
    meter.forward(40)
    meter.train(40)
    meter.reference_forward(40)
    bill = flops_bill(meter, student_params=7)
    assert (bill.student, bill.teacher, bill.reference) == (2 * 7 * 160, 0, 2 * 7 * 40)
    assert flops_bill(meter, student_params=7, reference_params=1).reference == 80


def test_sequence_kd_bills_the_teachers_generation():
    meter = ComputeMeter()
    meter.teacher_generate(30)
    meter.train(10)
    assert flops_bill(meter, 4, teacher_params=9).total == 2 * 4 * 30 + 2 * 9 * 30


def test_a_teacher_left_unpriced_is_an_error():
    meter = ComputeMeter()
    meter.teacher_forward(5)
    with pytest.raises(ValueError, match="teacher_params"):
        flops_bill(meter, student_params=10)
    with pytest.raises(TypeError):
        flops_bill("meter", 10)
