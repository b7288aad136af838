"""Process settings of a training process, set before torch starts, and handed to Ray workers.

Each is a setting of a library underneath (OpenMP, PyTorch's CPU allocator), read once when
that library starts, so :func:`apply` runs first thing in the command line
(:func:`mlrsnet.harness.cli.main`), before torch is imported; a value the user already set
in the environment is kept.  None of them changes a number a run computes (the test
``tests/harness/test_process_env.py`` trains one run each way and compares the tables bit for
bit); they change how fast it computes them.

- ``OMP_WAIT_POLICY=PASSIVE``: OpenMP threads that busy-wait between parallel regions make
  2-thread CPU training several times slower on a loaded 2-core machine; passive waiting
  costs nothing measurable when it is idle.
- ``THP_MEM_ALLOC_ENABLE=1``: PyTorch's CPU allocator (``c10/core/alloc_cpu.cpp``) aligns
  large buffers to 2 MB and asks the kernel for transparent huge pages (``madvise``).  glibc
  serves every buffer over 32 MB with a fresh ``mmap`` that the kernel zero-fills page by
  page on first touch: the 10,000-word logits of a PTB language model (32 x 35 x 10,000
  floats, 45 MB) and their gradients are such buffers, several a step.  With huge pages a
  ``mini`` 2-layer LSTM/PTB run takes 0.78x the wall time (system time 21 s -> 7 s), an image
  run about 0.97x (``benchmarks/perf/cpu_speed.py --only allocator``).

Ray workers started by this process inherit its environment; workers of a cluster started
elsewhere get the settings through :func:`forwarded_env` (``runtime_env.env_vars``).
"""

from __future__ import annotations

import os

#: The settings and the value each gets unless the environment already names one.
SETTINGS: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE", "THP_MEM_ALLOC_ENABLE": "1"}


def apply() -> None:
    """Set every :data:`SETTINGS` entry the environment does not already set."""
    for key, value in SETTINGS.items():
        os.environ.setdefault(key, value)


def forwarded_env() -> dict[str, str]:
    """What a Ray worker gets of this process's environment: the suite's own ``MLRSNET_*``
    variables and the :data:`SETTINGS` as this process has them."""
    env = {k: v for k, v in os.environ.items() if k.startswith("MLRSNET_")}
    env.update({k: os.environ[k] for k in SETTINGS if k in os.environ})
    return env
