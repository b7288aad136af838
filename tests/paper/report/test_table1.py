"""Table 1 rendered from Parquet, with the paper's values beside ours.

The store is filled by writing rows through :class:`Store` (not by training): the renderer
is a pure function of the Parquet tables, and hand-written rows let each rule be checked
exactly.  The searches themselves are tested end to end in tests/paper/tune/."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from mlrsnet.errors import UserError
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.store import Store
from mlrsnet.paper.report.table1 import load_paper_table1, render_table1, table1_frame

_ids = itertools.count()


def trial(store, task, search, *, lr, gamma, val, test, status="finished", metric="acc", profile="mini"):
    run_id = f"r{next(_ids):05d}"
    store.write_run_row({
        "run_id": run_id, "experiment": "table1", "task": task, "profile": profile,
        "method": "multistep", "hparams": {"lr": lr, "decay": gamma}, "seed": 0, "status": status,
        "tags": {"search": search, "search_id": f"{task}--{search}@20250101T000000Z",
                 "objective": f"val/{metric}", "searcher_seed": 42 if search == "bayesopt" else None},
    })
    rows = [{"epoch": 1, "split": "val", "metric": metric, "value": val},
            {"epoch": 1, "split": "test", "metric": metric, "value": test}]
    store.write_curves("table1", run_id, rows, {"step": [], "epoch": [], "lr": [], "loss": []})


def skipped(store, task, search, reason):
    cell = Cell(task=task, profile="mini", method="(search)", experiment="table1",
                tags={"search": search, "skipped": True})
    store.write_run_row({"run_id": cell.run_id, "experiment": "table1", "task": task, "profile": "mini",
                         "method": "(search)", "status": "skipped", "error": reason,
                         "tags": dict(cell.tags)})


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "results")
    trial(s, "resnet18-cifar10", "bayesopt", lr=0.07, gamma=0.09, val=0.81, test=0.80)
    trial(s, "resnet18-cifar10", "bayesopt", lr=0.3, gamma=0.02, val=0.70, test=0.69)
    trial(s, "resnet18-cifar10", "bohb", lr=0.04, gamma=0.1, val=0.78, test=0.77)
    trial(s, "resnet18-cifar10", "bohb", lr=0.2, gamma=0.3, val=0.5, test=0.5, status="stopped")
    trial(s, "lstm2-ptb", "bohb", lr=12.0, gamma=0.2, val=160.0, test=150.0, metric="ppl")
    trial(s, "lstm2-ptb", "bohb", lr=19.0, gamma=0.4, val=float("nan"), test=float("nan"),
          metric="ppl", status="diverged")
    for search in ("bayesopt", "bohb"):
        skipped(s, "resnet18-svhn", search, "no data: svhn is not prepared (`mlrsnet-bench data prepare svhn`)")
    return s


def test_each_setting_and_searcher_gets_our_best_beside_the_papers(store):
    frame = table1_frame(store.runs("table1"), store.read("epochs", "table1"), load_paper_table1())
    row = frame[(frame["task"] == "resnet18-cifar10") & (frame["searcher"] == "bayesopt")].iloc[0]
    assert (row["alpha0"], row["gamma"]) == (0.07, 0.09)
    assert row["objective_value"] == pytest.approx(0.81) and row["test_value"] == pytest.approx(0.80)
    assert row["trials"] == 2
    assert row["paper_alpha0"] == pytest.approx(0.0864373149647392)
    bohb = frame[(frame["task"] == "resnet18-cifar10") & (frame["searcher"] == "bohb")].iloc[0]
    assert (bohb["alpha0"], bohb["trials"], bohb["stopped_early"]) == (0.04, 2, 1)
    ptb = frame[(frame["task"] == "lstm2-ptb") & (frame["searcher"] == "bohb")].iloc[0]
    assert ptb["alpha0"] == 12.0 and ptb["diverged"] == 1 and ptb["objective"] == "val/ppl"


def test_every_paper_setting_is_listed_with_skips_and_gaps_explained(store):
    frame = table1_frame(store.runs("table1"), store.read("epochs", "table1"), load_paper_table1())
    assert len(frame) == 18  # nine settings x two searchers
    svhn = frame[frame["task"] == "resnet18-svhn"]
    assert set(svhn["status"]) == {"skipped"} and svhn["note"].str.contains("prepare svhn").all()
    gaps = frame[frame["task"] == "wrn28_10-cifar100"]
    assert set(gaps["status"]) == {"not run"}
    assert list(dict.fromkeys(frame["task"])) == list(dict.fromkeys(load_paper_table1()["task"]))


def test_render_writes_markdown_csv_and_latex(store, tmp_path):
    paths = render_table1(store, tmp_path / "reports", "table1")
    assert [p.name for p in paths] == ["table1.md", "table1.csv", "table1.tex", "table1_summary.txt"]
    md = paths[0].read_text()
    assert "| ResNet-18 on CIFAR10 | BayesOpt | 0.07 | 0.09 | val acc 81.00% | test acc 80.00% | 2 | 0.08644 | 0.08645 |" in md
    assert "| 2-layer LSTM on Penn Treebank | BOHB | 12 | 0.2 | val ppl 160.0 | test ppl 150.0 | 2 (1 diverged) |" in md
    assert "ResNet-18 on SVHN / BayesOpt: skipped — no data: svhn is not prepared" in md
    csv = pd.read_csv(paths[1])
    assert {"alpha0", "gamma", "paper_alpha0", "paper_gamma", "trials", "status"} <= set(csv.columns)
    tex = paths[2].read_text()
    assert r"\begin{tabular}" in tex and r"\toprule" in tex and r"81.00\%" in tex


def test_the_summary_fits_one_screen_with_each_settings_best_configuration(store, tmp_path):
    summary = render_table1(store, tmp_path / "reports", "table1")[3].read_text().splitlines()
    assert len(summary) <= 1 + 1 + 18 and max(map(len, summary)) <= 160  # title, header, 9 x 2 rows
    r18 = next(line for line in summary if line.startswith("ResNet-18 on CIFAR10") and "BayesOpt" in line)
    assert r18.split()[-10:] == ["BayesOpt", "0.07", "0.09", "val", "acc", "81.00%", "test", "acc", "80.00%", "2"]
    assert "2 (1 diverged)" in next(line for line in summary if "Penn" in line and "BOHB" in line)


def test_the_report_command_prints_the_summary_last(store, tmp_path, capsys):
    from mlrsnet.harness.cli import main

    assert main(["report", "table1", "--results", str(store.root), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-18:][0].startswith("ResNet-18 on CIFAR10")


def test_an_experiment_without_searches_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="reproduce-table1"):
        render_table1(Store(tmp_path), tmp_path / "reports", "table1")
