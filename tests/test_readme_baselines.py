"""The README's "Adding a baseline" recipe works as printed.

Each ``# baselines/<name>.py`` block of the section is written, unchanged, into a plug-in
folder (``$MLRSNET_PLUGINS``, scanned like ``baselines/``), and the README's own command
``mlrsnet-bench check-method halving`` runs on it as printed: every check passes on the first
try.  The schedule it defines runs at the task's LR (20 on a language model, where the old
example's hard-coded 0.1 gave a test perplexity of 9,267 against 1,934 for ``fixed``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlrsnet.harness.conformance import SETTINGS, check_method
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.loop import train
from mlrsnet.harness.registry import load_plugin_file

ROOT = Path(__file__).resolve().parents[1]
SECTION = ROOT.joinpath("README.md").read_text().split("## Adding a baseline", 1)[1].split("\n## ", 1)[0]
BLOCKS = dict(re.findall(r"```python\n# baselines/(\w+)\.py\n(.*?)```", SECTION, re.S))
COMMAND = re.search(r"```bash\n(mlrsnet-bench check-method \S+)", SECTION).group(1)


def test_the_section_has_the_three_example_modules_and_the_command():
    assert set(BLOCKS) == {"halving", "halve_on_plateau", "onecycle"}
    assert COMMAND == "mlrsnet-bench check-method halving"


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name, code in BLOCKS.items():
        (folder / f"{name}.py").write_text(f"# baselines/{name}.py\n{code}")
    return folder


def test_the_readme_command_checks_the_example_as_printed(plugins: Path, data_dir) -> None:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "MLRSNET_PLUGINS": str(plugins), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(COMMAND, shell=True, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "10 of 10 checks passed" in done.stdout, done.stdout


@pytest.mark.parametrize("name", ["halve_on_plateau", "onecycle"])
def test_every_example_module_passes_the_conformance_suite(name: str, plugins: Path, data_dir) -> None:
    (cls,) = load_plugin_file(plugins / f"{name}.py")
    failed = [c.line() for c in check_method(cls) if c.passed is False]
    assert not failed, "\n".join(failed)


def test_the_example_schedule_runs_at_the_tasks_lr(plugins: Path, data_dir) -> None:
    (halving,) = load_plugin_file(plugins / "halving.py")
    for setting, base in zip(SETTINGS, (0.1, 20.0), strict=True):
        result = train(Cell(setting.task, setting.profile, "halving", overrides=dict(setting.overrides)),
                       method_class=halving)
        per_epoch = len(result.steps["lr"]) // setting.overrides["epochs"]
        assert result.steps["lr"][0] == base and result.steps["lr"][per_epoch] == base / 2


def test_onecycle_follows_torchs_own_schedule(plugins: Path, data_dir) -> None:
    """The wrapped OneCycleLR gives the LRs torch's scheduler gives on a bare optimiser."""
    import torch
    from torch.optim.lr_scheduler import OneCycleLR

    (onecycle,) = load_plugin_file(plugins / "onecycle.py")
    setting = SETTINGS[0]
    result = train(Cell(setting.task, setting.profile, "onecycle", overrides=dict(setting.overrides)),
                   method_class=onecycle)
    steps = len(result.steps["lr"])
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    expected = []
    for _ in range(steps):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert result.steps["lr"] == pytest.approx(expected, rel=1e-12)
