"""The method contract: one name for one idea across methods, old names answered with the new."""

from __future__ import annotations

import pytest

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import RENAMED_HPARAMS
from mlrsnet.harness.registry import discover, get_method


@pytest.mark.parametrize(("method", "old", "new"), [
    ("multistep", "gamma", "decay"),
    ("hd", "initial_lr", "lr"),
    ("hd", "hypergrad_lr", "hyper_lr"),
    ("rtho", "initial_lr", "lr"),
    ("meta-sgd", "init_lr", "lr"),
    ("meta-sgd", "meta_lr", "hyper_lr"),
    ("mlrsnet", "meta_weight_decay", "hyper_weight_decay"),
    ("mlrsnet", "cell", "gate_convention"),
])
def test_an_old_hyper_parameter_name_is_refused_with_its_new_name(method: str, old: str, new: str) -> None:
    with pytest.raises(UserError, match=f"'{old}' is now '{new}'"):
        get_method(method)(**{old: 0.1})


def test_no_method_still_takes_a_retired_name() -> None:
    for name, cls in discover().items():
        assert not set(cls.defaults) & set(RENAMED_HPARAMS), name


def test_multisteps_decay_factor_sorts_before_its_initial_lr() -> None:
    # bayes_opt orders dimensions by name; the paper's Table 1 values imply decay < lr.
    space = get_method("multistep").space("image")
    assert sorted(space) == ["decay", "lr"]
