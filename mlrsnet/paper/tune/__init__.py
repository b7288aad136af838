"""Ray Tune searches over a method's hyper-parameters (supplement Table 1 and Sec. 5).

One module per job: ``plan`` (the spec's ``[tune]`` block), ``searchers`` (the searcher
registry: BayesOpt, BOHB, random, grid, and everything the suite knows about each),
``spaces`` (search spaces in each searcher's encoding), ``objective`` (what is optimised and
reported), ``trial`` (the trainable), ``search`` (one resumable Tune experiment),
``progress`` (the display), ``results`` (best trials from Parquet), ``skips`` (tasks without
data), ``transfer_runs`` (tuned configurations applied elsewhere) and ``command``
(``mlrsnet-bench tune``); ``bohb`` holds the one searcher class of our own.
Importing this package does not import Ray.
"""

from __future__ import annotations

import argparse


def tune_command(args: argparse.Namespace) -> int:
    """``mlrsnet-bench tune``; see :mod:`mlrsnet.paper.tune.command`."""
    from mlrsnet.paper.tune.command import tune_command as run

    return run(args)


__all__ = ["tune_command"]
