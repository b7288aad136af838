"""Checkpoint sets: the official release (found, verified, downloaded), our packaged set,
and folders written by meta-training."""

from __future__ import annotations

import io
import json
import shutil
import urllib.request
from pathlib import Path

import pytest
import torch

from mlrsnet.errors import UserError
from mlrsnet.snet import checkpoint_sets
from mlrsnet.snet.checkpoint_sets import (
    ENV_VAR,
    OFFICIAL_SHA256,
    CheckpointSet,
    resolve_checkpoints,
    sha256_of,
)
from mlrsnet.snet.net import MLRSNet


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real cache, no env folder, no network unless a test provides one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_VAR, raising=False)

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def test_the_stored_hashes_are_those_of_the_released_files(official_ckpts: Path) -> None:
    for epoch, digest in OFFICIAL_SHA256.items():
        assert sha256_of(official_ckpts / f"mlr_snet_{epoch}.pth") == digest


def test_official_files_are_found_in_the_given_folder_and_staged_1_100_200(official_ckpts: Path) -> None:
    ckpts = resolve_checkpoints("official", checkpoint_dir=official_ckpts)
    assert ckpts.stages == (1, 100, 200)
    assert ckpts.name == "official"
    assert ckpts.load(200).num_parameters() == 11_776


def test_official_files_are_found_through_the_environment_variable(
        official_ckpts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(official_ckpts))
    assert resolve_checkpoints("official").path(100).parent == official_ckpts


def test_the_repository_spelling_with_a_space_is_accepted(official_ckpts: Path, tmp_path: Path) -> None:
    folder = tmp_path / "repo-names"
    folder.mkdir()
    for epoch in (1, 100, 200):
        shutil.copy(official_ckpts / f"mlr_snet_{epoch}.pth", folder / f"mlr_snet {epoch}.pth")
    assert resolve_checkpoints("official", checkpoint_dir=folder).path(1).name == "mlr_snet 1.pth"


def test_a_modified_official_file_is_rejected(official_ckpts: Path, tmp_path: Path) -> None:
    folder = tmp_path / "tampered"
    shutil.copytree(official_ckpts, folder)
    path = folder / "mlr_snet_100.pth"
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="sha256"):
        resolve_checkpoints("official", checkpoint_dir=folder)


def test_missing_official_files_without_network_name_the_env_var_and_the_files(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        resolve_checkpoints("official", checkpoint_dir=tmp_path / "empty")
    message = str(err.value)
    assert ENV_VAR in message and "mlr_snet_1.pth" in message and "mlr_snet_200.pth" in message
    assert "network disabled" in message


def test_downloads_are_skipped_when_offline_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLRSNET_OFFLINE", "1")
    with pytest.raises(UserError, match="downloads are disabled"):
        resolve_checkpoints("official")


class _FakeResponse(io.BytesIO):
    def __enter__(self) -> _FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_missing_official_files_are_downloaded_verified_into_the_cache(
        official_ckpts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    requested: list[str] = []

    def serve(url: str, timeout: float) -> _FakeResponse:
        requested.append(url)
        epoch = int(url.rsplit("%20", 1)[1].removesuffix(".pth"))
        return _FakeResponse((official_ckpts / f"mlr_snet_{epoch}.pth").read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    ckpts = resolve_checkpoints("official")
    assert ckpts.path(1).parent == tmp_path / "cache" / "mlrsnet" / "official"
    assert all(u.startswith("https://raw.githubusercontent.com/xjtushujun/MLR-SNet/") for u in requested)
    assert len(requested) == 3


def test_a_download_with_the_wrong_bytes_is_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _FakeResponse(b"not a checkpoint"))
    with pytest.raises(UserError, match="sha256"):
        resolve_checkpoints("official")
    assert not list((tmp_path / "cache").rglob("*.pth"))


def _write_set(folder: Path, epochs: list[int]) -> None:
    folder.mkdir(parents=True)
    for e in epochs:
        torch.save(MLRSNet(generator=torch.Generator().manual_seed(e)).state_dict(), folder / f"mlr_snet_{e}.pth")


def test_a_folder_of_released_style_names_is_a_set_staged_first_middle_last(tmp_path: Path) -> None:
    _write_set(tmp_path / "run", [1, 2, 3, 4, 5, 6])
    assert resolve_checkpoints(str(tmp_path / "run")).stages == (1, 3, 6)


def test_a_manifest_lists_the_files_and_guards_their_hashes(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    _write_set(folder, [1, 4, 8])
    digests = {str(e): sha256_of(folder / f"mlr_snet_{e}.pth") for e in (1, 4, 8)}
    (folder / "manifest.json").write_text(json.dumps(
        {"files": {str(e): f"mlr_snet_{e}.pth" for e in (1, 4, 8)}, "sha256": digests}))
    assert resolve_checkpoints(folder).stages == (1, 4, 8)
    torch.save(MLRSNet().state_dict(), folder / "mlr_snet_4.pth")
    with pytest.raises(UserError, match="changed or truncated"):
        resolve_checkpoints(folder)


def test_an_unknown_name_is_a_user_error_listing_the_known_sets() -> None:
    with pytest.raises(UserError, match="official"):
        resolve_checkpoints("paper-ish")


def test_an_empty_set_is_refused() -> None:
    with pytest.raises(UserError):
        CheckpointSet("nothing", {})


def test_our_packaged_set_resolves_by_name_and_says_it_is_not_the_papers() -> None:
    if not (checkpoint_sets.PACKAGED_DIR / "ours-mini" / "manifest.json").exists():
        pytest.fail("the packaged 'ours-mini' checkpoint set is missing")
    ckpts = resolve_checkpoints("ours")
    assert ckpts.name == "ours-mini"
    assert len(ckpts.stages) == 3 and ckpts.stages[0] < ckpts.stages[2]
    assert ckpts.manifest["task"] == "resnet18-cifar10" and ckpts.manifest["profile"] == "mini"
    readme = (checkpoint_sets.PACKAGED_DIR / "ours-mini" / "README.md").read_text()
    assert "not the paper" in readme.lower()
    for epoch in ckpts.stages:
        ckpts.load(epoch)


def test_exporting_keeps_only_the_three_stage_files_and_the_source_facts(tmp_path: Path) -> None:
    from mlrsnet.snet.checkpoint_sets import export_stages

    source = tmp_path / "run"
    _write_set(source, [1, 2, 3, 4, 5, 6])
    (source / "manifest.json").write_text(json.dumps(
        {"task": "resnet18-cifar10", "profile": "mini", "files": {str(e): f"mlr_snet_{e}.pth" for e in range(1, 7)}}))
    exported = export_stages(source, tmp_path / "packaged", note="not the paper's")
    assert exported.epochs == [1, 3, 6] and exported.stages == (1, 3, 6)
    assert exported.manifest["task"] == "resnet18-cifar10" and exported.manifest["exported_stages_of"] == list(range(1, 7))
    assert sorted(p.name for p in (tmp_path / "packaged").iterdir()) == [
        "manifest.json", "mlr_snet_1.pth", "mlr_snet_3.pth", "mlr_snet_6.pth"]
    assert (tmp_path / "packaged" / "mlr_snet_3.pth").read_bytes() == (source / "mlr_snet_3.pth").read_bytes()
