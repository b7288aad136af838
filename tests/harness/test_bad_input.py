"""Bad input (issue 13): refused before training through the real CLI ``main()``, exit code 2,
one paragraph on stderr (no traceback), and nothing written under ``--results``.

Before, these trained and were stored as ``finished`` (so skipped forever: ``epochs = 0``,
``lr = -1``, ``decay = 0``, milestones outside (0, 1) or not increasing) or failed inside the
run with a raw exception and exit code 1 (``batch_size = 0``, ``seeds = [true]``,
``--hparam lr=abc``, ``--override epochs=five``, ``milestones = 0.5``, a spec folder, a
non-UTF-8 spec, an unwritable ``--results``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.cli_errors import HEAD, TRAIN, nothing_under, one_paragraph

from mlrsnet.errors import UserError
from mlrsnet.harness.cli import main
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.store import Store

FIXED = '[[methods]]\nname = "fixed"\n'
MULTISTEP = '[[methods]]\nname = "multistep"\n'




SPEC_PROBES = {
    # spec text after HEAD; a fragment the message must hold
    "epochs-0": (FIXED + "[overrides]\nepochs = 0\n", "'overrides.epochs'", "integer >= 1"),
    "epochs-negative": (FIXED + "[overrides]\nepochs = -3\n", "'overrides.epochs'", "integer >= 1"),
    "batch-size-0": (FIXED + "[overrides]\nbatch_size = 0\n", "'overrides.batch_size'", ">= 1"),
    "holdout-negative": (FIXED + "[overrides]\nholdout = -1\n", "'overrides.holdout'", ">= 0"),
    "epochs-string": (FIXED + '[overrides]\nepochs = "five"\n', "'overrides.epochs'", "an integer"),
    "lr-negative": (FIXED + "hparams = { lr = -1 }\n", "'methods[0].hparams.lr'", "> 0"),
    "decay-0": (MULTISTEP + "hparams = { decay = 0 }\n", "hparams.decay", "(0, 1]"),
    "milestone-outside": (MULTISTEP + "hparams = { milestones = [0.5, 1.5] }\n", "hparams.milestones", "(0, 1)"),
    "milestone-zero": (MULTISTEP + "hparams = { milestones = [0.0, 0.5] }\n", "hparams.milestones", "(0, 1)"),
    "milestones-decreasing": (MULTISTEP + "hparams = { milestones = [0.6, 0.3] }\n", "hparams.milestones",
                              "increasing"),
    "milestones-scalar": (MULTISTEP + "hparams = { milestones = 0.5 }\n", "hparams.milestones", "list"),
    "seeds-bool": (FIXED, "'seeds'", "integers"),
    "renamed-gamma": (MULTISTEP + "hparams = { gamma = 0.1 }\n", "hparams.gamma", "'gamma' is now 'decay'"),
}


@pytest.mark.parametrize("probe", sorted(SPEC_PROBES))
def test_a_bad_spec_is_refused_before_training(probe: str, tmp_path: Path, capsys) -> None:
    body, key, fragment = SPEC_PROBES[probe]
    head = HEAD.replace("seeds = [0]", "seeds = [true]") if probe == "seeds-bool" else HEAD
    spec = tmp_path / f"{probe}.toml"
    spec.write_text(head + body)
    results = tmp_path / "results"
    assert main(["run", str(spec), "--results", str(results), "--quiet"]) == 2
    text = one_paragraph(capsys.readouterr().err)
    assert key in text and fragment in text and str(spec) in text
    assert nothing_under(results)


def test_tune_refuses_the_same_values_as_a_run(tmp_path: Path) -> None:
    """One validation for specs, the command line and searches: Method.check_hparams."""
    from mlrsnet.paper.tune.plan import parse_tune_block

    with pytest.raises(UserError, match=r"tune\.space\.decay.*\(0, 1\]"):
        parse_tune_block({"space": {"decay": ["uniform", 0.0, 0.5]}}, "t.toml")
    with pytest.raises(UserError, match=r"tune\.grid\.nope.*no hyper-parameter"):
        parse_tune_block({"grid": {"nope": [1.0]}}, "t.toml")
    plan = parse_tune_block({"space": {"decay": ["loguniform", 0.01, 0.5]}, "grid": {"lr": [0.01, 0.1]}}, "t.toml")
    assert plan.space["decay"] == ("loguniform", 0.01, 0.5)


CLI_PROBES = {
    "hparam-lr-abc": (["--method", "fixed", "--hparam", "lr=abc"], "--hparam", "'abc'"),
    "hparam-lr-zero": (["--method", "fixed", "--hparam", "lr=0"], "--hparam", "> 0"),
    "hparam-decay-0": (["--method", "multistep", "--hparam", "decay=0"], "'decay'", "(0, 1]"),
    "hparam-milestones-scalar": (["--method", "multistep", "--hparam", "milestones=0.5"], "'milestones'", "list"),
    "hparam-patience-float": (["--method", "multistep-val", "--hparam", "patience=1.5"], "'patience'",
                              "integer"),
    "hparam-inferred-bool": (["--method", "hd", "--hparam", "clamp_nonneg=3"], "'clamp_nonneg'",
                             "true or false"),
    "hparam-gamma-loss": (["--method", "mlrsnet-transfer", "--hparam", 'gamma_loss="nope"'], "'gamma_loss'",
                          "'train-pass'"),
    "override-epochs-five": (["--method", "fixed", "--override", "epochs=five"], "--override", "'five'"),
    "override-epochs-0": (["--method", "fixed", "--override", "epochs=0"], "--override", ">= 1"),
    "override-bptt-0": (["--method", "fixed", "--override", "bptt=0"], "'bptt'", ">= 1"),
    "override-unknown": (["--method", "fixed", "--override", "epoch=3"], "not a profile field", "epochs"),
    "seed-negative": (["--method", "fixed", "--seed", "-1"], "--seed", ">= 0"),
}


@pytest.mark.parametrize("probe", sorted(CLI_PROBES))
def test_a_bad_command_line_is_refused_before_training(probe: str, tmp_path: Path, capsys) -> None:
    extra, key, fragment = CLI_PROBES[probe]
    results = tmp_path / "results"
    assert main([*TRAIN, *extra, "--results", str(results)]) == 2
    text = one_paragraph(capsys.readouterr().err)
    assert key in text and fragment in text
    assert nothing_under(results)


def _garbage_manifest(tmp_path: Path) -> list[str]:
    folder = tmp_path / "ckset"
    folder.mkdir()
    (folder / "manifest.json").write_text("not json{")
    return ["--method", "mlrsnet-transfer", "--hparam", f'checkpoints="{folder}"']


def _manifest_not_object(tmp_path: Path) -> list[str]:
    folder = tmp_path / "ckset"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"files": {"one": 3}}')
    return ["--method", "mlrsnet-transfer", "--hparam", f'checkpoints="{folder}"']


FILE_PROBES = {
    "garbage-manifest": (_garbage_manifest, "manifest.json is not valid JSON"),
    "manifest-bad-files": (_manifest_not_object, "must map epoch numbers"),
}


@pytest.mark.parametrize("probe", sorted(FILE_PROBES))
def test_a_damaged_checkpoint_set_is_refused_before_training(probe: str, tmp_path: Path, capsys) -> None:
    make, fragment = FILE_PROBES[probe]
    results = tmp_path / "results"
    assert main([*TRAIN, *make(tmp_path), "--results", str(results)]) == 2
    text = one_paragraph(capsys.readouterr().err)
    assert fragment in text and "JSONDecodeError" not in text
    assert nothing_under(results)


def test_a_spec_that_is_a_folder(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "spec.toml"
    spec.mkdir()
    assert main(["run", str(spec), "--results", str(tmp_path / "results")]) == 2
    assert "is a folder" in one_paragraph(capsys.readouterr().err)
    assert nothing_under(tmp_path / "results")


def test_a_spec_that_is_not_utf8(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_bytes(b'name = "x"\n# caf\xe9\n')
    assert main(["run", str(spec), "--results", str(tmp_path / "results")]) == 2
    assert "not UTF-8" in one_paragraph(capsys.readouterr().err)
    assert nothing_under(tmp_path / "results")


@pytest.mark.parametrize("command", ["run", "train"])
def test_an_unusable_results_folder_is_refused_once_up_front(command: str, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    results = blocker / "results"
    spec = tmp_path / "s.toml"
    spec.write_text(HEAD + FIXED + "[[methods]]\nname = \"cosine\"\n")
    argv = (["run", str(spec)] if command == "run" else [*TRAIN, "--method", "fixed"])
    assert main([*argv, "--results", str(results)]) == 2
    text = one_paragraph(capsys.readouterr().err)  # once, not once per run
    assert "--results" in text and "is not a folder" in text
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_results_folder_is_refused(tmp_path: Path, capsys) -> None:
    results = tmp_path / "ro"
    results.mkdir()
    results.chmod(0o555)
    try:
        assert main([*TRAIN, "--method", "fixed", "--results", str(results)]) == 2
        assert "not writable" in one_paragraph(capsys.readouterr().err)
    finally:
        results.chmod(0o755)
    assert nothing_under(results)


# -- damaged files met once the run starts: exit 2, one paragraph naming the file and the fix,
# -- and the run is not stored as finished (it trains again once the file is fixed)
def _not_finished(results: Path) -> bool:
    runs = Store(results).runs()
    return runs.empty or not (runs["status"] == "finished").any()


def test_a_garbage_npz_is_not_called_pickled_data(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar10-mini.npz").write_bytes(b"garbage")  # 7 bytes
    results = tmp_path / "results"
    code = main([*TRAIN, "--method", "fixed", "--data-dir", str(data), "--results", str(results)])
    text = one_paragraph(capsys.readouterr().err)
    assert code == 2 and "pickled" not in text and "allow_pickle" not in text
    assert "cifar10-mini.npz is not a .npz archive" in text and "data prepare cifar10" in text
    assert _not_finished(results)


def test_an_empty_corpus_file_names_it(tmp_path: Path, capsys, data_dir: Path) -> None:
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data_dir / "ptb", copy / "ptb")
    (copy / "ptb" / "train.txt").write_text("")
    results = tmp_path / "results"
    code = main(["train", "--task", "lstm2-ptb", "--profile", "smoke", "--quiet", "--method", "fixed",
                 "--data-dir", str(copy), "--results", str(results)])
    text = one_paragraph(capsys.readouterr().err)
    assert code == 2 and "ptb/train.txt holds no words" in text and "data prepare ptb" in text
    assert _not_finished(results)


def test_a_corrupt_epoch_checkpoint_names_the_file_and_the_fix(tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    cell = Cell(task="resnet18-cifar10", profile="smoke", method="fixed", experiment="adhoc")
    checkpoint = results / "adhoc" / "checkpoints" / f"{cell.run_id}.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"garbage")
    code = main([*TRAIN, "--method", "fixed", "--results", str(results)])
    text = one_paragraph(capsys.readouterr().err)
    assert code == 2 and str(checkpoint) in text and "--force" in text and "delete it" in text
    assert "weights_only" not in text
    assert _not_finished(results)


def test_a_garbage_mlrsnet_checkpoint_does_not_repeat_torchs_advice(tmp_path: Path) -> None:
    from mlrsnet.snet.net import load_mlrsnet

    path = tmp_path / "mlr_snet_1.pth"
    path.write_bytes(b"garbage")
    with pytest.raises(UserError) as info:
        load_mlrsnet(path)
    assert str(path) in str(info.value) and "weights_only" not in str(info.value)


def test_data_check_fails_on_a_checksum_mismatch_and_lists_a_missing_dataset_once(
        tmp_path: Path, capsys, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setenv("MLRSNET_DATA_DIR", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "data"
    shutil.copytree(data_dir / "ptb", copy / "ptb")
    with (copy / "ptb" / "valid.txt").open("a") as fh:
        fh.write("extra\n")
    assert main(["data", "check", "--data-dir", str(copy)]) != 0
    captured = capsys.readouterr()
    assert "CHECKSUM MISMATCH" in captured.out and "valid.txt" in one_paragraph(captured.err)
    missing = [line.split()[0] for line in captured.out.splitlines() if " missing" in line]
    assert missing.count("wikitext-2") == 1 and len(missing) == len(set(missing))


@pytest.mark.parametrize("report", ["curves", "transfer", "table1"])
def test_a_report_of_an_experiment_without_a_finished_run_says_so(report: str, tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    Store(results).write_run_row({"run_id": "r1", "experiment": "exp", "task": "resnet18-cifar10",
                                  "profile": "smoke", "method": "fixed", "hparams": {}, "seed": 0,
                                  "status": "failed", "error": "ValueError: boom", "tags": {}})
    code = main(["report", report, "--experiment", "exp", "--results", str(results),
                 "--out", str(tmp_path / "out")])
    text = one_paragraph(capsys.readouterr().err)
    assert code == 2 and "no finished run" in text and "1 failed" in text
    assert not (tmp_path / "out").exists()


def test_every_method_accepts_its_own_defaults_and_search_space() -> None:
    """The declarations never refuse what the methods themselves ship."""
    from mlrsnet.harness.registry import discover

    for cls in discover().values():
        cls.check_hparams(cls.defaults)
        for kind in ("image", "text"):
            for name, dim in cls.space(kind).items():
                for value in (dim[1] if dim[0] in ("choice", "grid") else dim[1:]):
                    cls.check_hparams({name: value})


def test_undeclared_names_are_checked_from_their_defaults() -> None:
    from mlrsnet.harness.contract import HParam, Method, inferred_hparam

    class Probe(Method):
        name = "probe"
        defaults = {"rate": 0.5, "steps": 3, "flag": True, "mode": "a", "free": None}
        hparam_specs = {"mode": HParam(choices=("a", "b"))}

    Probe.check_hparams({"rate": 1, "steps": 4, "flag": False, "mode": "b", "free": [1, "x"]})
    for bad in ({"rate": "fast"}, {"rate": float("nan")}, {"steps": 2.5}, {"steps": True},
                {"flag": 1}, {"mode": "c"}):
        with pytest.raises(UserError, match=repr(next(iter(bad)))):
            Probe(**bad)
    assert inferred_hparam(None).problem(object()) is None
