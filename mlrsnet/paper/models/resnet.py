"""ResNet-18 in its CIFAR form, the network MLR-SNet was meta-trained on.

The CIFAR form (as in the widely used kuangliu/pytorch-cifar models the paper's counts
match: 11,173,962 parameters with 10 classes, 11,220,132 with 100) differs from the ImageNet
ResNet-18 in the stem: one 3x3 stride-1 convolution and no max-pool, so a 32x32 image keeps
full resolution in the first stage and ends as a 4x4 map.  The CIFAR code then averages that
map with a fixed 4x4 pool; we use a global adaptive average pool instead, which has no
parameters and gives the same result on 32x32 inputs while letting TinyImageNet's 64x64
images through unchanged (their last map is 8x8 and is averaged the same way, with no
change to strides or to the parameter count).

Knobs for small CPU profiles: ``width`` multiplies every channel count (64-128-256-512 at
1.0) and ``blocks_per_stage`` sets the number of residual blocks in each of the four stages
((2, 2, 2, 2) is ResNet-18).  Convolutions are initialised as in the official MLR-SNet
meta-training code (Xavier-uniform, gain sqrt(2); see :mod:`mlrsnet.paper.models._init`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from mlrsnet.errors import UserError
from mlrsnet.paper.models._init import init_convs_xavier
from mlrsnet.paper.models._scaling import check_count, check_positive, scale_channels

#: Output channels of the four stages at ``width=1``.
STAGE_CHANNELS = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (a 1x1 projection when shapes change)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """3x3 stem, four stages of basic blocks (strides 1, 2, 2, 2), global pool, linear head."""

    def __init__(
        self, num_classes: int, blocks_per_stage: Sequence[int], stage_channels: Sequence[int],
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        stem_channels = stage_channels[0]
        self.conv1 = nn.Conv2d(3, stem_channels, 3, stem_stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        stages = []
        in_channels = stem_channels
        for index, (blocks, channels) in enumerate(zip(blocks_per_stage, stage_channels, strict=True)):
            first_stride = 1 if index == 0 else 2
            layers = []
            for block in range(blocks):
                layers.append(BasicBlock(in_channels, channels, first_stride if block == 0 else 1))
                in_channels = channels
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_channels, num_classes)
        init_convs_xavier(self)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(self.pool(out).flatten(1))


def resnet18(
    num_classes: int, *, width: float = 1.0, blocks_per_stage: Sequence[int] = (2, 2, 2, 2),
    stem_stride: int = 1,
) -> CifarResNet:
    """CIFAR ResNet-18; ``width``/``blocks_per_stage`` shrink it for CPU profiles.

    ``stem_stride=2`` (CPU profiles of TinyImageNet only) halves the 64x64 input in the stem,
    so the stages see CIFAR-sized maps at a quarter of the cost; the paper's network keeps 1.
    """
    width = check_positive("width", width)
    blocks = tuple(blocks_per_stage)
    if len(blocks) != 4:
        raise UserError(f"model argument 'blocks_per_stage' needs 4 entries, got {blocks!r}")
    for count in blocks:
        check_count("blocks_per_stage entry", count)
    channels = tuple(scale_channels(c, width) for c in STAGE_CHANNELS)
    return CifarResNet(num_classes, blocks, channels, check_count("stem_stride", stem_stride))
