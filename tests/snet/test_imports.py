"""The method layer stands alone: importing ``mlrsnet.snet`` (or its scheduler) in a fresh
interpreter loads torch and numpy but nothing of the harness, of the paper's apparatus, or
of their heavy dependencies.

Each import runs in a subprocess, so modules other tests already loaded do not count.
``import torch`` itself loads ``tqdm`` when it is installed (``torch.hub`` tries it); what
is checked is that the method layer adds none of the listed packages to what torch and
numpy bring.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: Third-party packages only the harness / paper layers may use.
HEAVY = ("ray", "pandas", "pyarrow", "matplotlib", "hpbandster", "tqdm")
#: The frameworks of the adapters in ``mlrsnet.snet.integrations``: each loaded only by its own.
FRAMEWORKS = ("lightning", "pytorch_lightning", "transformers", "timm", "accelerate")
#: This repository's upper layers.
UPPER = ("mlrsnet.harness", "mlrsnet.paper", "baselines")

PROBE = """
import json, sys
def loaded():
    return sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
import numpy, torch
by_torch = loaded()
{statement}
print(json.dumps({{"by_torch": by_torch, "heavy": loaded(),
                  "ours": sorted(m for m in sys.modules if m == "baselines" or m.startswith(("mlrsnet", "baselines.")))}}))
"""


@pytest.mark.parametrize("statement", [
    "import mlrsnet.snet.scheduler",
    "import mlrsnet.snet",
    "from mlrsnet.snet import MLRSNetScheduler, TaskScale, resolve_checkpoints",
    "import mlrsnet.snet.checkpoint_sets, mlrsnet.snet.gamma, mlrsnet.snet.net",
])
def test_the_method_layer_imports_nothing_of_the_harness_or_the_paper(statement: str) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=set(HEAVY), statement=statement)],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    added = sorted(set(seen["heavy"]) - set(seen["by_torch"]))
    assert added == [], f"{statement!r} loaded {added}"
    upper = [m for m in seen["ours"] if any(m == u or m.startswith(f"{u}.") for u in UPPER)]
    assert upper == [], f"{statement!r} loaded {upper}"
    assert set(seen["ours"]) <= {"mlrsnet", "mlrsnet.errors", "mlrsnet.snet", "mlrsnet.snet.scheduler",
                                 "mlrsnet.snet.checkpoint_sets", "mlrsnet.snet.gamma", "mlrsnet.snet.net"}


FRAMEWORK_PROBE = """
import json, sys
import numpy, torch
{statement}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & {frameworks!r})))
"""


def _frameworks_loaded_by(statement: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", FRAMEWORK_PROBE.format(statement=statement, frameworks=set(FRAMEWORKS))],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("statement,framework", [
    ("import mlrsnet.snet.integrations", None),
    ("from mlrsnet.snet import MLRSNetScheduler; MLRSNetScheduler", None),
    ("import mlrsnet.snet.integrations.timm", "import timm.scheduler.scheduler"),
])
def test_the_adapters_import_their_framework_only_when_imported(statement: str, framework: str | None) -> None:
    """An adapter loads what its framework loads, nothing more; the package and the scheduler
    load none (the Lightning and Hugging Face adapters are loaded by their own tests)."""
    expected = _frameworks_loaded_by(framework) if framework else set()
    assert _frameworks_loaded_by(statement) == expected
