"""Which original image an augmented training image came from, found independently of the
augmentation code: try every crop offset of a zero-padded copy and both flips."""

from __future__ import annotations

import numpy as np


def crops_and_flips(image: np.ndarray, padding: int = 4) -> np.ndarray:
    """Every (H, W, C) view a random crop with ``padding`` and a horizontal flip can make."""
    h, w = image.shape[:2]
    views = []
    for source in (image, image[:, ::-1]):
        padded = np.pad(source, ((padding, padding), (padding, padding), (0, 0)))
        views += [padded[dy:dy + h, dx:dx + w] for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)]
    return np.stack(views)


def source_index(augmented: np.ndarray, originals: np.ndarray, padding: int = 4) -> int | None:
    """Index in ``originals`` (N, H, W, C uint8) of the image ``augmented`` is a crop/flip of."""
    for k, original in enumerate(originals):
        if (crops_and_flips(original, padding) == augmented).all(axis=(1, 2, 3)).any():
            return k
    return None
