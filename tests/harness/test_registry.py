"""Method discovery: baselines/ modules, built-ins and the entry-point group."""

from __future__ import annotations

import sys
from pathlib import Path

import mlrsnet.baselines as baselines
import pytest

from mlrsnet.errors import UserError
from mlrsnet.harness.registry import discover, get_method, scan

SCHEDULES = {"fixed", "multistep", "multistep-val", "exponential", "cosine", "sgdr"}

DROPPED = '''
from mlrsnet.harness.contract import Method


class Halving(Method):
    name = "halving-{tag}"
    defaults = {{"lr": 0.2}}

    def lr(self, step):
        return self.hparams["lr"] * 0.5 ** step.epoch
'''


def test_the_hand_designed_schedules_are_registered() -> None:
    assert SCHEDULES <= set(discover())


def test_a_module_dropped_into_baselines_appears_with_no_other_edit(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "halving_drop.py").write_text(DROPPED.format(tag="drop"))
    monkeypatch.setattr(baselines, "__path__", [*baselines.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "mlrsnet.baselines.halving_drop", raising=False)
    assert "halving-drop" in discover()
    assert get_method("halving-drop")().hparams == {"lr": 0.2}


def test_third_party_methods_register_through_the_entry_point_group(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "thirdparty_lr.py").write_text(DROPPED.format(tag="ep"))
    dist = tmp_path / "thirdparty_lr-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-lr\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mlrsnet.methods]\nhalving = thirdparty_lr:Halving\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "halving-ep" in discover()


def test_an_unknown_method_lists_the_available_ones() -> None:
    with pytest.raises(UserError, match="available: .*cosine"):
        get_method("cosin")


def test_unknown_hyper_parameters_are_rejected_by_name() -> None:
    with pytest.raises(UserError, match="no hyper-parameter 'lrr'"):
        get_method("fixed")(lrr=0.1)


# -- isolation: a broken plug-in takes nothing else down -------------------------------------
BROKEN = '''
from mlrsnet.harness.schedules import Schedule
from a_module_that_does_not_exist import something


class Broken(Schedule):
    name = "broken-schedule"
'''


def _cli(*argv: str) -> tuple[int, str]:
    import contextlib
    import io

    from mlrsnet.harness.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue()


@pytest.fixture
def broken_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "broken_one.py").write_text(BROKEN)
    monkeypatch.setattr(baselines, "__path__", [*baselines.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "mlrsnet.baselines.broken_one", raising=False)
    return tmp_path


def test_a_broken_module_leaves_every_other_method_available(broken_module: Path) -> None:
    found = scan()
    assert SCHEDULES <= set(found.methods) and "mlrsnet" in found.methods
    (bad,) = found.broken
    assert bad.origin == "baselines/broken_one.py" and bad.names == ("broken-schedule",)
    assert "ModuleNotFoundError" in bad.error and "at line 3" in bad.error


def test_training_another_method_works_beside_a_broken_module(broken_module: Path, tmp_path: Path,
                                                             data_dir) -> None:
    code, err = _cli("train", "--task", "resnet18-cifar10", "--method", "fixed", "--profile", "smoke",
                     "--override", "epochs=1", "--results", str(tmp_path / "r"), "--quiet")
    assert code == 0, err
    assert "Traceback" not in err


def test_asking_for_the_broken_modules_method_exits_2_with_one_paragraph(broken_module: Path,
                                                                         tmp_path: Path) -> None:
    code, err = _cli("train", "--task", "resnet18-cifar10", "--method", "broken-schedule", "--profile", "smoke",
                     "--results", str(tmp_path / "r"))
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "baselines/broken_one.py failed to import" in err and "a_module_that_does_not_exist" in err


# -- no global `baselines` package ----------------------------------------------------------
def test_the_built_in_methods_are_not_a_global_baselines_package() -> None:
    for cls in discover().values():
        assert cls.__module__.startswith("mlrsnet.baselines."), cls


def test_a_users_own_baselines_package_first_on_the_path_hides_nothing(tmp_path: Path) -> None:
    import subprocess

    own = tmp_path / "baselines"
    own.mkdir()
    (own / "__init__.py").write_text("MINE = True\n")
    (own / "cosine.py").write_text("raise ImportError('this is the user\\'s own package')\n")
    code = ("import baselines; assert baselines.MINE\n"
            "from mlrsnet.harness.registry import scan\n"
            "found = scan(); print(sorted(found.methods)); assert not found.broken, found.broken\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    listed = eval(done.stdout.strip().splitlines()[-1])  # the printed list of names
    assert SCHEDULES | {"mlrsnet", "mlrsnet-transfer", "hd", "rtho"} <= set(listed)
