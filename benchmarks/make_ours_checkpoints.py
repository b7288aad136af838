"""Re-make the shipped ``ours-mini`` MLR-SNet checkpoint set with the current meta-training.

Trains the method ``mlrsnet`` (defaults: the official gate convention, initialisation and Adam
step, the small-profile ``t_val`` rule) on one task and profile through the loop every
run uses, then exports the first, middle and last epoch's network
(:func:`mlrsnet.snet.checkpoint_sets.export_stages`) into the package, with a manifest that
records the command that made the set and the profile's fields as they were
(``profile_fields``).  ``tests/snet/test_shipped_sets.py`` fails when the registry's profile
no longer matches them: re-run this script then.

Run (about 3 minutes on one core):
    MLRSNET_DATA_DIR=../shared/data .venv/bin/python benchmarks/make_ours_checkpoints.py \\
        [--task resnet18-cifar10] [--profile mini] [--seed 0] [--dest mlrsnet/snet/checkpoints/ours-mini]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = ROOT / "mlrsnet" / "snet" / "checkpoints" / "ours-mini"

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="resnet18-cifar10")
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dest", default=str(DEFAULT_DEST))
    args = ap.parse_args(argv)

    from mlrsnet.harness.executor import run_cell
    from mlrsnet.harness.experiment import Cell, resolved_profile
    from mlrsnet.harness.store import Store
    from mlrsnet.snet.checkpoint_sets import directory_checkpoints, export_stages, write_manifest

    cell = Cell(task=args.task, profile=args.profile, method="mlrsnet", seed=args.seed,
                experiment="ours-checkpoints")
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = Path(tmp) / "artifacts"
        result = run_cell(cell, Store(Path(tmp) / "results"), quiet=False, artifact_dir=artifacts,
                          device="cpu", threads=1)
        if result is None or result.status != "finished":
            print(f"meta-training did not finish: {result and result.status}", file=sys.stderr)
            return 1
        note = (f"meta-trained by this project on the {args.profile} profile of {args.task} (CPU, real data "
                "subset); not the paper's checkpoints")
        exported = export_stages(artifacts, args.dest, note=note)
    keep = set(exported.manifest["files"].values())
    for stale in Path(args.dest).glob("*.pth"):  # an earlier set's stages
        if stale.name not in keep:
            stale.unlink()
    argv_text = " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    manifest = dict(exported.manifest)
    manifest.update({
        "task": args.task, "profile": args.profile,  # the method itself records only the scale
        "command": f"MLRSNET_DATA_DIR=../shared/data .venv/bin/python benchmarks/make_ours_checkpoints.py {argv_text}".strip(),
        "profile_fields": resolved_profile(cell).training_fields(),
        "wall_time_s": round(result.wall_time_s, 1),
        "final_test_acc": result.final("test", "acc"),
        "lr_first_last": [result.steps["lr"][0], result.steps["lr"][-1]] if result.steps["lr"] else None,
    })
    write_manifest(Path(args.dest), manifest)
    directory_checkpoints(Path(args.dest))  # the manifest's sha256 still check out
    print(json.dumps({k: manifest[k] for k in ("wall_time_s", "final_test_acc", "lr_first_last", "gamma",
                                               "t_val", "meta_updates")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
