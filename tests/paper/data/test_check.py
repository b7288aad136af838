"""``check``: an inventory of the data on disk with digests compared to published ones."""

from __future__ import annotations

import shutil

from mlrsnet.paper.data import check


def _rows_by_file(rows):
    return {row["file"]: row for row in rows}


def test_shared_subsets_are_present_and_match_their_published_sha256(shared_data, isolated_cwd):
    rows = _rows_by_file(check(shared_data))
    for file in ("cifar10-mini.npz", "cifar100-mini.npz", "tinyimagenet-mini.npz",
                 "ptb/train.txt", "wikitext-2/test.txt"):
        assert rows[file]["present"] and rows[file]["verified"] is True, file
    mini = rows["cifar10-mini.npz"]
    assert mini["kind"] == "mini" and mini["bytes"] == 17_124_970
    assert mini["path"] == str(shared_data / "cifar10-mini.npz")
    assert mini["sha256"] == "7beecdffb57b8914fbc11af56acebfabd225c7346ba59552c2f5e6d135a0bc65"


def test_a_dataset_with_no_file_is_one_absent_full_row(shared_data, isolated_cwd):
    svhn = [row for row in check(shared_data) if row["name"] == "svhn"]
    assert svhn == [{"name": "svhn", "kind": "full", "file": "svhn.npz", "present": False,
                     "path": None, "bytes": None, "sha256": None, "verified": None}]


def test_a_modified_copy_is_reported_as_not_verified(shared_data, isolated_cwd):
    folder = isolated_cwd / "d"
    (folder / "ptb").mkdir(parents=True)
    for split in ("train", "valid"):
        shutil.copy(shared_data / "ptb" / f"{split}.txt", folder / "ptb" / f"{split}.txt")
    (folder / "ptb" / "test.txt").write_bytes(b"not the test set\n")
    rows = _rows_by_file(check(folder))
    assert rows["ptb/train.txt"]["verified"] is True
    assert rows["ptb/test.txt"]["present"] and rows["ptb/test.txt"]["verified"] is False
    assert rows["wikitext-2/train.txt"]["present"] is False
