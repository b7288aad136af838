"""MLR-SNet network: checkpoint layout, both official gate conventions, carried state."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from mlrsnet.errors import UserError
from mlrsnet.snet.net import (
    CELL_META_TEST_SCRIPT,
    CELL_META_TRAIN,
    DEFAULT_CELL,
    MLRSNet,
    load_mlrsnet,
)

RELEASED_KEYS = {
    "layer1.fc_i2h.0.weight": (25, 1), "layer1.fc_i2h.0.bias": (25,),
    "layer1.fc_i2h.2.weight": (200, 25), "layer1.fc_i2h.2.bias": (200,),
    "layer1.fc_h2h.0.weight": (25, 50), "layer1.fc_h2h.0.bias": (25,),
    "layer1.fc_h2h.2.weight": (200, 25), "layer1.fc_h2h.2.bias": (200,),
    "layer3.weight": (1, 50), "layer3.bias": (1,),
}


def run_trace(net: MLRSNet, losses: list[float]) -> list[float]:
    state, outputs = net.initial_state(), []
    with torch.no_grad():
        for loss in losses:
            out, state = net(loss, state)
            outputs.append(float(out))
    return outputs


def test_a_fresh_network_has_exactly_the_released_parameter_layout() -> None:
    shapes = {k: tuple(v.shape) for k, v in MLRSNet().state_dict().items()}
    assert shapes == RELEASED_KEYS


def test_the_default_convention_is_the_one_that_wrote_the_checkpoints() -> None:
    assert DEFAULT_CELL == CELL_META_TRAIN
    assert MLRSNet().cell == CELL_META_TRAIN


@pytest.mark.parametrize("epoch", [1, 100, 200])
def test_released_checkpoints_load_on_cpu_into_the_network(official_ckpts: Path, epoch: int) -> None:
    net = load_mlrsnet(official_ckpts / f"mlr_snet_{epoch}.pth")
    raw = torch.load(official_ckpts / f"mlr_snet_{epoch}.pth", map_location="cpu", weights_only=True)
    for key, value in net.state_dict().items():
        assert value.device.type == "cpu"
        assert torch.equal(value, raw[key])
    assert net.num_parameters() == 11_776


@pytest.mark.parametrize(("cell", "key"), [
    (CELL_META_TRAIN, "output_meta_train_cell"),
    (CELL_META_TEST_SCRIPT, "output_meta_test_cell"),
])
def test_checkpoint_1_reproduces_the_official_forward_trace(official_ckpts: Path, cell: str, key: str) -> None:
    trace = json.loads((official_ckpts / "forward_trace_ckpt1.json").read_text())
    ours = run_trace(load_mlrsnet(official_ckpts / "mlr_snet_1.pth", cell=cell), trace["losses"])
    assert len(ours) == len(trace[key]) == 300
    assert max(abs(a - b) for a, b in zip(ours, trace[key], strict=True)) <= 1e-6


def test_the_two_conventions_give_different_schedules_from_the_same_weights(official_ckpts: Path) -> None:
    losses = [2.3 - 0.005 * t for t in range(100)]
    train_cell = run_trace(load_mlrsnet(official_ckpts / "mlr_snet_200.pth", CELL_META_TRAIN), losses)
    test_cell = run_trace(load_mlrsnet(official_ckpts / "mlr_snet_200.pth", CELL_META_TEST_SCRIPT), losses)
    assert max(abs(a - b) for a, b in zip(train_cell, test_cell, strict=True)) > 0.05


def test_the_output_depends_on_the_carried_state_not_only_on_the_current_loss() -> None:
    net = MLRSNet(generator=torch.Generator().manual_seed(0))
    after_high = run_trace(net, [5.0, 5.0, 5.0, 1.0])[-1]
    after_low = run_trace(net, [0.1, 0.1, 0.1, 1.0])[-1]
    fresh = run_trace(net, [1.0])[-1]
    assert len({round(after_high, 7), round(after_low, 7), round(fresh, 7)}) == 3


def test_a_detached_state_carries_values_but_no_graph() -> None:
    net = MLRSNet(generator=torch.Generator().manual_seed(0))
    out, state = net(2.0, net.initial_state())
    assert state.h.grad_fn is not None
    detached = state.detach()
    assert detached.h.grad_fn is None and torch.equal(detached.h, state.h)
    out2, _ = net(2.0, detached)
    out2.sum().backward()  # only this step's graph: no error about freed buffers
    assert all(p.grad is not None for p in net.parameters())


def test_initialisation_is_reproducible_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = MLRSNet(generator=torch.Generator().manual_seed(7))
    b = MLRSNet(generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), before)
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(x, y)


def _fan_in(net: MLRSNet, name: str) -> int:
    return net.get_parameter(name.rsplit(".", 1)[0] + ".weight").shape[1]


def test_the_default_initialisation_is_pytorchs_linear_default_as_the_official_image_script_runs() -> None:
    # kaiming_uniform(a=sqrt(5)) on a weight and nn.Linear's bias rule both give
    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)): fan_in 1 for the first input layer, so its weights
    # reach far beyond the 0.1 that the (never-firing) official init_weights intends.
    net = MLRSNet(generator=torch.Generator().manual_seed(3))
    for name, p in net.named_parameters():
        assert float(p.detach().abs().max()) <= 1 / math.sqrt(_fan_in(net, name)), name
    assert float(net.layer1.fc_i2h[0].weight.detach().abs().max()) > 0.5


def test_uniform_initialisation_bounds_the_cell_weights_by_a_tenth() -> None:
    net = MLRSNet(generator=torch.Generator().manual_seed(3), init="uniform-0.1")
    for name, p in net.named_parameters():
        bound = 0.1 if name.startswith("layer1.") and p.dim() == 2 else 1 / math.sqrt(_fan_in(net, name))
        assert float(p.detach().abs().max()) <= bound, name
    with pytest.raises(UserError, match="torch-default"):
        MLRSNet(init="xavier")


def test_an_unknown_cell_convention_is_a_user_error() -> None:
    with pytest.raises(UserError, match="meta-test-script"):
        MLRSNet(cell="pytorch")


def test_loading_a_missing_or_foreign_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_mlrsnet(tmp_path / "nope.pth")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="released layout"):
        load_mlrsnet(tmp_path / "other.pth")
