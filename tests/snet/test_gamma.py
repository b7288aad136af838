"""gamma and the loss scaling: the paper's formula for images and language models."""

from __future__ import annotations

import math

import pytest

from mlrsnet.errors import UserError
from mlrsnet.snet.gamma import TaskScale, gamma_formula


def test_image_gamma_follows_the_formula_with_the_mean_loss_and_the_classes() -> None:
    # sqrt(ln 10) * ln(10 ln 10) / 10**0.25 / 4, worked out by hand: 0.66913
    assert TaskScale("image", 10).gamma(math.log(10)) == pytest.approx(0.6691283, rel=1e-6)
    assert TaskScale("image", 100).gamma(2.3) == pytest.approx(0.6520028, rel=1e-6)


def test_image_networks_read_the_raw_loss() -> None:
    assert TaskScale("image", 10).net_input(1.7) == 1.7


def test_language_models_use_perplexity_and_vocabulary_and_read_loss_over_log_v() -> None:
    scale = TaskScale("text", 10_000)
    # uniform predictor: loss = ln V, perplexity = V -> sqrt(1e4) * ln(1e8) / 10 / 4
    assert scale.gamma(math.log(10_000)) == pytest.approx(46.0517019, rel=1e-6)
    assert scale.net_input(math.log(10_000)) == pytest.approx(1.0)
    assert scale.net_input(4.6) == pytest.approx(4.6 / math.log(10_000))


def test_gamma_is_the_absolute_value_once_the_formula_turns_negative() -> None:
    # L * C = 0.5 < 1: the formula gives -0.02179
    assert gamma_formula(0.05, 10) == pytest.approx(0.0217897, rel=1e-5)


def test_a_non_positive_or_non_finite_loss_has_no_gamma() -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            gamma_formula(bad, 10)


def test_a_scale_is_built_from_exactly_one_of_classes_or_vocabulary() -> None:
    assert TaskScale.of(num_classes=10) == TaskScale("image", 10)
    assert TaskScale.of(vocab_size=33_278) == TaskScale("text", 33_278)
    with pytest.raises(UserError):
        TaskScale.of()
    with pytest.raises(UserError):
        TaskScale.of(num_classes=10, vocab_size=10)
