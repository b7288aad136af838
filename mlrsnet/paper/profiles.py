"""What one scale of a task is: epochs, batch and data sizes, model scaling (a profile).

Its own module (not part of :mod:`mlrsnet.paper.tasks`) because the workloads read profiles
while the tasks build workloads: both import this, neither the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

PROFILES = ("smoke", "mini", "cpu", "paper")
#: :attr:`Profile.holdout_mode` values.
HOLDOUT_MODES = ("disjoint", "overlap")

#: Field metadata: the smallest value a field takes (``min``), checked with the field's
#: type when a spec or ``--override`` sets it (:func:`mlrsnet.harness.experiment.check_overrides`).
POSITIVE: dict[str, Any] = {"min": 1}
NON_NEGATIVE: dict[str, Any] = {"min": 0}


@dataclass(frozen=True)
class Profile:
    """One scale of a task.  Sizes are counts of examples (images) or tokens (text)."""

    epochs: int = field(metadata=POSITIVE)
    batch_size: int = field(metadata=POSITIVE)
    #: ``"paper"`` (the paper's settings: methods keep their official cadences) or
    #: ``"reduced"`` (a scaled-down profile); what a method is told
    #: (:attr:`mlrsnet.harness.contract.RunContext.scale`), never the profile's name.
    scale: str = field(default="reduced", metadata={"choices": ("paper", "reduced")})
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Training examples used after the held-out part is removed (None: all the rest).
    train_size: int | None = field(default=None, metadata=POSITIVE)
    #: Held-out training examples (the meta/validation set of MLR-SNet, RTHO and tuning): a
    #: count, or a share of the training split when a number in (0, 1) (Fig. 3's sweep reads
    #: as 2, 4, 8, 10 % of CIFAR-10's 50,000 images at any scale).  Text tasks hold out
    #: nothing from train: their validation split plays this role.
    holdout: int | float = field(default=1000, metadata=NON_NEGATIVE)
    #: How the held-out images relate to the training images (images only):
    #: ``"disjoint"`` (default): the training set is every other image, as the paper describes;
    #: ``"overlap"``: the training set is an independent class-balanced draw of the same size,
    #: so most held-out images are trained on too (about 98 % at 1,000 of 50,000), as the
    #: official ``build_dataset`` draws them (``meta-train/image-classification/data_loader.py``:
    #: two datasets, each shuffled per class).  Measured (issue 22, ResNet-18/CIFAR-10 ``cpu``,
    #: MultiStep on 4,000 vs 5,000 images: 45.0/46.9 % vs 43.9/45.0 %): no measurable cost of the
    #: disjoint split, so it stays the default.
    holdout_mode: str = field(default="disjoint", metadata={"choices": HOLDOUT_MODES})
    #: Test examples evaluated each epoch (None: the whole test split).
    test_size: int | None = field(default=None, metadata=POSITIVE)
    eval_batch_size: int = field(default=500, metadata=POSITIVE)
    #: A ``<dataset>-mini.npz`` subset may serve this profile.
    allow_mini_data: bool = True
    # -- text only
    bptt: int = field(default=35, metadata=POSITIVE)
    train_tokens: int | None = field(default=None, metadata=POSITIVE)
    eval_tokens: int | None = field(default=None, metadata=POSITIVE)
    #: Words kept, the most frequent in train; the rest read as ``<unk>`` (None: the
    #: corpus's own vocabulary).  A CPU scale-down: :func:`mlrsnet.paper.data.text.cap_vocabulary`.
    vocab_size: int | None = field(default=None, metadata={"min": 2})
    #: Ray Tune: samples per searcher, and resources per trial.
    tune_samples: int = field(default=8, metadata=POSITIVE)
    cpus_per_trial: float = field(default=1.0, metadata=NON_NEGATIVE)
    #: Fractional values share a GPU between trials (and between Ray cells of ``run``):
    #: ``paper`` gives the small settings a quarter or half of one.
    gpus_per_trial: float = field(default=0.0, metadata=NON_NEGATIVE)
    #: Sized for GPUs: ``--device auto`` refuses to fall back to the CPU (pass ``--device
    #: cpu`` to train there on purpose), :func:`mlrsnet.harness.execution.pick_device`.
    expects_gpu: bool = False
    #: A task whose dataset is not prepared stops ``tune`` / ``reproduce`` up front with the
    #: command that prepares it, instead of being skipped and listed (the small profiles
    #: skip SVHN, which has no offline subset).
    requires_data: bool = False
    notes: str = ""

    def __post_init__(self) -> None:
        h = self.holdout
        if isinstance(h, float) and not (0.0 < h < 1.0):
            from mlrsnet.errors import UserError

            raise UserError(f"holdout {h!r}: a share of the training split is a number in (0, 1); "
                            "a count is a whole number")

    def holdout_count(self, n_train: int) -> int:
        """The held-out examples out of ``n_train``: the count, or the share rounded."""
        h = self.holdout
        return round(h * n_train) if isinstance(h, float) else int(h)

    def training_fields(self) -> dict[str, Any]:
        """The fields that decide what is trained, as JSON values (tuples become lists): what
        a run and an artefact made at this profile record, so that a later change of the
        profile's definition is noticed (the executor trains such a run again)."""
        import json
        from dataclasses import asdict

        defaults = {f.name: f.default for f in dataclass_fields(self)}
        fields = {k: v for k, v in asdict(self).items() if k not in NOT_TRAINING
                  and not (k in RECORDED_WHEN_SET and v == defaults[k])}
        return json.loads(json.dumps(fields))


#: Profile fields that do not change what a run trains (search resources, device and data
#: policies, prose).
NOT_TRAINING = ("tune_samples", "cpus_per_trial", "gpus_per_trial", "expects_gpu", "requires_data", "notes")
#: Fields added after runs were recorded, recorded only when they differ from their default:
#: a record without them was made at the default, so it still matches (``scale``: every run
#: recorded before the field existed ran at the reduced scale or at ``paper``, which no
#: published run used).
RECORDED_WHEN_SET = ("scale", "holdout_mode")
