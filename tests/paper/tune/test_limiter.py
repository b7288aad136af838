"""BayesOpt's path does not depend on how many trials the machine runs at once.

Tune keeps asking the searcher for trials while it has room for pending ones (whatever the
GPUs), and trials end in the order the hardware finishes them.  Two simulated machines run
the same search: one GPU (one trial at a time, in order) and eight GPUs (a batch at once,
ending in reverse).  With :class:`~mlrsnet.paper.tune.limiter.OrderedBatches` they are
suggested the same configurations; the bare BayesOptSearch is not (the test of the fix).
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import pytest
from mlrsnet.baselines.multistep import MultiStep

from mlrsnet.paper.tune.spaces import ray_space

pytest.importorskip("ray")
SPACE = MultiStep.space("image")
TRIALS = 10


def _objective(config: dict[str, Any]) -> float:
    return -((math.log10(config["lr"]) + 1.2) ** 2) - (config["decay"] - 0.2) ** 2


def _searcher(limited: bool) -> Any:
    from ray.tune.search.bayesopt import BayesOptSearch

    from mlrsnet.paper.tune.searchers import build_searcher

    if limited:
        alg, _ = build_searcher("bayesopt", max_epochs=1, options={"random_search_steps": 2})
    else:
        alg = BayesOptSearch(random_state=42, random_search_steps=2)
    space = ray_space(SPACE, "bayesopt", budget=TRIALS)
    assert alg.set_search_properties("objective", "max", space)
    return alg


def _drive(alg: Any, slots: int, reverse: bool, max_pending: int = 16) -> list[tuple[float, ...]]:
    """Tune's loop in miniature: ask for trials while there is room, run ``slots`` of the
    live ones, end them (the last started first when ``reverse``), report each result."""
    suggested: list[tuple[float, ...]] = []
    live: list[str] = []
    configs: dict[str, dict[str, Any]] = {}
    while len(suggested) < TRIALS or live:
        while len(suggested) < TRIALS and len(live) < max_pending:
            trial_id = f"t{len(suggested)}"
            config = alg.suggest(trial_id)
            if config is None:
                break
            configs[trial_id] = config
            live.append(trial_id)
            suggested.append(tuple(round(float(v), 12) for v in config.values()))
        running = live[:slots]
        ended = running[-1] if reverse else running[0]
        live.remove(ended)
        alg.on_trial_complete(ended, result={"objective": _objective(configs[ended])})
    return suggested


def test_ordered_batches_suggest_the_same_trials_on_one_gpu_and_on_eight() -> None:
    one = _drive(_searcher(limited=True), slots=1, reverse=False)
    eight = _drive(_searcher(limited=True), slots=8, reverse=True)
    assert len(one) == TRIALS and one == eight


def test_without_the_limit_the_path_depends_on_the_machine() -> None:
    """What the limit fixes: the bare searcher suggests other trials on eight GPUs."""
    one = _drive(_searcher(limited=False), slots=1, reverse=False, max_pending=1)
    eight = _drive(_searcher(limited=False), slots=8, reverse=True)
    assert one[:2] == eight[:2]  # the random warm-up
    assert one != eight


def test_a_saved_batch_comes_back_with_the_searcher(tmp_path) -> None:
    alg = _searcher(limited=True)
    for k in range(2):  # the random warm-up: BayesOpt waits for results after it
        assert alg.suggest(f"t{k}") is not None
    alg.on_trial_complete("t1", result={"objective": -1.0})
    path = tmp_path / "searcher-state.pkl"
    alg.save(str(path))
    again = _searcher(limited=True)
    again.restore(str(path))
    assert again.live_trials == {"t0", "t1"} and set(again.cached_results) == {"t1"}
    assert again.order == {"t0": 0, "t1": 1}
    assert pickle.loads(path.read_bytes())["ordered_batches"]["max_concurrent"] == 2
