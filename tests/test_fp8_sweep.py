"""helpers.experiments.fp8: the arms pair (same initial weights), and one committed run reproduces."""

import pytest
import torch

from helpers.experiments import fp8 as fsw
from helpers.fp8 import FP8Linear


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def test_arms_start_from_the_same_weights():
    a, b = fsw.build("fp32", 3), fsw.build("fp8", 3)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not any(isinstance(m, FP8Linear) for m in a.modules())
    n8 = sum(isinstance(m, FP8Linear) for m in b.modules())
    assert n8 == 7 * fsw.BASE.n_layers  # wq wk wv wo w1 w2 w3 per block
    assert type(b.head) is torch.nn.Linear


def test_widths_fill_whole_blocks():
    assert fsw.BASE.dim % 128 == 0 and fsw.BASE.inter_dim % 128 == 0
    assert (fsw.RECIPE["batch_size"] * fsw.RECIPE["seq_len"]) % 128 == 0  # Wgrad tiles run along tokens


def test_bad_arm():
    with pytest.raises(ValueError, match="arm"):
        fsw.build("fp16", 0)


@pytest.mark.slow
def test_committed_fp32_run_reproduces():
    from helpers.data import load_corpus
    from helpers.experiments import load_sweep

    sweep = load_sweep("fp8")
    got, _ = fsw.train_arm("fp32", 0, load_corpus())
    assert sweep.reproduction("fp32", 0, {"val_loss": got["val_loss"]}).check()
