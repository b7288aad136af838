"""ImageNet-pretrained starting points, for the supplement's Fig. 4 as the paper ran it.

The supplement sets its EfficientNet-B0/-B7 results on CIFAR-100 (87.7 % / 90.6 %) against
88.1 % / 91.7 %, EfficientNet's own ImageNet-*transfer* results, and cites Kornblith et al.
(2019)'s fine-tuning protocol: the networks are fine-tuned from ImageNet weights, not
trained from scratch.  At the ``paper`` profile the EfficientNet tasks therefore start from
torchvision's ImageNet weights (``IMAGENET1K_V1``) with a new 100-way classifier, and see
CIFAR images the way those weights were trained to: re-normalised with ImageNet's mean and
standard deviation and resized to the network's input size (:class:`ImageNetInput`).
Kornblith et al. fine-tune at each network's ImageNet input size; we read that as 224x224
for both B0 and B7 (the supplement gives no size; torchvision's B7 weights were evaluated at
600x600, which ``input_size`` can select).  The smaller profiles train the narrow networks
from scratch on 32x32 images, as the report's captions say.

Weights are fetched with ``torch.hub.load_state_dict_from_url`` into ``<data dir>/pretrained``
(``check_hash``: the sha256 of the file must start with the hash in torchvision's file name),
once; offline, the error names the file and the URL to fetch it from.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlrsnet.errors import UserError

#: ImageNet's normalisation (torchvision's ``IMAGENET1K_V1`` transforms).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def weights_url(arch: str, source: str) -> str:
    """torchvision's URL of ``arch``'s ``source`` weights (only ``"imagenet"``)."""
    if source != "imagenet":
        raise UserError(f"pretrained={source!r}: the only pretrained source is 'imagenet'")
    from torchvision.models import EfficientNet_B0_Weights, EfficientNet_B7_Weights

    table = {"efficientnet_b0": EfficientNet_B0_Weights.IMAGENET1K_V1,
             "efficientnet_b7": EfficientNet_B7_Weights.IMAGENET1K_V1}
    if arch not in table:
        raise UserError(f"no ImageNet weights are wired for model {arch!r}; pretrained models: "
                        + ", ".join(table))
    return table[arch].url


def weights_folder(data_dir: str | os.PathLike[str] | None) -> Path:
    """Where downloaded weights live: ``<data dir>/pretrained`` (the data folder the data
    layer finds: ``--data-dir``, ``$MLRSNET_DATA_DIR``, then ``./data``)."""
    root = data_dir or os.environ.get("MLRSNET_DATA_DIR") or "data"
    return Path(root).expanduser() / "pretrained"


def load_pretrained(model: nn.Module, arch: str, source: str, folder: Path) -> nn.Module:
    """``model`` with every tensor of ``arch``'s ``source`` weights whose name and shape it
    shares (the ImageNet classifier's 1,000 outputs are left out: the new head stays as
    initialised)."""
    url = weights_url(arch, source)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        state = torch.hub.load_state_dict_from_url(url, model_dir=str(folder), map_location="cpu",
                                                   check_hash=True, progress=False, weights_only=True)
    except (urllib.error.URLError, OSError, ConnectionError) as exc:
        raise UserError(
            f"the ImageNet weights of {arch} are not in {folder} and could not be downloaded from "
            f"{url} ({getattr(exc, 'reason', exc)}). Fetch that file on a machine with internet and "
            f"put it in {folder} under the same name (its sha256 must start with the hash in the "
            "name), or run at a profile that trains from scratch (every profile but paper)") from None
    except RuntimeError as exc:  # torch.hub's hash check
        raise UserError(f"the downloaded weights of {arch} in {folder} fail their check ({exc}); "
                        "delete the file and run again") from None
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable and not k.startswith("classifier")]
    if missing:
        raise UserError(f"the ImageNet weights of {arch} do not fit the model ({len(missing)} tensors "
                        f"missing or of another shape, e.g. {missing[0]}): build it at full width and "
                        "depth to fine-tune it")
    model.load_state_dict(usable, strict=False)
    return model


class ImageNetInput(nn.Module):
    """Images normalised with a dataset's statistics, re-normalised with ImageNet's and
    resized (bilinear) to ``size``: what an ImageNet-pretrained network expects.  No
    parameters; the constants are buffers."""

    def __init__(self, dataset_mean: tuple[float, ...], dataset_std: tuple[float, ...], size: int) -> None:
        super().__init__()
        as_buffer = lambda v: torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)  # noqa: E731
        self.register_buffer("scale", as_buffer(dataset_std) / as_buffer(IMAGENET_STD), persistent=False)
        self.register_buffer("shift", (as_buffer(dataset_mean) - as_buffer(IMAGENET_MEAN)) / as_buffer(IMAGENET_STD),
                             persistent=False)
        self.size = int(size)

    def forward(self, x: Tensor) -> Tensor:
        x = x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x


class Pretrained(nn.Module):
    """``network`` behind :class:`ImageNetInput`; parameter names keep a ``network.`` prefix."""

    def __init__(self, network: nn.Module, adapt: ImageNetInput) -> None:
        super().__init__()
        self.adapt, self.network = adapt, network

    def forward(self, x: Tensor) -> Any:
        return self.network(self.adapt(x))
