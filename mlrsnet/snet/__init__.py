"""The method: MLR-SNet itself (network, gamma, the drop-in scheduler, checkpoint sets).

This layer needs torch and numpy only and imports nothing of the harness or of the paper's
apparatus, so ``from mlrsnet.snet import MLRSNetScheduler`` works in any training loop
(``tests/snet/test_imports.py`` checks it).  The names below are loaded on first use, so
``import mlrsnet.snet.gamma`` does not pay for the scheduler's imports.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MLRSNetScheduler": "mlrsnet.snet.scheduler",
    "stage_starts": "mlrsnet.snet.scheduler",
    "MLRSNet": "mlrsnet.snet.net",
    "LSTMState": "mlrsnet.snet.net",
    "load_mlrsnet": "mlrsnet.snet.net",
    "TaskScale": "mlrsnet.snet.gamma",
    "CheckpointSet": "mlrsnet.snet.checkpoint_sets",
    "resolve_checkpoints": "mlrsnet.snet.checkpoint_sets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
