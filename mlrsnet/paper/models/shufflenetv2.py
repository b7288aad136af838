"""ShuffleNetV2 (Ma et al. 2018) as the paper's meta-test code defines it for CIFAR.

The official MLR-SNet meta-test models (taken from weiaicunzai/pytorch-cifar100) give
ShuffleNetV2 (1x) 1,268,646 parameters with 10 classes.  Details that count implies, kept:

* every convolution has a bias (each is followed by BatchNorm all the same);
* the stem is a 3x3 stride-1 convolution to 24 channels with BatchNorm and *no* ReLU and
  no max-pool, so 32x32 inputs reach the three stages at full resolution;
* each stage is one downsampling unit (stride 2, both branches transform the whole input
  to half the output channels each) followed by 3, 7, 3 basic units (the input is split in
  halves; one half passes through 1x1 - depthwise 3x3 - 1x1, the other is kept); the two
  halves are concatenated and channel-shuffled with two groups;
* stage widths 116, 232, 464 and a 1x1 conv to 1024 channels (BN-ReLU) before the global
  average pool and the linear classifier.

32x32 inputs end as 4x4 maps, 64x64 inputs as 8x8; the global pool handles both.
``width`` multiplies every channel count (rounded to an even number, since units split
their channels in halves; the 1024-channel head shrinks too); ``depth`` multiplies the
number of basic units per stage (rounded up).  Initialisation is PyTorch's default.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mlrsnet.paper.models._scaling import check_positive, scale_channels, scale_repeats

STEM_CHANNELS = 24
STAGE_CHANNELS = (116, 232, 464)
BASIC_UNITS = (3, 7, 3)
HEAD_CHANNELS = 1024


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave the channels of ``groups`` equal blocks so information crosses branches."""
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)


def _pointwise(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def _depthwise(channels: int, stride: int) -> list[nn.Module]:
    # No ReLU after the depthwise convolution, as in the ShuffleNetV2 paper.
    return [nn.Conv2d(channels, channels, 3, stride, 1, groups=channels), nn.BatchNorm2d(channels)]


class BasicUnit(nn.Module):
    """Keep one half of the channels, transform the other, concatenate and shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(*_pointwise(half, half), *_depthwise(half, 1), *_pointwise(half, half))

    def forward(self, x: Tensor) -> Tensor:
        kept, transformed = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([kept, self.branch(transformed)], dim=1), 2)


class DownsampleUnit(nn.Module):
    """Halve the resolution: two strided branches, each producing half the output channels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        half = out_channels // 2
        self.branch = nn.Sequential(
            *_pointwise(in_channels, in_channels), *_depthwise(in_channels, 2), *_pointwise(in_channels, half)
        )
        self.shortcut = nn.Sequential(*_depthwise(in_channels, 2), *_pointwise(in_channels, half))

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(torch.cat([self.shortcut(x), self.branch(x)], dim=1), 2)


class ShuffleNetV2(nn.Module):
    """Stem, three stages (downsample unit + basic units), 1x1 head, global pool, classifier."""

    def __init__(self, num_classes: int, width: float = 1.0, depth: float = 1.0) -> None:
        super().__init__()
        stem = scale_channels(STEM_CHANNELS, width)
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, 1, 1), nn.BatchNorm2d(stem))
        stages = []
        in_channels = stem
        for channels, units in zip(STAGE_CHANNELS, BASIC_UNITS, strict=True):
            out_channels = scale_channels(channels, width, multiple=2)
            layers: list[nn.Module] = [DownsampleUnit(in_channels, out_channels)]
            layers += [BasicUnit(out_channels) for _ in range(scale_repeats(units, depth))]
            stages.append(nn.Sequential(*layers))
            in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        head = scale_channels(HEAD_CHANNELS, width)
        self.head = nn.Sequential(*_pointwise(in_channels, head))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.head(self.stages(self.stem(x)))
        return self.classifier(self.pool(out).flatten(1))


def shufflenetv2(num_classes: int, *, width: float = 1.0, depth: float = 1.0) -> ShuffleNetV2:
    """The paper's CIFAR ShuffleNetV2 (1x); ``width``/``depth`` shrink it for CPU profiles."""
    return ShuffleNetV2(num_classes, check_positive("width", width), check_positive("depth", depth))
