"""Loop overhead and augmentation throughput, measured side by side in one process.

1. Time per training step of the harness loop (``mlrsnet.train.train`` with the ``fixed``
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

from mlrsnet.data import NORMALIZATION, BatchAugment
from mlrsnet.experiment import Cell, resolved_profile
from mlrsnet.models import build_model
from mlrsnet.tasks import get_task
from mlrsnet.train import pick_device, train
from mlrsnet.workload import make_workload

NO_EVAL = {"holdout": 0, "test_size": 0}


def harness_seconds_per_step(cell: Cell, device: torch.device) -> tuple[float, int]:
    t0 = time.perf_counter()
    result = train(cell, device=device, quiet=True)
    total = time.perf_counter() - t0
    steps = len(result.steps["step"])
    return total, steps


def minimal_seconds(cell: Cell, device: torch.device) -> tuple[float, float]:
    """The same setup code, then the textbook loop; returns (total, setup) seconds."""
    t0 = time.perf_counter()
    task = get_task(cell.task)
    profile = resolved_profile(cell)
    torch.manual_seed(cell.seed)
    gen = torch.Generator().manual_seed(cell.seed)
    wl = make_workload(task, profile, device)
    model = build_model(task.arch, num_classes=wl.num_outputs, **profile.model_kwargs).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=task.optim.momentum,
                          weight_decay=task.optim.weight_decay)
    setup = time.perf_counter() - t0
    model.train()
    for _ in range(profile.epochs):
        for x, y in wl.train_batches(gen):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, setup


def augmentation_throughput(dataset: str, n: int = 2048) -> tuple[float, float]:
    from PIL import Image
    from torchvision import transforms

    from mlrsnet.data import load_image_dataset

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
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = pick_device(args.device)
    cell = Cell(args.task, args.profile, "fixed", {"lr": 0.05},
                overrides={**NO_EVAL, "epochs": args.epochs})
    ours, plain = [], []
    minimal_seconds(cell, device)  # warm-up (allocator, data cache)
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        total, setup = minimal_seconds(cell, device)
        h_total, steps = harness_seconds_per_step(cell, device)
        plain.append((total - setup) / steps)
        ours.append((h_total - setup) / steps)
    o, p = statistics.median(ours), statistics.median(plain)
    print(f"task {args.task} / {args.profile}, device {device}, {steps} steps per repeat, "
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
