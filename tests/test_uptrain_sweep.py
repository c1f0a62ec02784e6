"""Uptraining as a test of Ainslie et al.: the fine-tune continues at the pre-training's final learning
rate (the control gets the same schedule), and the whole curve is measured on the same batches."""

import pytest

from helpers import experiments as ex
from helpers import load_corpus
from helpers.experiments import uptraining as us
from helpers.training import TrainConfig


def test_fine_tune_continues_at_the_final_learning_rate_without_warmup():
    r = us.fine_tune_recipe()
    assert r["lr"] == pytest.approx(ex.RECIPE["lr"] * TrainConfig.min_lr_ratio)
    assert r["warmup"] == 0 and r["min_lr_ratio"] == 1.0
    assert r["steps"] == round(ex.RECIPE["steps"] * us.UPTRAIN["fraction"])


def test_a_tiny_run_has_one_curve_on_one_set_of_batches(monkeypatch):
    # the attention module's own names, which train_arm and uptrain read (patching the package's
    # re-exports changed nothing, and the test trained the full 300-step recipe: 43 s)
    monkeypatch.setattr(us.ex, "RECIPE", {**us.ex.RECIPE, "steps": 40, "eval_every": 40, "eval_iters": 1})
    monkeypatch.setattr(us.ex, "EVAL", {**us.ex.EVAL, "batch_size": 2, "iters": 1})
    assert us.fine_tune_recipe()["steps"] == 2  # 5% of 40: the patch reached the recipe uptrain reads
    out = us.run_uptrain_seed(0, load_corpus())
    pre = next(r["value"] for r in out["runs"] if r["arm"] == "MHA pre-trained")
    control = out["curves"]["MHA + same steps"]
    assert control["step"][0] == 0 and control["val_loss"][0] == pre  # step 0: the same batches as after
    assert control["step"][-1] == us.fine_tune_recipe()["steps"]
    for arm in us.ARMS:
        assert len(out["curves"][arm]["step"]) == len(out["curves"][arm]["val_loss"]) >= 2
