"""MobileNetV2 (Sandler et al. 2018) as the paper's meta-test code defines it for CIFAR.

The official MLR-SNet meta-test models (taken from weiaicunzai/pytorch-cifar100) give
MobileNetV2 2,254,090 parameters with 10 classes.  That count pins down details that
differ from torchvision's MobileNetV2, all kept here:

* every convolution has a bias (followed by BatchNorm all the same);
* the stem is a *1x1* convolution to 32 channels with padding 1 (so a 32x32 image becomes
  34x34 with a constant border), then BN-ReLU6 -- there is no stride in the stem;
* the first bottleneck (expansion 1) still has its 1x1 expansion convolution;
* stage strides are 1, 2, 2, 2, 1, 1, 1 for the seven (expansion, channels, repeats) rows
  (1,16,1) (6,24,2) (6,32,3) (6,64,4) (6,96,3) (6,160,3) (6,320,1), so 32x32 inputs end
  as 5x5 maps (64x64 inputs as 9x9) before the global average pool;
* the head is 1x1 conv 320->1280 (BN-ReLU6), global average pool and a 1280->classes
  classifier (a 1x1 conv there; a linear layer here, same parameters and function).

``width`` multiplies every channel count (the 1280-channel head included, so a shrunk
model is small all through); ``depth`` multiplies the repeats of each row (rounded up).
Initialisation is PyTorch's default, as in the meta-test code.
"""

from __future__ import annotations

from torch import Tensor, nn

from mlrsnet.paper.models._scaling import check_positive, scale_channels, scale_repeats

#: (expansion, output channels, repeats, stride of the first repeat) per stage.
STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 1),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise, linear 1x1 project; identity shortcut when shapes agree."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_channels, 1),
            nn.BatchNorm2d(out_channels),
        )
        self.use_shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return out + x if self.use_shortcut else out


class MobileNetV2(nn.Module):
    """Stem, seven stages of inverted residuals, 1x1 head, global pool, classifier."""

    def __init__(self, num_classes: int, width: float = 1.0, depth: float = 1.0) -> None:
        super().__init__()
        stem = scale_channels(STEM_CHANNELS, width)
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 1, padding=1), nn.BatchNorm2d(stem), nn.ReLU6(inplace=True)
        )
        blocks = []
        in_channels = stem
        for expansion, channels, repeats, stride in STAGES:
            out_channels = scale_channels(channels, width)
            for index in range(scale_repeats(repeats, depth)):
                blocks.append(
                    InvertedResidual(in_channels, out_channels, stride if index == 0 else 1, expansion)
                )
                in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        head = scale_channels(HEAD_CHANNELS, width)
        self.head = nn.Sequential(
            nn.Conv2d(in_channels, head, 1), nn.BatchNorm2d(head), nn.ReLU6(inplace=True)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.pool(out).flatten(1))


def mobilenetv2(num_classes: int, *, width: float = 1.0, depth: float = 1.0) -> MobileNetV2:
    """The paper's CIFAR MobileNetV2; ``width``/``depth`` shrink it for CPU profiles."""
    return MobileNetV2(num_classes, check_positive("width", width), check_positive("depth", depth))
