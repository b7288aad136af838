"""The MLR-SNet checkpoint set shipped in the package was made at the profile the registry
defines now: change the profile and this fails until the set is re-made."""

from __future__ import annotations

import json

from mlrsnet.harness.executor import differing_fields
from mlrsnet.harness.experiment import Cell, resolved_profile
from mlrsnet.snet import checkpoint_sets


def _manifest() -> dict:
    return json.loads((checkpoint_sets.PACKAGED_DIR / "ours-mini" / "manifest.json").read_text())


def test_the_shipped_set_was_made_at_the_registrys_current_profile() -> None:
    manifest = _manifest()
    cell = Cell(task=manifest["task"], profile=manifest["profile"], method="mlrsnet", seed=manifest["seed"])
    # a field added since with the default None (vocab_size) leaves the profile as it was
    assert not differing_fields(manifest["profile_fields"], resolved_profile(cell).training_fields()), (
        "the profile changed since the shipped set was made; re-make it with: " + manifest["command"])


def test_the_shipped_set_records_the_command_that_made_it() -> None:
    assert "benchmarks/make_ours_checkpoints.py" in _manifest()["command"]
