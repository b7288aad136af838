"""EfficientNet-B0 and -B7 (Tan & Le 2019): torchvision's definition, run on 32x32 inputs.

The paper's Fig. 4 trains EfficientNet-B0/-B7 on CIFAR-100 with counts 4,135,648 and
64,043,060, which are torchvision's ``efficientnet_b0``/``efficientnet_b7`` with 100
classes.  We build the very same network through torchvision's public ``EfficientNet``
class and its ``MBConvConfig`` stage table (a test checks that every parameter name and
shape equals ``torchvision.models.efficientnet_b0/b7(weights=None, num_classes=...)``),
keeping torchvision's compound multipliers (B0: width 1.0, depth 1.0, dropout 0.2;
B7: width 2.0, depth 3.1, dropout 0.5, BatchNorm eps 1e-3 / momentum 0.01) and its
stochastic-depth rate 0.2.

Adaptation to small images (documented, parameter count unchanged): the stem convolution's
stride is set from 2 to 1 (``stem_stride``).  torchvision's network downsamples by 32, so a
32x32 CIFAR image would leave the last stage as a single pixel; with stride 1 it ends at
2x2 (TinyImageNet's 64x64: 4x4) and the global average pool takes it from there.  The
kernel, padding and weights of the stem are untouched.

``width`` and ``depth`` multiply torchvision's multipliers (channels are rounded to a
multiple of 8 and repeats rounded up, exactly as torchvision scales B0..B7), so
``efficientnet_b0(width=0.25, depth=0.34)`` is a genuine, smaller member of the family.
``dropout`` overrides the classifier dropout.
"""

from __future__ import annotations

from functools import partial

from torch import nn
from torchvision.models import EfficientNet
from torchvision.models.efficientnet import MBConvConfig

from mlrsnet.paper.models._scaling import check_count, check_positive, check_probability

#: EfficientNet-B0 stages (expand ratio, kernel, stride, in, out, repeats): the paper's Table 1.
B0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
STOCHASTIC_DEPTH = 0.2


def _build(
    num_classes: int,
    *,
    width_mult: float,
    depth_mult: float,
    dropout: float,
    stem_stride: int,
    norm_layer: type[nn.Module] | partial[nn.Module] | None,
) -> EfficientNet:
    setting = [MBConvConfig(*stage, width_mult=width_mult, depth_mult=depth_mult) for stage in B0_STAGES]
    model = EfficientNet(
        setting,
        dropout,
        stochastic_depth_prob=STOCHASTIC_DEPTH,
        num_classes=num_classes,
        norm_layer=norm_layer,
    )
    stem_conv = model.features[0][0]
    stem_conv.stride = (stem_stride, stem_stride)
    return model


def efficientnet_b0(
    num_classes: int,
    *,
    width: float = 1.0,
    depth: float = 1.0,
    dropout: float = 0.2,
    stem_stride: int = 1,
) -> EfficientNet:
    """torchvision EfficientNet-B0 with a stride-1 stem; ``width``/``depth`` scale it down."""
    return _build(
        num_classes,
        width_mult=1.0 * check_positive("width", width),
        depth_mult=1.0 * check_positive("depth", depth),
        dropout=check_probability("dropout", dropout),
        stem_stride=check_count("stem_stride", stem_stride),
        norm_layer=None,
    )


def efficientnet_b7(
    num_classes: int,
    *,
    width: float = 1.0,
    depth: float = 1.0,
    dropout: float = 0.5,
    stem_stride: int = 1,
) -> EfficientNet:
    """torchvision EfficientNet-B7 with a stride-1 stem; ``width``/``depth`` scale it down."""
    return _build(
        num_classes,
        width_mult=2.0 * check_positive("width", width),
        depth_mult=3.1 * check_positive("depth", depth),
        dropout=check_probability("dropout", dropout),
        stem_stride=check_count("stem_stride", stem_stride),
        norm_layer=partial(nn.BatchNorm2d, eps=0.001, momentum=0.01),
    )
