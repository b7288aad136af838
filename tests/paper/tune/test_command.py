"""Pieces of `mlrsnet-bench tune` that need no Ray: data checks and budgets."""

from __future__ import annotations

import pytest

from mlrsnet.errors import UserError
from mlrsnet.paper.tasks import get_task
from mlrsnet.paper.tune import tune_command
from mlrsnet.paper.tune.skips import data_missing


def test_a_task_without_data_is_skipped_with_the_command_that_prepares_it(tmp_path, monkeypatch):
    monkeypatch.delenv("MLRSNET_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    reason = data_missing(get_task("resnet18-svhn"), "mini", str(tmp_path))
    assert reason == "no data: svhn is not prepared (`mlrsnet-bench data prepare svhn`)"


def test_present_data_is_found(data_dir):
    assert data_missing(get_task("resnet18-cifar10"), "mini", str(data_dir)) is None
    assert data_missing(get_task("lstm2-ptb"), "mini", str(data_dir)) is None


def test_a_spec_without_tune_block_is_a_user_error(tmp_path, make_spec, tune_args):
    spec = make_spec('tasks = ["resnet18-cifar10"]\n[[methods]]\nname = "fixed"\n')
    with pytest.raises(UserError, match="no \\[tune\\] block"):
        tune_command(tune_args(spec, tmp_path / "results"))


def test_transfer_needs_exactly_one_source_task(tmp_path, make_spec, tune_args):
    spec = make_spec('tasks = ["resnet18-cifar10", "nasnet-cifar10"]\n[tune]\n'
                     'transfer_to = ["mobilenetv2-cifar10"]\n')
    with pytest.raises(UserError, match="exactly one"):
        tune_command(tune_args(spec, tmp_path / "results"))


@pytest.mark.parametrize(("task", "split", "expected"), [
    ("resnet18-cifar10", "val", {"holdout": 64}),  # keeps the smoke profile's held-out images
    ("resnet18-cifar10", "test", {}),              # tuned on test: trains on the whole split
    ("lstm2-ptb", "val", {}),                      # text: the corpus's validation split
])
def test_a_search_on_the_held_out_metric_keeps_the_held_out_split(task, split, expected):
    from types import SimpleNamespace

    from mlrsnet.paper.tune.command import search_overrides

    spec = SimpleNamespace(overrides={}, profile="smoke")
    plan = SimpleNamespace(task=get_task(task), objective=SimpleNamespace(split=split))
    assert search_overrides(spec, plan) == expected
