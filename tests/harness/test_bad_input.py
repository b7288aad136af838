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

from mlrsnet.harness.cli import main

HEAD = 'profile = "smoke"\nseeds = [0]\ntasks = ["resnet18-cifar10"]\n'
FIXED = '[[methods]]\nname = "fixed"\n'
MULTISTEP = '[[methods]]\nname = "multistep"\n'
TRAIN = ["train", "--task", "resnet18-cifar10", "--profile", "smoke", "--quiet"]


def one_paragraph(err: str) -> str:
    """The error paragraph; fails if stderr holds a traceback or more than one paragraph."""
    text = err.strip()
    assert "Traceback" not in text, text
    assert text.count("mlrsnet-bench: error:") == 1 and "\n\n" not in text, text
    return text


def nothing_under(results: Path) -> bool:
    return not results.exists() or not any(results.rglob("*"))


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
    from mlrsnet.errors import UserError
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

