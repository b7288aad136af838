"""The progress line: trials done / total, best so far, ETA from epochs still to train."""

from __future__ import annotations

from types import SimpleNamespace

from mlrsnet.paper.tune.objective import objective_for
from mlrsnet.paper.tune.progress import SearchProgress, format_duration, remaining_epochs

SPACE = {"lr": ("loguniform", 0.01, 0.5), "decay": ("loguniform", 0.01, 0.5)}


def fake(status, epoch=None, objective=None, lr=0.1, diverged=False):
    result = {} if epoch is None else {"epoch": epoch, "objective": objective, "diverged": diverged}
    return SimpleNamespace(status=status, last_result=result, config={"lr": lr, "decay": 0.1},
                           trial_id="t", path=None)


def test_remaining_epochs_count_unfinished_and_not_yet_sampled_trials():
    trials = [fake("TERMINATED", 2, 0.5), fake("TERMINATED", 6, 0.6), fake("RUNNING", 4, 0.4)]
    assert remaining_epochs(trials, total_trials=5, max_epochs=6) == 2 + 2 * 6


def test_line_shows_done_total_best_full_budget_trial_and_eta():
    progress = SearchProgress("1/2 resnet18 bohb", 4, 6, objective_for("image", "val"), SPACE)
    progress._epochs = 8
    progress._start -= 80  # 10 s per epoch so far
    trials = [fake("TERMINATED", 2, 0.9, lr=0.3),  # stopped early: not the best
              fake("TERMINATED", 6, 0.61, lr=0.08), fake("RUNNING", 3, 0.5)]
    line = progress.line(trials)
    assert line.startswith("[1/2 resnet18 bohb] trials 2/4 done, 1 running")
    assert "best val acc 61.00% (lr=0.08, decay=0.1)" in line
    assert "ETA 1m30s" in line  # (3 + 6) epochs left at 10 s each


def test_durations_read_naturally():
    assert format_duration(42) == "42s" and format_duration(125) == "2m05s"
    assert format_duration(3725) == "1h02m" and format_duration(None) == "?"


def test_a_trial_being_completed_counts_as_done():
    progress = SearchProgress("s", 2, 2, objective_for("image", "val"), SPACE)
    last = fake("RUNNING", 2, 0.5)
    line = progress.line([fake("TERMINATED", 2, 0.4), last], ending=last)
    assert "trials 2/2 done, 0 running" in line and "ETA 0s" in line
