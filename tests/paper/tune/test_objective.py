"""The searched objective, and what a diverged trial reports."""

from __future__ import annotations

import math

import pytest

from mlrsnet.paper.tune.objective import diverged_report, epoch_report, objective_for


def test_images_maximise_held_out_accuracy_and_text_minimises_perplexity():
    img = objective_for("image", "val")
    assert (img.key, img.mode, img.worst) == ("val/acc", "max", 0.0)
    txt = objective_for("text", "test", vocab_size=10_000)
    assert (txt.key, txt.mode, txt.worst) == ("test/ppl", "min", 10_000.0)
    with pytest.raises(ValueError):
        objective_for("text", "val")


def test_missing_or_non_finite_metrics_count_as_the_worst_value():
    txt = objective_for("text", "val", vocab_size=10_000)
    assert txt.value({"val/ppl": math.inf}) == 10_000.0
    assert txt.value({"val/ppl": math.nan}) == 10_000.0
    assert txt.value({}) == 10_000.0
    assert txt.value({"val/ppl": 3e6}) == 10_000.0  # worse than guessing is clipped
    assert txt.value({"val/ppl": 150.0}) == 150.0
    img = objective_for("image", "val")
    assert img.value({"val/acc": 0.42, "test/acc": 0.9}) == 0.42


def test_reports_carry_the_epoch_budget_and_every_metric():
    img = objective_for("image", "val")
    rep = epoch_report(3, {"val/acc": 0.5, "train/loss": 1.2}, img, "abc")
    assert rep == {"val_acc": 0.5, "train_loss": 1.2, "objective": 0.5, "epoch": 3, "run_id": "abc",
                   "diverged": False}
    bad = diverged_report(2, img, "abc")
    assert bad["objective"] == 0.0 and bad["diverged"] is True and bad["epoch"] == 2
