"""The model zoo: every network the paper trains, built by name.

Tasks name their model as ``arch`` plus keyword arguments (``width``, ``depth``, ...), so
the ``smoke``/``mini`` profiles shrink a model without a new class while the ``paper``
profile uses the defaults, which give the paper-scale networks (parameter counts checked
by ``tests/models``).  Which public implementation each network reproduces, and how it is
adapted to 32x32 / 64x64 inputs, is documented in its module.

    >>> model = build_model("resnet18", num_classes=10, width=0.25)

A mistake in ``arch`` or in a keyword is a :class:`~mlrsnet.errors.UserError` that lists
what is accepted, because these names come from benchmark specs a user edits.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from mlrsnet.errors import UserError

#: arch -> (module, builder).  Imported on first use: EfficientNet pulls in torchvision,
#: which would otherwise add seconds to every process (and every Ray worker) start.
_BUILDERS: dict[str, tuple[str, str]] = {
    "resnet18": ("mlrsnet.paper.models.resnet", "resnet18"),
    "wrn28_10": ("mlrsnet.paper.models.wide_resnet", "wrn28_10"),
    "shufflenetv2": ("mlrsnet.paper.models.shufflenetv2", "shufflenetv2"),
    "mobilenetv2": ("mlrsnet.paper.models.mobilenetv2", "mobilenetv2"),
    "nasnet": ("mlrsnet.paper.models.nasnet", "nasnet"),
    "efficientnet_b0": ("mlrsnet.paper.models.efficientnet", "efficientnet_b0"),
    "efficientnet_b7": ("mlrsnet.paper.models.efficientnet", "efficientnet_b7"),
    "lstm_lm": ("mlrsnet.paper.models.lstm_lm", "lstm_lm"),
}

#: Every name :func:`build_model` accepts.
ARCHS: tuple[str, ...] = tuple(_BUILDERS)
#: The image classifiers (input ``(B, 3, H, W)``, output ``(B, num_classes)``).
IMAGE_ARCHS: tuple[str, ...] = tuple(name for name in ARCHS if name != "lstm_lm")


def model_kwargs(arch: str) -> dict[str, Any]:
    """The keyword arguments ``arch`` accepts, with their defaults (``inspect.Parameter.empty``
    where the argument is required)."""
    builder = _builder(arch)
    return {
        name: param.default
        for name, param in inspect.signature(builder).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    }


def build_model(arch: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build ``arch`` with ``num_classes`` outputs (the vocabulary size for ``lstm_lm``)."""
    builder = _builder(arch)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"num_classes for model {arch!r} must be an integer >= 1, got {num_classes!r}")
    accepted = model_kwargs(arch)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise UserError(
            f"model {arch!r} does not take {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted) or 'no keyword arguments'}"
        )
    missing = [
        name
        for name, default in accepted.items()
        if default is inspect.Parameter.empty and name not in kwargs
    ]
    if missing:
        raise UserError(f"model {arch!r} needs {', '.join(map(repr, missing))}")
    return builder(num_classes, **kwargs)


def _builder(arch: str) -> Callable[..., nn.Module]:
    if not isinstance(arch, str) or arch not in _BUILDERS:
        raise UserError(f"unknown model {arch!r}; choose one of: {', '.join(ARCHS)}")
    module, name = _BUILDERS[arch]
    return getattr(importlib.import_module(module), name)


__all__ = ["ARCHS", "IMAGE_ARCHS", "build_model", "model_kwargs"]
