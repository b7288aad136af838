"""Loop overhead and augmentation throughput, measured side by side in one process.

1. Time per training step of the harness loop (``mlrsnet.harness.loop.train`` with the ``fixed``
   method) vs a minimal hand-written PyTorch loop on the same model, the same batches and
   the same device.  Target: ratio <= 1.03.
2. Images/s of the batched tensor augmentation (``BatchAugment``: crop with 4-px padding,
   flip, normalise) vs torchvision's per-image PIL transforms.  Target: >= 10x.

Run:  .venv/bin/python benchmarks/perf/loop_overhead.py [--task resnet18-cifar10] [--profile mini]
Needs MLRSNET_DATA_DIR (e.g. ../shared/data).  Prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mlrsnet.harness.experiment import Cell, resolved_profile
from mlrsnet.harness.loop import pick_device, train
from mlrsnet.paper.data import NORMALIZATION, BatchAugment
from mlrsnet.paper.models import build_model
from mlrsnet.paper.tasks import get_task
from mlrsnet.paper.workloads import make_workload

NO_EVAL = {"holdout": 0, "test_size": 0}


def harness_seconds_per_step(cell: Cell, device: torch.device) -> float:
    """Seconds per step of the harness over all epochs but the first (setup and the
    first epoch's warm-up excluded), timed at epoch ends through ``on_epoch``."""
    marks: list[float] = []
    result = train(cell, device=device, quiet=True, on_epoch=lambda e, m: marks.append(time.perf_counter()))
    steps_per_epoch = len(result.steps["step"]) // len(marks)
    return (marks[-1] - marks[0]) / (steps_per_epoch * (len(marks) - 1))


def minimal_seconds_per_step(cell: Cell, device: torch.device) -> float:
    """The textbook loop on the same workload and model, timed the same way."""
    task = get_task(cell.task)
    profile = resolved_profile(cell)
    torch.manual_seed(cell.seed)
    gen = torch.Generator().manual_seed(cell.seed)
    wl = make_workload(task, profile, device)
    model = build_model(task.arch, num_classes=wl.num_outputs, **profile.model_kwargs).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=task.optim.momentum,
                          weight_decay=task.optim.weight_decay)
    model.train()
    marks = []
    for _ in range(profile.epochs):
        for x, y in wl.train_batches(gen):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        marks.append(time.perf_counter())
    return (marks[-1] - marks[0]) / (wl.steps_per_epoch * (len(marks) - 1))


def augmentation_throughput(dataset: str, n: int = 2048) -> tuple[float, float]:
    from PIL import Image
    from torchvision import transforms

    from mlrsnet.paper.data import load_image_dataset

    ds = load_image_dataset(dataset, allow_mini=True)
    x = ds.x_train[:n]
    mean, std = NORMALIZATION[dataset]
    aug = BatchAugment(mean, std)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for k in range(0, n, 128):
        aug(x[k:k + 128], gen)
    ours = n / (time.perf_counter() - t0)
    pil = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                              transforms.ToTensor(), transforms.Normalize(mean, std)])
    images = [Image.fromarray(img.numpy()) for img in x]
    t0 = time.perf_counter()
    for img in images:
        pil(img)
    theirs = n / (time.perf_counter() - t0)
    return ours, theirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="resnet18-cifar10")
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = pick_device(args.device)
    cell = Cell(args.task, args.profile, "fixed", {"lr": 0.05},
                overrides={**NO_EVAL, "epochs": args.epochs})
    ours, plain = [], []
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        plain.append(minimal_seconds_per_step(cell, device))
        ours.append(harness_seconds_per_step(cell, device))
    print("per repeat (ms): minimal", [round(v * 1e3) for v in plain], "harness", [round(v * 1e3) for v in ours])
    o, p = statistics.median(ours), statistics.median(plain)
    print(f"task {args.task} / {args.profile}, device {device}, epochs 2..{args.epochs} timed, "
          f"{args.repeats} repeats (median)")
    print(f"{'loop':<28}{'ms/step':>10}")
    print(f"{'minimal PyTorch loop':<28}{p * 1e3:>10.2f}")
    print(f"{'mlrsnet harness (fixed)':<28}{o * 1e3:>10.2f}")
    print(f"ratio harness/minimal: {o / p:.3f}  (target <= 1.03)")
    ds = get_task(args.task).dataset
    if get_task(args.task).kind == "image":
        a, b = augmentation_throughput(ds)
        print(f"augmentation: batched tensors {a:,.0f} img/s, torchvision PIL {b:,.0f} img/s, "
              f"ratio {a / b:.1f}x  (target >= 10x)")


if __name__ == "__main__":
    main()
