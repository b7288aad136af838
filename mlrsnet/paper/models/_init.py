"""The weight initialisation of the official MLR-SNet meta-training code.

Its ``init_weights`` (applied to ResNet-18 and WRN-28-10 before meta-training) draws every
convolution from Xavier-uniform with gain sqrt(2) and resets BatchNorm to weight 1, bias 0;
linear layers keep PyTorch's default.  We apply the same so our curves start where theirs do.
"""

from __future__ import annotations

import math

from torch import nn


def init_convs_xavier(model: nn.Module) -> None:
    """Xavier-uniform (gain sqrt 2) convolutions, unit/zero BatchNorm; linear layers untouched."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.xavier_uniform_(module.weight, gain=math.sqrt(2.0))
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
