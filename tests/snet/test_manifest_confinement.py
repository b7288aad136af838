"""A checkpoint-set manifest names files inside its own folder only, and what is read is
bounded (issue 26 item 2).  Before: ``../`` and absolute paths were followed, and a manifest
naming ``/dev/zero`` hung the command for ever before training (its sha256 read never
ended)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlrsnet.errors import UserError
from mlrsnet.snet import checkpoint_sets
from mlrsnet.snet.checkpoint_sets import resolve_checkpoints
from mlrsnet.snet.net import MLRSNet


def _set(folder: Path, files: dict[str, str], sha256: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(MLRSNet().state_dict(), folder / "mlr_snet_1.pth")
    (folder / "manifest.json").write_text(json.dumps({"files": files, **({"sha256": sha256} if sha256 else {})}))
    return folder


def _bench() -> list[str]:
    script = Path(sys.executable).with_name("mlrsnet-bench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlrsnet.harness.cli"]


def test_a_manifest_naming_dev_zero_is_refused_at_once_through_the_cli(tmp_path: Path, data_dir: Path) -> None:
    folder = _set(tmp_path / "ckset", {"1": "/dev/zero"}, {"1": "0" * 64})
    env = {**os.environ, "MLRSNET_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*_bench(), "train", "--task", "resnet18-cifar10", "--profile", "smoke", "--quiet",
                           "--method", "mlrsnet-transfer", "--hparam", f'checkpoints="{folder}"',
                           "--results", str(tmp_path / "results")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "/dev/zero" in proc.stderr and "outside" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("name", ["../elsewhere/mlr_snet_1.pth", "/etc/passwd", "sub/../../x.pth"])
def test_a_manifest_naming_a_file_outside_its_folder_is_refused(tmp_path: Path, name: str) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    torch.save(MLRSNet().state_dict(), outside / "mlr_snet_1.pth")
    folder = _set(tmp_path / "ckset", {"1": name})
    with pytest.raises(UserError, match="outside"):
        resolve_checkpoints(folder)


def test_a_link_leading_outside_the_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    torch.save(MLRSNet().state_dict(), outside / "mlr_snet_2.pth")
    folder = _set(tmp_path / "ckset", {"1": "mlr_snet_1.pth", "2": "mlr_snet_2.pth"})
    (folder / "mlr_snet_2.pth").symlink_to(outside / "mlr_snet_2.pth")
    with pytest.raises(UserError, match="outside"):
        resolve_checkpoints(folder)


def test_what_is_read_is_bounded(tmp_path: Path) -> None:
    big = _set(tmp_path / "big", {"1": "mlr_snet_1.pth"})
    with open(big / "mlr_snet_1.pth", "ab") as fh:
        fh.truncate(getattr(checkpoint_sets, "MAX_CHECKPOINT_BYTES", 1 << 24) + 1)  # sparse: no disk used
    with pytest.raises(UserError, match="larger than"):
        resolve_checkpoints(big)
    fifo = _set(tmp_path / "fifo", {"1": "mlr_snet_1.pth"})
    (fifo / "mlr_snet_1.pth").unlink()
    os.mkfifo(fifo / "mlr_snet_1.pth")  # a read would wait for a writer for ever
    with pytest.raises(UserError, match="not a regular file"):
        resolve_checkpoints(fifo)
    manifest = _set(tmp_path / "manifest", {"1": "mlr_snet_1.pth"})
    with open(manifest / "manifest.json", "ab") as fh:
        fh.truncate(getattr(checkpoint_sets, "MAX_MANIFEST_BYTES", 1 << 20) + 1)
    with pytest.raises(UserError, match="larger than"):
        resolve_checkpoints(manifest)
    (manifest / "manifest.json").unlink()
    (manifest / "manifest.json").symlink_to("/dev/zero")
    with pytest.raises(UserError, match="not a regular file"):
        resolve_checkpoints(manifest)


def test_a_set_inside_its_folder_still_resolves(tmp_path: Path) -> None:
    folder = _set(tmp_path / "ckset", {"1": "mlr_snet_1.pth", "3": "sub/mlr_snet_3.pth"})
    (folder / "sub").mkdir()
    torch.save(MLRSNet().state_dict(), folder / "sub" / "mlr_snet_3.pth")
    assert resolve_checkpoints(folder).epochs == [1, 3]
