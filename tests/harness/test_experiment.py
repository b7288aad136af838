"""Experiment specs: validation messages name the file, the key and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlrsnet.harness.experiment import Cell, SpecError, load_spec, parse_spec, resolved_profile

REPO = Path(__file__).resolve().parents[2]


def _spec(**over) -> dict:
    base = {"name": "x", "profile": "smoke", "seeds": [0, 1], "tasks": ["resnet18-cifar10"],
            "methods": [{"name": "fixed", "hparams": {"lr": 0.05}}, {"name": "cosine"}]}
    base.update(over)
    return base


def test_a_spec_expands_into_tasks_times_methods_times_seeds() -> None:
    cells = parse_spec(_spec()).cells()
    assert len(cells) == 4
    assert {c.method for c in cells} == {"fixed", "cosine"}
    assert len({c.run_id for c in cells}) == 4


def test_run_id_is_stable_and_depends_on_every_part_of_the_cell() -> None:
    a = Cell("resnet18-cifar10", "smoke", "fixed", {"lr": 0.1}, 0)
    assert a.run_id == Cell("resnet18-cifar10", "smoke", "fixed", {"lr": 0.1}, 0).run_id
    variants = [a.with_(seed=1), a.with_(hparams={"lr": 0.2}), a.with_(profile="mini"),
                a.with_(overrides={"holdout": 2000}), a.with_(tags={"search": "bohb"})]
    assert len({v.run_id for v in variants} | {a.run_id}) == 6


@pytest.mark.parametrize(
    ("change", "key", "allowed"),
    [
        ({"profile": "huge"}, "profile", "smoke, mini, cpu, paper"),
        ({"tasks": ["resnet18-cifar11"]}, "tasks", "resnet18-cifar10"),
        ({"methods": [{"name": "fixd"}]}, "methods[0].name", "fixed"),
        ({"methods": [{"name": "fixed", "hparams": {"lrr": 1}}]}, "methods[0].hparams.lrr", "lr"),
        ({"seeds": "0"}, "seeds", "list of integers"),
        ({"overrides": {"epoch": 3}}, "overrides.epoch", "epochs"),
        ({"metods": []}, "metods", "methods"),
    ],
)
def test_invalid_specs_name_file_key_and_allowed_values(change: dict, key: str, allowed: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(**change), "benchmarks/x.toml")
    msg = str(err.value)
    assert "benchmarks/x.toml" in msg and repr(key) in msg and allowed in msg


def test_broken_toml_is_reported_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)


def test_every_shipped_spec_validates() -> None:
    # reproduce_all.toml is a reproduction plan, not a spec (tests/paper/test_reproduce.py)
    specs = sorted(p for p in (REPO / "benchmarks").glob("*.toml") if p.name != "reproduce_all.toml")
    assert specs
    for path in specs:
        load_spec(path)


def test_an_override_sweep_gives_one_set_of_cells_per_entry() -> None:
    spec = parse_spec(_spec(seeds=[0], overrides=[{"holdout": 100}, {"holdout": 200}]))
    cells = spec.cells()
    assert len(cells) == 4
    assert sorted({c.overrides["holdout"] for c in cells}) == [100, 200]
    assert len({c.run_id for c in cells}) == 4


def test_a_profile_of_overrides_by_profile_takes_its_own_sweep_from_the_same_spec() -> None:
    data = _spec(seeds=[0], overrides=[{"holdout": 1000}, {"holdout": 2000}])
    data["overrides_by_profile"] = {"mini": [{"holdout": 100}, {"holdout": 200}, {"holdout": 400}]}
    assert [dict(o) for o in parse_spec(data, profile="mini").override_sweep] == [
        {"holdout": 100}, {"holdout": 200}, {"holdout": 400}]
    assert [dict(o) for o in parse_spec(data, profile="paper").override_sweep] == [{"holdout": 1000}, {"holdout": 2000}]
    with pytest.raises(SpecError, match="overrides_by_profile"):
        parse_spec({**data, "overrides_by_profile": {"huge": {}}})
    with pytest.raises(SpecError, match=r"overrides_by_profile\.mini\.hold"):
        parse_spec({**data, "overrides_by_profile": {"mini": {"hold": 1}}}, profile="mini")


@pytest.mark.parametrize("method", ["fixed", "multistep", "cosine", "sgdr", "hd", "l4-mom", "mlrsnet-transfer"])
def test_a_method_that_reads_no_held_out_data_trains_on_the_whole_training_split(method):
    # the official scripts train their hand-designed schedules on all 50,000 CIFAR images
    cell = Cell(task="resnet18-cifar10", profile="smoke", method=method)
    assert resolved_profile(cell).holdout == 0


@pytest.mark.parametrize("method", ["mlrsnet", "meta-sgd", "rtho", "marthe", "multistep-val"])
def test_a_method_that_reads_held_out_data_keeps_the_profiles_held_out_split(method):
    cell = Cell(task="resnet18-cifar10", profile="smoke", method=method)
    assert resolved_profile(cell).holdout == 64  # the smoke profile's


def test_an_explicit_holdout_override_keeps_the_split_for_any_method():
    # how a search whose objective is the held-out accuracy keeps its validation metric
    cell = Cell(task="resnet18-cifar10", profile="smoke", method="multistep", overrides={"holdout": 32})
    assert resolved_profile(cell).holdout == 32
