"""Searches are seeded by default and the seed is recorded (issue 26 item 12): run again,
one spec samples the same configurations.  Before, random search and BOHB were unseeded
(three runs of one spec sampled three configuration sets)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mlrsnet.harness.store import Store
from mlrsnet.paper.tune import tune_command
from mlrsnet.paper.tune.searchers import DEFAULT_SEED, build_searcher, get_searcher
from mlrsnet.paper.tune.spaces import ray_space

pytestmark = pytest.mark.usefixtures("ray_local")

SPACE = {"lr": ("loguniform", 0.01, 0.5), "decay": ("loguniform", 0.01, 0.5)}
EPOCHS = 3
SAMPLES = 5


def _score(config: dict) -> None:
    """A trainable that costs nothing: a few 'epochs' of a score peaked at lr 0.1."""
    from ray import tune

    for epoch in range(1, EPOCHS + 1):
        tune.report({"epoch": epoch, "objective": -abs(math.log(config["lr"] / 0.1)) + 0.01 * epoch})


def _sampled(searcher: str, tmp_path, name: str, options: dict | None = None) -> list[tuple[float, float]]:
    """The configurations one search of ``searcher`` tries, one trial at a time."""
    from ray import tune

    alg, scheduler = build_searcher(searcher, max_epochs=EPOCHS, options=options or {})
    tuner = tune.Tuner(
        _score, param_space=ray_space(SPACE, searcher, budget=SAMPLES, options=options or {}),
        tune_config=tune.TuneConfig(metric="objective", mode="max", search_alg=alg, scheduler=scheduler,
                                    num_samples=SAMPLES, max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0))
    return sorted((r.config["lr"], r.config["decay"]) for r in tuner.fit())


@pytest.mark.parametrize("searcher", ["random", "bohb"])
def test_a_search_run_three_times_samples_the_same_configurations(searcher: str, tmp_path) -> None:
    np.random.seed(None)  # whatever else the process draws must not matter
    runs = [_sampled(searcher, tmp_path, f"{searcher}{k}") for k in range(3)]
    assert runs[0] == runs[1] == runs[2]
    assert len(set(runs[0])) == SAMPLES
    seed_option = get_searcher(searcher).seed_option
    other = _sampled(searcher, tmp_path, f"{searcher}-other", {seed_option: 7})
    assert other != runs[0]  # the seed is what fixes them


def _bohb_sequence(n: int = 24) -> list[tuple[float, float]]:
    """The configurations BOHB suggests for ``n`` results fed to it one by one (the searcher's
    own API, as Tune calls it; enough results for its density model to be fitted, after
    which hpbandster draws from numpy's generator); other numpy draws come in between."""
    alg, _ = build_searcher("bohb", max_epochs=EPOCHS, options={})
    alg.set_search_properties("objective", "max", ray_space(SPACE, "bohb", budget=n, options={}))
    out = []
    for k in range(n):
        np.random.seed(None)
        np.random.rand(k + 1)  # whatever else the process draws
        config = alg.suggest(f"t{k}")
        out.append((config["lr"], config["decay"]))
        alg.on_trial_result(f"t{k}", {"objective": -abs(math.log(config["lr"] / 0.1)), "epoch": EPOCHS,
                                      "hyperband_info": {"budget": EPOCHS}})
        alg.on_trial_complete(f"t{k}")
    assert alg.bohber.kde_models  # the model was fitted: its draws were made
    return out


def test_bohbs_model_draws_come_from_its_own_seeded_generator() -> None:
    assert _bohb_sequence() == _bohb_sequence() == _bohb_sequence()


SPEC = """
tasks = ["resnet18-cifar10"]
[tune]
searchers = ["random"]
[tune.profiles.smoke]
samples = 2
"""


@pytest.mark.slow
def test_three_tune_commands_of_one_spec_train_the_same_configurations(data_dir, tmp_path, make_spec,
                                                                       tune_args) -> None:
    """Through the command: three results folders, one spec; the seed in the trials' tags and
    in the search's plan record."""
    spec = make_spec(SPEC)
    sets = []
    for k in range(3):
        results = tmp_path / f"results{k}"
        assert tune_command(tune_args(spec, results, ["--cpus-per-trial", "2"])) == 0
        runs = Store(results).runs("tunetest")
        sets.append(sorted(json.dumps(h, sort_keys=True) for h in runs["hparams"]))
        assert set(runs["tags"].map(lambda t: t["searcher_seed"])) == {DEFAULT_SEED}
        record = json.loads(next((results / "tunetest" / "tune").iterdir()).joinpath("mlrsnet-search.json")
                            .read_text())
        assert record["searcher_seed"] == DEFAULT_SEED
    assert sets[0] == sets[1] == sets[2] and len(sets[0]) == 2
