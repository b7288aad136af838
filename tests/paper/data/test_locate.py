"""Where data is looked for, and what the user is told when it is not there."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from mlrsnet.errors import UserError
from mlrsnet.paper.data import DATA_ENV, MissingDataError, data_dirs, find_corpus_dir, find_image_file


def _touch(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"placeholder")  # lookup only checks existence
    return path


def test_lookup_order_is_data_dir_then_env_then_cwd_data(isolated_cwd, monkeypatch):
    explicit, env = isolated_cwd / "explicit", isolated_cwd / "env"
    monkeypatch.setenv(DATA_ENV, str(env))
    assert data_dirs(explicit) == [explicit, env, isolated_cwd / "data"]
    assert data_dirs() == [env, isolated_cwd / "data"]
    monkeypatch.delenv(DATA_ENV)
    assert data_dirs() == [isolated_cwd / "data"]


def test_lookup_drops_a_folder_named_twice(isolated_cwd, monkeypatch):
    monkeypatch.setenv(DATA_ENV, "data")
    assert data_dirs(isolated_cwd / "data") == [isolated_cwd / "data"]


def test_explicit_dir_beats_env_beats_cwd_data(isolated_cwd, monkeypatch):
    explicit, env, cwd_data = isolated_cwd / "explicit", isolated_cwd / "env", isolated_cwd / "data"
    files = {folder: _touch(folder, "cifar10.npz") for folder in (explicit, env, cwd_data)}
    monkeypatch.setenv(DATA_ENV, str(env))
    assert find_image_file("cifar10", allow_mini=False, data_dir=explicit) == files[explicit]
    assert find_image_file("cifar10", allow_mini=False) == files[env]
    monkeypatch.delenv(DATA_ENV)
    assert find_image_file("cifar10", allow_mini=False) == files[cwd_data]


def test_mini_file_serves_only_when_allowed(isolated_cwd):
    mini = _touch(isolated_cwd / "d", "cifar10-mini.npz")
    assert find_image_file("cifar10", allow_mini=True, data_dir=isolated_cwd / "d") == mini
    with pytest.raises(MissingDataError):
        find_image_file("cifar10", allow_mini=False, data_dir=isolated_cwd / "d")


def test_full_file_is_preferred_over_mini_in_the_same_folder(isolated_cwd):
    _touch(isolated_cwd / "d", "cifar10-mini.npz")
    full = _touch(isolated_cwd / "d", "cifar10.npz")
    assert find_image_file("cifar10", allow_mini=True, data_dir=isolated_cwd / "d") == full


def test_an_earlier_folder_wins_even_if_it_only_holds_the_mini(isolated_cwd):
    mini = _touch(isolated_cwd / "explicit", "cifar10-mini.npz")
    _touch(isolated_cwd / "data", "cifar10.npz")
    assert find_image_file("cifar10", allow_mini=True, data_dir=isolated_cwd / "explicit") == mini


def test_missing_file_error_names_the_file_the_folders_and_the_command(isolated_cwd, monkeypatch):
    explicit, env = isolated_cwd / "explicit", isolated_cwd / "env"
    monkeypatch.setenv(DATA_ENV, str(env))
    with pytest.raises(MissingDataError) as info:
        find_image_file("svhn", allow_mini=True, data_dir=explicit)
    message = str(info.value)
    assert isinstance(info.value, UserError) and info.value.exit_code == 2
    assert "svhn.npz" in message and "svhn-mini.npz" in message
    for folder in (explicit, env, isolated_cwd / "data"):
        assert str(folder) in message
    assert f"mlrsnet-bench data prepare svhn --data-dir {explicit}" in message
    assert "\n" not in message  # one paragraph


def test_without_data_dir_the_command_needs_no_flag(isolated_cwd):
    with pytest.raises(MissingDataError) as info:
        find_image_file("cifar100", allow_mini=False)
    assert "`mlrsnet-bench data prepare cifar100`" in str(info.value)
    assert "cifar100-mini.npz" not in str(info.value)


def test_corpus_is_found_only_with_all_three_splits(isolated_cwd):
    for split in ("train", "valid"):
        _touch(isolated_cwd / "d" / "ptb", f"{split}.txt")
    with pytest.raises(MissingDataError) as info:
        find_corpus_dir("ptb", data_dir=isolated_cwd / "d")
    assert "ptb/test.txt" in str(info.value)
    assert "mlrsnet-bench data prepare ptb" in str(info.value)
    _touch(isolated_cwd / "d" / "ptb", "test.txt")
    assert find_corpus_dir("ptb", data_dir=isolated_cwd / "d") == isolated_cwd / "d" / "ptb"


def test_missing_data_error_survives_pickling(isolated_cwd):
    """Ray ships a trial's exception to the driver by pickling it."""
    with pytest.raises(MissingDataError) as info:
        find_image_file("svhn", allow_mini=False)
    clone = pickle.loads(pickle.dumps(info.value))
    assert type(clone) is MissingDataError and str(clone) == str(info.value)
