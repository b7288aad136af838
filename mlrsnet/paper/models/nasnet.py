"""NASNet-A (Zoph et al. 2018) as the paper's meta-test code defines it for CIFAR.

The official MLR-SNet meta-test models (taken from weiaicunzai/pytorch-cifar100) build
NASNet-A with 4 normal cells per block, 2 reduction cells, 44 filters and a 44-filter stem:
5,126,494 parameters with 10 classes.  That implementation simplifies NASNet-A; since the
paper's Fig. 2 curves come from it, we reproduce its wiring and its parameter layout:

* stem: 3x3 conv (no bias) + BN; then ``N`` normal cells, a reduction cell (filters
  doubled), ``N`` normal cells, a reduction cell (doubled again), ``N`` normal cells; then
  ReLU, global average pool and a linear classifier on ``6 * filters`` features;
* every cell reads the previous cell's output ``x`` and the one before, ``prev``.  ``prev``
  is first aligned to ``x``: halved in resolution by a factorised reduction (ReLU, two
  1x1 convs on the even pixels and on the pixels shifted by one, concatenated, BN) when the
  sizes differ, else squeezed by ReLU-1x1 conv-BN when its channel count differs from the
  cell's filters, else used as is.  The first cell has no ``prev`` and uses ``x``;
* a separable branch is [ReLU, depthwise kxk, pointwise 1x1, BN] twice (stride only in
  the first); pointwise convs carry biases; the first depthwise conv is bias-free in normal
  cells and biased in reduction cells, the second always biased (as in the reference);
* normal cell, with ``h`` = ReLU-1x1 conv (no bias)-BN of ``x``:
  ``[prev, sep3(h) + h, sep3(prev) + sep5(h), avg3(h) + h, avg3(prev) + avg3(prev),
  sep5(prev) + sep3(prev)]`` concatenated (6 x filters channels);
* reduction cell, with ``h`` = ReLU-1x1 conv (biased)-BN of ``x``:
  ``a = sep7/2(prev) + sep5/2(h)``, ``b = max3/2(h) + sep7/2(prev)``,
  ``c = avg3/2(h) + sep5/2(prev)``, ``d = max3/2(h) + sep3(a)``, ``e = avg3(a) + b``;
  output ``[b, c, d, e]`` (4 x filters channels).

Like the reference, every cell builds both alignment paths (factorised reduction and
squeeze) although a given cell uses at most one: those unused layers are part of the
5,126,494 parameters but never receive a gradient.

32x32 inputs are processed at 32, 16 and 8 pixels (64x64 at 64, 32, 16), then pooled.
``width`` scales the filter and stem-filter counts (rounded to even numbers, since the
factorised reduction halves them); ``normal_repeats`` and ``reduction_cells`` are the depth
knobs.  Initialisation is PyTorch's default, as in the meta-test code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlrsnet.paper.models._scaling import check_count, check_positive, scale_channels


class SeparableBranch(nn.Module):
    """[ReLU, depthwise conv, pointwise conv, BN] twice; only the first may stride."""

    def __init__(
        self, channels: int, kernel: int, stride: int = 1, first_depthwise_bias: bool = True
    ) -> None:
        super().__init__()
        pad = kernel // 2
        self.layers = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel, stride, pad, groups=channels, bias=first_depthwise_bias),
            nn.Conv2d(channels, channels, 1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel, 1, pad, groups=channels),
            nn.Conv2d(channels, channels, 1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class AlignPrevious(nn.Module):
    """Bring the cell's second input (``prev``) to the resolution and width of the cell."""

    def __init__(self, prev_channels: int, filters: int) -> None:
        super().__init__()
        self.filters = filters
        self.even_pixels = nn.Conv2d(prev_channels, filters // 2, 1)
        self.odd_pixels = nn.Conv2d(prev_channels, filters // 2, 1)
        self.reduce_bn = nn.BatchNorm2d(filters)
        self.squeeze = nn.Sequential(nn.ReLU(), nn.Conv2d(prev_channels, filters, 1), nn.BatchNorm2d(filters))

    def forward(self, x: Tensor, prev: Tensor) -> Tensor:
        if prev.shape[2] != x.shape[2]:
            prev = F.relu(prev)
            even = self.even_pixels(prev[:, :, ::2, ::2])
            # Shift by one pixel (zero-filled at the far edge) so no pixel is skipped.
            shifted = F.pad(prev[:, :, 1:, 1:], (0, 1, 0, 1))
            odd = self.odd_pixels(shifted[:, :, ::2, ::2])
            return self.reduce_bn(torch.cat([even, odd], dim=1))
        if prev.shape[1] != self.filters:
            return self.squeeze(prev)
        return prev


def _squeeze_input(in_channels: int, filters: int, bias: bool) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(in_channels, filters, 1, bias=bias), nn.BatchNorm2d(filters))


class NormalCell(nn.Module):
    """Keeps the resolution; outputs ``6 * filters`` channels."""

    expansion = 6

    def __init__(self, x_channels: int, prev_channels: int, filters: int) -> None:
        super().__init__()
        self.squeeze = _squeeze_input(x_channels, filters, bias=False)
        self.sep3_h = SeparableBranch(filters, 3, first_depthwise_bias=False)
        self.sep3_prev = SeparableBranch(filters, 3, first_depthwise_bias=False)
        self.sep5_h = SeparableBranch(filters, 5, first_depthwise_bias=False)
        self.sep5_prev = SeparableBranch(filters, 5, first_depthwise_bias=False)
        self.sep3_prev_b = SeparableBranch(filters, 3, first_depthwise_bias=False)
        self.align = AlignPrevious(prev_channels, filters)

    def forward(self, x: Tensor, prev: Tensor) -> Tensor:
        prev = self.align(x, prev)
        h = self.squeeze(x)
        avg_prev = F.avg_pool2d(prev, 3, 1, 1)
        return torch.cat(
            [
                prev,
                self.sep3_h(h) + h,
                self.sep3_prev(prev) + self.sep5_h(h),
                F.avg_pool2d(h, 3, 1, 1) + h,
                avg_prev + avg_prev,
                self.sep5_prev(prev) + self.sep3_prev_b(prev),
            ],
            dim=1,
        )


class ReductionCell(nn.Module):
    """Halves the resolution; outputs ``4 * filters`` channels."""

    expansion = 4

    def __init__(self, x_channels: int, prev_channels: int, filters: int) -> None:
        super().__init__()
        self.squeeze = _squeeze_input(x_channels, filters, bias=True)
        self.sep7_prev_a = SeparableBranch(filters, 7, stride=2)
        self.sep5_h = SeparableBranch(filters, 5, stride=2)
        self.sep7_prev_b = SeparableBranch(filters, 7, stride=2)
        self.sep5_prev = SeparableBranch(filters, 5, stride=2)
        self.sep3_a = SeparableBranch(filters, 3)
        self.align = AlignPrevious(prev_channels, filters)

    def forward(self, x: Tensor, prev: Tensor) -> Tensor:
        prev = self.align(x, prev)
        h = self.squeeze(x)
        max_h = F.max_pool2d(h, 3, 2, 1)
        a = self.sep7_prev_a(prev) + self.sep5_h(h)
        b = max_h + self.sep7_prev_b(prev)
        c = F.avg_pool2d(h, 3, 2, 1) + self.sep5_prev(prev)
        d = max_h + self.sep3_a(a)
        e = F.avg_pool2d(a, 3, 1, 1) + b
        return torch.cat([b, c, d, e], dim=1)


class NASNetA(nn.Module):
    """Stem, (normal cells, reduction cell) x ``reduction_cells``, normal cells, pool, head."""

    def __init__(
        self, num_classes: int, normal_repeats: int, reduction_cells: int, filters: int, stem_filters: int
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_filters, 3, 1, 1, bias=False), nn.BatchNorm2d(stem_filters)
        )
        cells: list[nn.Module] = []
        x_channels = prev_channels = stem_filters

        def add(cell_type: type[NormalCell] | type[ReductionCell]) -> None:
            nonlocal x_channels, prev_channels
            cells.append(cell_type(x_channels, prev_channels, filters))
            prev_channels, x_channels = x_channels, filters * cell_type.expansion

        for _ in range(reduction_cells):
            for _ in range(normal_repeats):
                add(NormalCell)
            filters *= 2
            add(ReductionCell)
        for _ in range(normal_repeats):
            add(NormalCell)
        self.cells = nn.ModuleList(cells)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(x_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        prev = x
        for cell in self.cells:
            x, prev = cell(x, prev), x
        return self.classifier(self.pool(F.relu(x)).flatten(1))


def nasnet(
    num_classes: int, *, width: float = 1.0, normal_repeats: int = 4, reduction_cells: int = 2
) -> NASNetA:
    """The paper's CIFAR NASNet-A (4 @ 44, 2 reductions); knobs shrink it for CPU profiles."""
    width = check_positive("width", width)
    check_count("normal_repeats", normal_repeats)
    check_count("reduction_cells", reduction_cells, minimum=0)
    filters = scale_channels(44, width, multiple=2)
    return NASNetA(num_classes, normal_repeats, reduction_cells, filters, filters)
