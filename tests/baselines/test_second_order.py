"""The suite's BatchNorm and Conv2d second-order passes (baselines/_second_order.py).

The reference is autograd's own double backward on an unswapped copy of the same network:
the swapped layers must give the same gradients (the native kernels), the same running
statistics, and the same Hessian-vector products and RTHO tangents, only faster.
"""

from __future__ import annotations

import copy
import types

import pytest
import torch
from mlrsnet.baselines._second_order import exact_second_order, swapped_layers
from mlrsnet.baselines._tangent import LRTangent
from torch import nn

from mlrsnet.harness.contract import OptimSettings


def network(dtype: torch.dtype = torch.float64) -> nn.Module:
    """Convolutions with and without bias, strided, grouped and dilated, one not followed by
    BatchNorm, BatchNorm 2-d and 1-d, ReLU, a linear head; BatchNorm's affine parameters away from their (1, 0) start."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False, groups=2), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=2, dilation=2), nn.BatchNorm2d(6, momentum=None), nn.ReLU(),
        nn.Conv2d(6, 6, 1), nn.Tanh(),  # a bias whose second-order term BatchNorm does not cancel
        nn.Flatten(), nn.Linear(6 * 4 * 4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3),
    ).to(dtype)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return net


def batch(seed: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(10, 3, 8, 8, generator=g, dtype=dtype), torch.randint(0, 3, (10,), generator=g)


def loss_of(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return nn.functional.cross_entropy(model(data[0]), data[1])


def gradient_and_hvp(model: nn.Module, data, vectors):
    params = list(model.parameters())
    grads = torch.autograd.grad(loss_of(model, data), params, create_graph=True)
    products = torch.autograd.grad(grads, params, grad_outputs=vectors)
    return [g.detach() for g in grads], list(products)


def swapped_copy(model: nn.Module) -> tuple[nn.Module, list]:
    fast = copy.deepcopy(model)
    return fast, exact_second_order(fast)


def relative_error(got, expected) -> float:
    num = sum(float((a - b).detach().square().sum()) for a, b in zip(got, expected, strict=True))
    den = sum(float(b.detach().square().sum()) for b in expected)
    return (num / den) ** 0.5


def test_every_plain_batchnorm_and_conv2d_is_swapped_and_counted():
    fast, handles = swapped_copy(network())
    assert swapped_layers(handles) == {"conv2d": 4, "batch_norm": 4}
    assert all(isinstance(h.module.forward, types.MethodType) for h in handles)


def test_the_hessian_vector_product_equals_autograds_double_backward():
    reference = network()
    fast, _ = swapped_copy(reference)
    g = torch.Generator().manual_seed(5)
    vectors = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in reference.parameters()]
    ref_grads, ref_hvp = gradient_and_hvp(reference, batch(1), vectors)
    grads, hvp = gradient_and_hvp(fast, batch(1), vectors)
    assert relative_error(grads, ref_grads) < 1e-12
    assert relative_error(hvp, ref_hvp) < 1e-10
    # and per layer, not only in aggregate (each parameter's product is checked on its own scale)
    scale = max(float(h.abs().max()) for h in ref_hvp)
    for ours, theirs in zip(hvp, ref_hvp, strict=True):
        assert float((ours - theirs).abs().max()) < 1e-10 * scale


def test_gradients_running_statistics_and_eval_outputs_are_the_native_ones():
    reference, fast = network(torch.float32), network(torch.float32)
    exact_second_order(fast)
    for step in range(3):
        for model in (reference, fast):
            model.zero_grad()
            loss_of(model, batch(step, torch.float32)).backward()
        for p, q in zip(reference.parameters(), fast.parameters(), strict=True):
            assert torch.equal(p.grad, q.grad)
    for a, b in zip(reference.buffers(), fast.buffers(), strict=True):
        assert torch.equal(a, b)  # running mean/var (also momentum=None's cumulative average), counts
    reference.eval()
    fast.eval()
    x = batch(9, torch.float32)[0]
    assert torch.equal(reference(x), fast(x))


def test_an_rtho_tangent_update_matches_the_double_backward_reference():
    """Five RTHO tangent steps (Nesterov momentum, weight decay, the loop's clipping) on the
    BatchNorm/ReLU network: ``Z`` with the swapped layers equals ``Z`` by autograd's double
    backward to 1e-6 (relative, in norm)."""
    optim = OptimSettings(momentum=0.9, weight_decay=5e-4, nesterov=True, clip_grad_norm=1.0)
    reference = network()
    fast, _ = swapped_copy(reference)
    tangents = []
    for model in (reference, fast):
        params = list(model.parameters())
        run = types.SimpleNamespace(params=params, task=types.SimpleNamespace(optim=optim))
        tangent = LRTangent("rtho")
        for step in range(5):
            tangent.backward(loss_of(model, batch(step)), params)
            torch.nn.utils.clip_grad_norm_(params, optim.clip_grad_norm)
            direction = tangent.direction(run, 0.1)
            with torch.no_grad():
                for p, d in zip(params, direction, strict=True):
                    p.sub_(0.1 * d)
        tangents.append(tangent.z)
    assert relative_error(tangents[1], tangents[0]) < 1e-6
    assert relative_error(list(fast.parameters()), list(reference.parameters())) < 1e-9


@pytest.mark.parametrize("module", [
    nn.Conv2d(3, 4, 3, padding="same"),
    nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
    nn.BatchNorm2d(3, affine=False),
    nn.BatchNorm2d(3, track_running_stats=False),
    nn.ConvTranspose2d(3, 4, 3),
    type("MyConv", (nn.Conv2d,), {})(3, 4, 3),
], ids=["same-padding", "reflect-padding", "bn-not-affine", "bn-batch-stats-only", "conv-transpose",
        "conv-subclass"])
def test_layers_outside_the_derivation_keep_pytorchs_path(module):
    assert exact_second_order(nn.Sequential(module)) == []
    assert "forward" not in module.__dict__


def test_removing_the_handles_restores_the_class_forward_and_swapping_twice_is_a_no_op():
    model = network()
    handles = exact_second_order(model)
    assert exact_second_order(model) == []
    for handle in handles:
        handle.remove()
    assert not any("forward" in m.__dict__ for m in model.modules())
