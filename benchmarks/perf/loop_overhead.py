"""Loop overhead and augmentation throughput, measured side by side in one process.

1. The harness's per-step work (``mlrsnet.harness.step.workload_step``: the workload's loss
   with its running train metrics, then ``train_step`` with the ``fixed`` method, plus the
   loop's trace entry and progress-bar update) vs a minimal hand-written PyTorch step
   (forward, cross-entropy, zero_grad, backward, SGD step) on two copies of the same model,
   the same pre-drawn batches and the same device.  The two run in short alternating
   blocks (ABBA order, so drift and warm-up hit both alike); each pair of blocks gives one
   ratio, and the table shows the paired median and the inter-quartile spread.
   Target: median ratio <= 1.03.
2. Images/s of the batched tensor augmentation (``BatchAugment``: crop with 4-px padding,
   flip, normalise) vs torchvision's per-image PIL transforms.  Target: >= 10x.

Run:  .venv/bin/python benchmarks/perf/loop_overhead.py [--task resnet18-cifar10] [--profile mini]
      [--blocks 16] [--block-steps 4] [--device auto]
Needs MLRSNET_DATA_DIR (e.g. ../shared/data).  Prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from mlrsnet.harness.contract import BatchStats, profile_scale
from mlrsnet.harness.experiment import Cell, resolved_profile
from mlrsnet.harness.loop import _progress, pick_device
from mlrsnet.harness.registry import get_method, get_task
from mlrsnet.harness.step import start_run, workload_step
from mlrsnet.paper.data import NORMALIZATION, BatchAugment


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_ratios(cell: Cell, device: torch.device, blocks: int, block_steps: int) -> dict[str, list[float]]:
    """Seconds per step of the harness and of the minimal step, block by block."""
    task = get_task(cell.task)
    profile = resolved_profile(cell)
    torch.manual_seed(cell.seed)
    workload, model = task.build(profile, device, None)
    minimal_model = copy.deepcopy(model)
    method = get_method(cell.method)(**dict(cell.hparams))
    run = start_run(method, model, task=task, workload=workload, scale=profile_scale(profile),
                    epochs=profile.epochs, seed=cell.seed, device=device)
    minimal_opt = torch.optim.SGD(minimal_model.parameters(), lr=0.05, momentum=task.optim.momentum,
                                  weight_decay=task.optim.weight_decay)
    gen = torch.Generator().manual_seed(cell.seed)
    batches = []
    while len(batches) < 2 * blocks * block_steps + 2 * block_steps:
        batches.extend(workload.train_batches(gen))
    model.train()
    minimal_model.train()
    stats, carry = BatchStats(), workload.start_epoch(model)
    bar = _progress(len(batches), "bench", quiet=True)
    taken: list[tuple[int, float, object]] = []
    step = 0

    def harness_block(chunk: list) -> None:
        nonlocal carry, step
        for batch in chunk:
            carry, (lr, loss, _) = workload_step(workload, model, batch, carry, stats, method, run.params,
                                                 run.optimizer, task.optim.clip_grad_norm,
                                                 step=step, epoch=0, index=step)
            taken.append((step, lr, loss))
            step += 1
            bar.update(1)

    def minimal_block(chunk: list) -> None:
        for x, y in chunk:
            loss = F.cross_entropy(minimal_model(x), y)
            minimal_opt.zero_grad(set_to_none=True)
            loss.backward()
            minimal_opt.step()

    def timed(fn, chunk: list) -> float:  # noqa: ANN001
        _sync(device)
        t0 = time.perf_counter()
        fn(chunk)
        _sync(device)
        return (time.perf_counter() - t0) / len(chunk)

    # one warm-up block each, then ABBA pairs over the same batches
    timed(harness_block, batches[:block_steps])
    timed(minimal_block, batches[:block_steps])
    out: dict[str, list[float]] = {"harness": [], "minimal": []}
    for k in range(blocks):
        chunk = batches[(k + 1) * block_steps:(k + 2) * block_steps]
        order = (("harness", harness_block), ("minimal", minimal_block))
        for name, fn in (order if k % 2 == 0 else order[::-1]):
            out[name].append(timed(fn, chunk))
    bar.close()
    return out


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


def _quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="resnet18-cifar10")
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--blocks", type=int, default=16, help="pairs of timed blocks")
    ap.add_argument("--block-steps", type=int, default=4, help="steps per block")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = pick_device(args.device)
    cell = Cell(args.task, args.profile, "fixed", {"lr": 0.05})
    times = interleaved_ratios(cell, device, args.blocks, args.block_steps)
    ratios = [h / m for h, m in zip(times["harness"], times["minimal"], strict=True)]
    lo, hi = _quartiles(ratios)
    print(f"task {args.task} / {args.profile}, device {device}, {args.blocks} ABBA block pairs of "
          f"{args.block_steps} steps on the same batches")
    print(f"{'step':<34}{'ms/step (median)':>18}")
    print(f"{'minimal PyTorch step':<34}{statistics.median(times['minimal']) * 1e3:>18.2f}")
    print(f"{'harness (workload_step, fixed)':<34}{statistics.median(times['harness']) * 1e3:>18.2f}")
    print(f"ratio harness/minimal, paired: median {statistics.median(ratios):.3f}, "
          f"inter-quartile {lo:.3f}-{hi:.3f}  (target <= 1.03)")
    task = get_task(args.task)
    if task.kind == "image":
        a, b = augmentation_throughput(task.dataset)
        print(f"augmentation: batched tensors {a:,.0f} img/s, torchvision PIL {b:,.0f} img/s, "
              f"ratio {a / b:.1f}x  (target >= 10x)")


if __name__ == "__main__":
    main()
