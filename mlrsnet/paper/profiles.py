"""What one scale of a task is: epochs, batch and data sizes, model scaling (a profile).

Its own module (not part of :mod:`mlrsnet.paper.tasks`) because the workloads read profiles
while the tasks build workloads: both import this, neither the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROFILES = ("smoke", "mini", "paper")


@dataclass(frozen=True)
class Profile:
    """One scale of a task.  Sizes are counts of examples (images) or tokens (text)."""

    epochs: int
    batch_size: int
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Training examples used after the held-out part is removed (None: all the rest).
    train_size: int | None = None
    #: Held-out training examples (the meta/validation set of MLR-SNet, RTHO and tuning).
    #: Text tasks hold out nothing from train: their validation split plays this role.
    holdout: int = 1000
    #: Test examples evaluated each epoch (None: the whole test split).
    test_size: int | None = None
    eval_batch_size: int = 500
    #: A ``<dataset>-mini.npz`` subset may serve this profile.
    allow_mini_data: bool = True
    # -- text only
    bptt: int = 35
    train_tokens: int | None = None
    eval_tokens: int | None = None
    #: Ray Tune: samples per searcher, and resources per trial.
    tune_samples: int = 8
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    notes: str = ""
