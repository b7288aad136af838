"""``make demo``'s spec, run as the Makefile runs it (at the smoke profile here): transferred
MLR-SNet beside hand-designed schedules, one figure with the accuracy panel and the LR panel
side by side, and a caption that says what to read and that the run is scaled down and untuned."""

from __future__ import annotations

from pathlib import Path

from mlrsnet.harness.cli import main
from mlrsnet.harness.store import Store
from mlrsnet.paper.report import figures as F
from mlrsnet.paper.report import render

REPO = Path(__file__).resolve().parents[3]


def test_the_demo_compares_transferred_mlrsnet_with_hand_designed_schedules(tmp_path, data_dir, official_ckpts,
                                                                             monkeypatch):
    monkeypatch.setenv("MLRSNET_CHECKPOINTS", str(official_ckpts))  # as `make demo` exports it
    results, out = tmp_path / "results", tmp_path / "reports"
    assert main(["run", str(REPO / "benchmarks" / "demo.toml"), "--profile", "smoke", "--results", str(results),
                 "--quiet"]) == 0
    paths = render("demo", results=results, out=out, experiment="demo")
    assert [p.name for p in paths][:1] == ["demo-resnet18-cifar10.png"]
    data = F.load(Store(results), "demo")
    labels = F.labels_of(data)
    assert [lab.split(" (")[0] for lab in labels] == ["MLR-SNet", "MLR-SNet", "MultiStep", "Cosine", "Fixed"]
    assert {r["mlrsnet_checkpoints"] for r in data.runs["method_info"] if "mlrsnet_checkpoints" in r} == {
        "official", "ours-mini"}
    fig = F.build_curves(data, lr_panel=True)
    acc, lr = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()][:2]
    assert acc.get_ylabel() == "test accuracy (%)" and lr.get_yscale() == "log"
    assert abs(acc.get_position().y0 - lr.get_position().y0) < 1e-6 and acc.get_position().x1 < lr.get_position().x0
    caption = (out / "demo-resnet18-cifar10.caption.txt").read_text()
    assert caption.startswith("What to read: the right panel is the LR")
    for words in ("scaled-down", "untuned", "single-seed", "chance"):
        assert words in caption, words
