"""Wide residual networks (Zagoruyko & Komodakis 2016), CIFAR form; WRN-28-10 is the preset.

Follows the WRN of the official MLR-SNet meta-training code (itself from
meliketoy/wide-resnet.pytorch), whose WRN-28-10 with 100 classes has the paper's
36,536,884 parameters: pre-activation blocks ``BN-ReLU-conv3x3-dropout, BN-ReLU-conv3x3``
with bias-free convolutions, the stride on the *second* convolution, a bias-free 1x1
projection of the raw block input where the shape changes, then a final BN-ReLU, global
average pooling and a linear head.  Depth ``d`` gives ``(d - 4) / 6`` blocks in each of
three stages of ``16k, 32k, 64k`` channels (``k`` is the widen factor).

Two details are kept because results are compared with that code: convolutions are
initialised Xavier-uniform with gain sqrt(2) (its ``init_weights``), and the final
BatchNorm uses ``momentum=0.9`` (PyTorch convention, i.e. running statistics follow the
latest batch closely).  The global pool replaces the fixed 8x8 pool, which is identical on
32x32 inputs and lets 64x64 inputs through.

``width`` multiplies every channel count including the 16-channel stem, so small CPU
profiles can shrink the network without changing its depth; ``depth`` itself is the
natural depth knob (10, 16, 22, 28, ...).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mlrsnet.errors import UserError
from mlrsnet.paper.models._init import init_convs_xavier
from mlrsnet.paper.models._scaling import check_count, check_positive, check_probability, scale_channels


class WideBasicBlock(nn.Module):
    """Pre-activation residual block with optional dropout between its two convolutions."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.dropout(self.conv1(F.relu(self.bn1(x))))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.shortcut(x)


class WideResNet(nn.Module):
    """3x3 stem, three stages of wide pre-activation blocks (strides 1, 2, 2), BN-ReLU, head."""

    def __init__(
        self,
        num_classes: int,
        blocks_per_stage: int,
        stem_channels: int,
        stage_channels: tuple[int, int, int],
        dropout: float,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_channels, 3, 1, 1, bias=False)
        stages = []
        in_channels = stem_channels
        for index, channels in enumerate(stage_channels):
            first_stride = 1 if index == 0 else 2
            blocks = []
            for block in range(blocks_per_stage):
                stride = first_stride if block == 0 else 1
                blocks.append(WideBasicBlock(in_channels, channels, stride, dropout))
                in_channels = channels
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3 = stages
        self.bn = nn.BatchNorm2d(in_channels, momentum=0.9)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        init_convs_xavier(self)

    def forward(self, x: Tensor) -> Tensor:
        out = self.stage3(self.stage2(self.stage1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return self.linear(self.pool(out).flatten(1))


def wide_resnet(
    num_classes: int,
    *,
    depth: int = 28,
    widen_factor: float = 10,
    dropout: float = 0.0,
    width: float = 1.0,
) -> WideResNet:
    """WRN-``depth``-``widen_factor``; ``width`` further scales all channels (stem included)."""
    check_count("depth", depth, minimum=10)
    if (depth - 4) % 6 != 0:
        raise UserError(f"wide_resnet depth must be 6n + 4 (10, 16, 22, 28, ...), got {depth}")
    widen_factor = check_positive("widen_factor", widen_factor)
    width = check_positive("width", width)
    dropout = check_probability("dropout", dropout)
    stages = tuple(scale_channels(base * widen_factor, width) for base in (16, 32, 64))
    return WideResNet(num_classes, (depth - 4) // 6, scale_channels(16, width), stages, dropout)


def wrn28_10(
    num_classes: int,
    *,
    width: float = 1.0,
    dropout: float = 0.0,
    depth: int = 28,
    widen_factor: float = 10,
) -> WideResNet:
    """The paper's WRN-28-10 (dropout 0); every argument can be overridden for small profiles."""
    return wide_resnet(num_classes, depth=depth, widen_factor=widen_factor, dropout=dropout, width=width)
