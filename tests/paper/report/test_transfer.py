"""Fig. 5 (transfer without re-tuning) rendered from Parquet.

Rows are written through :class:`Store` (not trained): the renderer is a pure function of
the tables.  The transfer runs themselves go through the ordinary executor."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from mlrsnet.harness.store import Store
from mlrsnet.paper.report.transfer import render_transfer, source_frame, targets_frame

_ids = itertools.count()


def run(store, task, *, tags, hparams, status="finished", method="multistep", curve=(0.3, 0.6)):
    run_id = f"t{next(_ids):05d}"
    store.write_run_row({"run_id": run_id, "experiment": "transfer", "task": task, "profile": "mini",
                         "method": method, "hparams": hparams, "seed": 0, "status": status, "tags": tags})
    rows = [{"epoch": e + 1, "split": split, "metric": "acc", "value": v}
            for split in ("val", "test") for e, v in enumerate(curve)]
    store.write_curves("transfer", run_id, rows, {"step": [], "epoch": [], "lr": [], "loss": []})
    return run_id


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "results")
    for search, lr in (("bayesopt", 0.09), ("random", 0.02)):
        src = run(s, "resnet18-cifar10", hparams={"lr": lr, "decay": 0.1},
                  tags={"search": search, "search_id": f"{search}@20250101T000000Z", "objective": "val/acc"})
        for target, curve in (("shufflenetv2-cifar10", (0.4, 0.7)), ("resnet18-tinyimagenet", (0.1, 0.2))):
            run(s, target, hparams={"lr": lr, "decay": 0.1}, curve=curve,
                tags={"transfer_from": "resnet18-cifar10", "search": search, "source_run": src,
                      "label": f"MultiStep tuned by {search}"})
    run(s, "shufflenetv2-cifar10", hparams={}, method="mlrsnet-transfer", curve=(0.5, 0.75),
        tags={"transfer_compare": True, "label": "MLR-SNet (transferred)"})
    s.write_run_row({"run_id": "skip", "experiment": "transfer", "task": "resnet18-svhn", "profile": "mini",
                     "method": "(search)", "status": "skipped", "error": "no data: svhn is not prepared",
                     "tags": {"search": "transfer", "skipped": True}})
    return s


def test_source_table_has_each_searchers_best_and_the_papers(store):
    src = source_frame(store.runs("transfer"), store.read("epochs", "transfer")).set_index("searcher")
    assert src.loc["bayesopt", "alpha0"] == 0.09 and src.loc["random", "alpha0"] == 0.02
    assert (src.loc["random", "paper_alpha0"], src.loc["grid", "paper_gamma"]) == (0.0154, 0.1)
    assert pd.isna(src.loc["grid", "alpha0"])  # not searched here


def test_targets_hold_each_transferred_runs_final_test_metric(store):
    tg = targets_frame(store.runs("transfer"), store.read("epochs", "transfer"))
    shuffle = tg[tg["task"] == "shufflenetv2-cifar10"].set_index("label")
    assert shuffle.loc["MultiStep tuned by bayesopt", "final_test"] == pytest.approx(0.7)
    assert shuffle.loc["MultiStep tuned by bayesopt", "alpha0"] == 0.09
    assert shuffle.loc["MLR-SNet (transferred)", "final_test"] == pytest.approx(0.75)
    assert len(tg) == 5


def test_render_writes_the_tables_and_the_figure(store, tmp_path):
    paths = render_transfer(store, tmp_path / "reports", "transfer")
    assert [p.name for p in paths] == ["transfer.md", "transfer.csv", "transfer.png", "transfer.pdf",
                                      "transfer.caption.txt"]
    md = paths[0].read_text()
    assert "| ShuffleNetV2 on CIFAR-10 | 70.00% | 70.00% | 75.00% |" in md
    assert "ResNet-18 on SVHN: skipped — no data: svhn is not prepared" in md
    assert paths[2].stat().st_size > 10_000
