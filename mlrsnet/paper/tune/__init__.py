"""Ray Tune searches over a method's hyper-parameters (supplement Table 1 and Sec. 5).

One module per job: ``plan`` (the spec's ``[tune]`` block), ``spaces`` (search spaces per
searcher), ``searchers`` (BayesOpt, BOHB, random, grid), ``objective`` (what is optimised
and reported), ``trial`` (the trainable), ``search`` (one resumable Tune experiment),
``progress`` (the display), ``results`` (best trials from Parquet), ``transfer_runs``
(tuned configurations applied elsewhere) and ``command`` (``mlrsnet-bench tune``).
Importing this package does not import Ray.
"""

from __future__ import annotations

import argparse


def tune_command(args: argparse.Namespace) -> int:
    """``mlrsnet-bench tune``; see :mod:`mlrsnet.paper.tune.command`."""
    from mlrsnet.paper.tune.command import tune_command as run

    return run(args)


__all__ = ["tune_command"]
