"""`make reproduce-table1 PROFILE=paper` with no prepared data stops before anything trains,
naming the one command that prepares the data (it used to skip every task, render a table of
skipped rows and exit 0)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlrsnet.harness.cli import main

REPO = Path(__file__).resolve().parents[3]


def _make_commands(target: str) -> list[str]:
    text = (REPO / "Makefile").read_text()
    block = text.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
    return [line.strip().replace("$(BIN)/", "") for line in block.splitlines()[1:] if line.startswith("\t")]


@pytest.fixture
def empty_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    empty = tmp_path / "data"
    empty.mkdir()
    monkeypatch.setenv("MLRSNET_DATA_DIR", str(empty))
    monkeypatch.chdir(tmp_path)  # no ./data either
    return empty


def test_reproduce_table1_at_paper_without_data_stops_with_the_command_that_prepares_it(
        empty_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _make_commands("reproduce-table1")[0]
    assert first == "mlrsnet-bench tune benchmarks/table1.toml --profile $(PROFILE) $(EXEC_OPTS)"
    argv = [a for a in first.split()[1:] if a != "$(EXEC_OPTS)"]  # empty by default
    argv[argv.index("$(PROFILE)")] = "paper"
    argv[1] = str(REPO / argv[1])
    code = main([*argv, "--results", str(tmp_path / "results"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err  # make stops here: no table of skipped rows
    command = re.search(r"`(mlrsnet-bench data prepare [^`]*)`", err).group(1)
    assert command.split()[3:8] == ["cifar10", "cifar100", "ptb", "svhn", "tinyimagenet"]
    assert "Nothing was trained" in err and "Traceback" not in err
    assert not (tmp_path / "results" / "table1").exists()  # no skipped rows written


def test_the_small_profiles_still_skip_a_missing_dataset_and_list_it(empty_data: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from mlrsnet.paper.tasks import get_task
    from mlrsnet.paper.tune.skips import require_data

    require_data([get_task("resnet18-svhn")], "mini", None, "tune")  # no error: skipped and listed


def test_reproduce_at_paper_without_data_stops_up_front(empty_data: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["reproduce", "--profile", "paper", "--plan", str(REPO / "benchmarks" / "reproduce_all.toml"),
                 "--results", str(tmp_path / "results"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "mlrsnet-bench data prepare cifar10" in err and "wikitext-2" in err


def test_data_prepare_takes_several_datasets(empty_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "prepare", "ptb", "imagenet", "--source", str(empty_data)]) == 2
    assert "no 'ptb.train.txt'" in capsys.readouterr().err  # the first is tried, then it stops
