"""The twelve task settings: names, paper facts, and every smoke profile end to end."""

from __future__ import annotations

import pytest

from mlrsnet.errors import UserError
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.loop import train
from mlrsnet.paper.tasks import TASKS, get_task

TABLE1 = {"resnet18-cifar10", "wrn28_10-cifar100", "lstm2-ptb", "lstm3-ptb", "shufflenetv2-cifar10",
          "mobilenetv2-cifar10", "nasnet-cifar10", "resnet18-svhn", "resnet18-tinyimagenet"}
EXTRAS = {"efficientnet_b0-cifar100", "efficientnet_b7-cifar100", "lstm-wikitext2"}


def test_the_registry_holds_the_nine_table1_settings_and_the_three_extras() -> None:
    assert set(TASKS) == TABLE1 | EXTRAS
    assert {n for n, t in TASKS.items() if t.table1} == TABLE1


def test_every_task_has_smoke_mini_and_paper_profiles() -> None:
    for task in TASKS.values():
        assert set(task.profiles) >= {"smoke", "mini", "paper"}


def test_paper_profiles_carry_the_paper_settings() -> None:
    r18 = get_task("resnet18-cifar10")
    p = r18.profile("paper")
    assert (p.epochs, p.batch_size, p.holdout) == (200, 128, 1000)
    assert (r18.optim.momentum, r18.optim.weight_decay) == (0.0, 5e-4)
    lm = get_task("lstm2-ptb")
    p = lm.profile("paper")
    assert (p.epochs, p.batch_size, p.bptt) == (150, 32, 35)
    assert (lm.optim.clip_grad_norm, lm.optim.weight_decay) == (0.25, 5e-6)
    assert p.model_kwargs == {"emb_size": 512, "hidden_size": 512, "num_layers": 2, "dropout": 0.5,
                              "tie_weights": False}
    eff = get_task("efficientnet_b0-cifar100")
    assert (eff.optim.momentum, eff.optim.nesterov, eff.optim.weight_decay) == (0.9, True, 1e-5)
    assert eff.profile("paper").batch_size == 256
    wt2 = get_task("lstm-wikitext2").profile("paper").model_kwargs
    assert (wt2["emb_size"], wt2["hidden_size"], wt2["tie_weights"]) == (650, 650, True)
    assert get_task("resnet18-svhn").augment is False


def test_a_typo_in_a_task_name_suggests_the_right_one() -> None:
    with pytest.raises(UserError, match="Did you mean 'resnet18-cifar10'"):
        get_task("resnet18-cifar")


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_smoke_profile_runs_end_to_end_with_multistep(task: str, data_dir) -> None:
    if TASKS[task].dataset == "svhn":
        with pytest.raises(UserError, match="svhn.npz.*mlrsnet-bench data prepare svhn"):
            train(Cell(task, "smoke", "multistep"))
        return
    result = train(Cell(task, "smoke", "multistep"))
    assert result.status == "finished"
    metric = "acc" if TASKS[task].kind == "image" else "ppl"
    assert result.final("test", metric) is not None
    if TASKS[task].kind == "image":  # MultiStep reads no held-out data: the whole split trains
        assert result.method_info["sizes"]["val"] == 0 and result.final("val", "loss") is None
    else:  # language models validate on the corpus's validation split
        assert result.final("val", "loss") is not None
    assert len(result.steps["lr"]) == 2 * result.method_info["steps_per_epoch"]
