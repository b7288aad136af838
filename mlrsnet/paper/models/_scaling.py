"""Width and depth knobs shared by the image models.

Every image model takes ``width`` (a channel multiplier) so the ``smoke`` and ``mini`` CPU
profiles can shrink it; ``width=1.0`` must reproduce the paper-scale model exactly, so the
rounding below is the identity at 1.0.  Checks raise :class:`UserError` because the values
come from task profiles and benchmark specs that a user edits.
"""

from __future__ import annotations

import math

from mlrsnet.errors import UserError


def check_positive(name: str, value: float) -> float:
    """Return ``value`` if it is a finite number > 0, else explain the mistake."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"model argument {name!r} must be a number > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"model argument {name!r} must be > 0, got {value!r}")
    return float(value)


def check_count(name: str, value: int, minimum: int = 1) -> int:
    """Return ``value`` if it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"model argument {name!r} must be an integer >= {minimum}, got {value!r}")
    return value


def scale_channels(channels: int, width: float, multiple: int = 1) -> int:
    """``channels * width`` rounded to the nearest multiple of ``multiple`` (at least one).

    ``multiple`` is 2 where a block splits its channels in halves (ShuffleNetV2, NASNet's
    factorised reduction), so a shrunk model never gets an odd channel count there.
    """
    scaled = round(channels * width / multiple) * multiple
    return max(multiple, int(scaled))


def scale_repeats(repeats: int, depth: float) -> int:
    """``repeats * depth`` rounded up (at least one), as EfficientNet scales its stages."""
    return max(1, math.ceil(repeats * depth))


def check_probability(name: str, value: float) -> float:
    """Return ``value`` if it is a number in [0, 1) (a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise UserError(f"model argument {name!r} must be a number in [0, 1), got {value!r}")
    return float(value)
