"""MLRSNetScheduler in the trainers people use: one adapter module per framework.

* :mod:`mlrsnet.snet.integrations.lightning`: ``MLRSNetCallback``, a PyTorch Lightning
  ``Callback``;
* :mod:`mlrsnet.snet.integrations.huggingface`: ``MLRSNetCallback``, a Hugging Face
  ``TrainerCallback`` with the scheduler the ``Trainer`` saves in its checkpoints;
* :mod:`mlrsnet.snet.integrations.timm`: ``MLRSNetTimmScheduler``, a timm ``Scheduler`` whose
  ``step_update(num_updates, metric)`` reads the loss.

Each imports its framework when it is imported, never before: this package imports nothing,
and ``mlrsnet.snet`` stays torch and numpy only (``tests/snet/test_imports.py``).  Trainers
step schedulers after ``optimizer.step()`` and without a loss; MLR-SNet needs the loss of the
batch before the step, so each adapter hooks where the framework has both
(``docs/training_loops.md``).
"""

#: Keyword arguments of MLRSNetScheduler that give the length of training; an adapter reads
#: the length from its trainer when none is given.
LENGTH_KEYS = ("epochs", "steps_per_epoch", "total_steps", "single")


def training_length(total_steps: int, epochs: float | int | None) -> dict[str, int]:
    """``MLRSNetScheduler`` length arguments for a trainer that takes ``total_steps`` optimizer
    steps: by epochs (the official epoch rule) when the run is a whole number of epochs of
    equal length, else by steps."""
    total_steps = int(total_steps)
    if epochs is not None and float(epochs).is_integer() and epochs >= 1 and total_steps % int(epochs) == 0:
        return {"epochs": int(epochs), "steps_per_epoch": total_steps // int(epochs)}
    return {"total_steps": total_steps}
