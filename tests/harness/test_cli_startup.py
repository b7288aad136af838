"""``mlrsnet-bench`` starts fast and tells a scheduler-only install what to add.

* Building the parser, and ``mlrsnet-bench --help`` itself, import neither torch nor pandas
  nor Ray Tune (nor pyarrow, matplotlib, torchvision): checked on ``sys.modules`` in a fresh
  interpreter, not by a clock.  The profile choices are still checked and shown.
* Without the ``bench`` extra (``pip install mlrsnet``: torch and numpy), simulated by a
  ``sitecustomize`` that makes the extra's modules unimportable for the real console script,
  ``mlrsnet-bench --help`` prints one paragraph naming ``pip install "mlrsnet[bench]"`` and
  exits with 2, no traceback.
* ``pip install mlrsnet`` pulls only torch and numpy: pyproject.toml's base dependencies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mlrsnet.harness.cli import BENCH_MODULES, main
from mlrsnet.harness.registry import profile_names

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "pandas", "ray", "pyarrow", "matplotlib", "torchvision")

PROBE = """
import json, sys
from mlrsnet.harness.cli import {what}
try:
    {call}
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})))
"""


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


@pytest.mark.parametrize("what,call", [
    ("build_parser", "build_parser().format_help()"),
    ("main", "main(['--help'])"),
])
def test_the_help_imports_no_torch_pandas_or_ray(what: str, call: str) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE.format(what=what, call=call, heavy=set(HEAVY))],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == [], f"building mlrsnet-bench's parser imported {loaded}"


def test_the_profile_choices_are_still_checked_and_shown(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = capsys.readouterr().out
    assert f"one of {', '.join(profile_names())} (default: mini)" in re.sub(r"\s+", " ", shown)
    with pytest.raises(SystemExit) as refused:
        main(["train", "--task", "t", "--method", "m", "--profile", "nope"])
    assert refused.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


BLOCKER = """
import importlib.abc, sys

class _Blocked(importlib.abc.MetaPathFinder):
    # the [bench] extra is not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _Blocked())
"""


def _console_script() -> list[str]:
    script = shutil.which("mlrsnet-bench", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-c", "from mlrsnet.harness.cli import main; raise SystemExit(main())"]


@pytest.mark.parametrize("args", [["--help"], ["train", "--task", "cifar10-resnet18", "--method", "fixed"]])
def test_without_the_bench_extra_it_names_the_install_command(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(blocked=set(BENCH_MODULES)))
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    done = subprocess.run([*_console_script(), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    paragraph = done.stderr.strip()
    assert "\n" not in paragraph and "Traceback" not in paragraph
    assert 'pip install "mlrsnet[bench]"' in paragraph
    assert "missing: pandas, pyarrow, torchvision, matplotlib, tqdm, ray" in paragraph


def test_a_missing_bench_module_met_by_a_command_gets_the_same_paragraph(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import mlrsnet.harness.cli as cli

    def needs_pandas(_args: object) -> int:
        raise ModuleNotFoundError("No module named 'pandas'", name="pandas")

    monkeypatch.setattr(cli, "cmd_train", needs_pandas)
    assert cli.main(["train", "--task", "t", "--method", "m"]) == 2
    assert 'pip install "mlrsnet[bench]"' in capsys.readouterr().err


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower()


def test_pip_install_mlrsnet_pulls_only_torch_and_numpy() -> None:
    assert sorted(_name(r) for r in _pyproject()["project"]["dependencies"]) == ["numpy", "torch"]


def test_the_modules_checked_for_the_bench_extra_are_in_it() -> None:
    bench = {_name(r) for r in _pyproject()["project"]["optional-dependencies"]["bench"]}
    assert set(BENCH_MODULES.values()) <= bench
