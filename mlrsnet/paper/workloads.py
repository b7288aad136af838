"""Workloads: what differs between image classification and language modelling.

The training loop is the same for both; everything that depends on the modality (how a
batch is drawn, what the loss is, what state is carried between batches, how a split is
evaluated, what the held-out meta data are) lives behind this small interface, so the loop
needs neither a modality branch nor a method branch.

Images: the held-out (meta/validation) set is a fixed part of the training split, chosen
by a permutation seeded independently of the run seed so every method and seed sees the
same split.  Text: the corpus's validation split plays that role, as in the paper.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import BatchStats, HeldOut, check_split
from mlrsnet.paper.data import (
    DATA_ENV,
    NORMALIZATION,
    BatchAugment,
    batchify,
    bptt_batches,
    cap_vocabulary,
    load_corpus,
    load_image_dataset,
    to_float,
)
from mlrsnet.paper.profiles import Profile


class Task(Protocol):
    """What a workload reads of a task setting (:class:`mlrsnet.paper.tasks.Task` has it)."""

    name: str
    kind: str
    dataset: str
    num_classes: int | None
    augment: bool

#: Seed of the train/held-out split (fixed: the split is part of the task, not the run).
SPLIT_SEED = 1234


@functools.lru_cache(maxsize=4)
def _cached_images(name: str, allow_mini: bool, data_dir: str | None, env_dir: str | None) -> Any:
    """Datasets are read once per process: a search or a test session runs many cells on
    the same data (``env_dir`` is part of the key so a changed $MLRSNET_DATA_DIR is seen)."""
    return load_image_dataset(name, allow_mini=allow_mini, data_dir=data_dir)


@functools.lru_cache(maxsize=2)
def _cached_corpus(name: str, data_dir: str | None, env_dir: str | None,
                   vocab_size: int | None = None) -> Any:
    corpus = load_corpus(name, data_dir=data_dir)
    return corpus if vocab_size is None else cap_vocabulary(corpus, vocab_size)


def _key(data_dir: str | os.PathLike[str] | None) -> str | None:
    return None if data_dir is None else str(data_dir)


def balanced_holdout(labels: Tensor, holdout: int, num_classes: int,
                     seed: int = SPLIT_SEED) -> tuple[Tensor, Tensor]:
    """Indices ``(held, rest)``: ``holdout`` training images split as evenly over the classes
    as the count allows (the first ``holdout % C`` classes take one more), each class's share
    being its first images in a permutation seeded by :data:`SPLIT_SEED`; ``rest`` is every
    other index in that permutation's order.

    Follows ``build_dataset`` of the official image meta-training
    (``meta-train/image-classification/data_loader.py``: 1,000 meta images, 100 per CIFAR-10
    class, 10 per CIFAR-100 class, drawn per class after a shuffle).  Deliberate deviation: the
    official code re-shuffles between building the meta set and the training set, so its
    1,000 meta images are not the complement of its 49,000 training images (about 980 of them
    are trained on as well); here they are disjoint, as the paper describes, unless the
    profile's ``holdout_mode`` is ``"overlap"``: the training set is then ``rest`` of a second
    draw (``seed`` + 1), as the official code makes it.
    """
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shares = [holdout // num_classes + (1 if c < holdout % num_classes else 0) for c in range(num_classes)]
    ordered_labels = labels[order]
    take = torch.zeros(len(labels), dtype=torch.bool)
    for c, share in enumerate(shares):
        members = (ordered_labels == c).nonzero().flatten()
        if len(members) <= share and share:
            raise UserError(f"class {c} has {len(members)} training images, too few to hold out {share}")
        take[members[:share]] = True
    return order[take], order[~take]


def _detach(carry: Any) -> Any:
    if carry is None:
        return None
    if isinstance(carry, Tensor):
        return carry.detach()
    return tuple(_detach(c) for c in carry)


def _placed(carry: Any, device: torch.device) -> Any:
    """``carry`` (None, a tensor or nested tuples of them) on ``device``."""
    if carry is None:
        return None
    if isinstance(carry, Tensor):
        return carry.to(device)
    return tuple(_placed(c, device) for c in carry)


class ImageWorkload:
    kind = "image"
    metric = "acc"

    def __init__(self, task: Task, profile: Profile, device: torch.device,
                 data_dir: str | None = None) -> None:
        ds = _cached_images(task.dataset, profile.allow_mini_data, _key(data_dir), os.environ.get(DATA_ENV))
        n = len(ds.y_train)
        holdout = profile.holdout_count(n)
        if holdout >= n:
            raise UserError(f"task {task.name}: held-out size {holdout} is not smaller than the "
                            f"{n} training images of {ds.source}")
        held, rest = balanced_holdout(ds.y_train, holdout, len(ds.classes))
        if profile.holdout_mode == "overlap" and holdout:
            # an independent draw of the same size, as the official build_dataset makes it
            rest = balanced_holdout(ds.y_train, holdout, len(ds.classes), seed=SPLIT_SEED + 1)[1]
        if profile.train_size is not None:
            rest = rest[: profile.train_size]
        self.num_outputs = task.num_classes or len(ds.classes)
        self.device = device
        self.mean, self.std = NORMALIZATION[task.dataset]
        self.x_train = ds.x_train[rest].to(device)
        self.y_train = ds.y_train[rest].to(device)
        self.x_held = ds.x_train[held].to(device)
        self.y_held = ds.y_train[held].to(device)
        test_n = len(ds.y_test) if profile.test_size is None else min(profile.test_size, len(ds.y_test))
        self.x_test = ds.x_test[:test_n].to(device)
        self.y_test = ds.y_test[:test_n].to(device)
        self.augment = BatchAugment(self.mean, self.std) if task.augment else None
        self.batch_size = profile.batch_size
        self.eval_batch_size = profile.eval_batch_size
        n_train = len(self.y_train)
        self.steps_per_epoch = n_train // self.batch_size + (1 if n_train % self.batch_size > 1 else 0)
        self.data_source = str(ds.source)
        self.sizes = {"train": n_train, "val": holdout, "test": test_n}

    # -- training ---------------------------------------------------------------------------
    def start_epoch(self, model: nn.Module) -> Any:
        return None

    def train_batches(self, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch's batches: a permutation, then each batch's augmentation, drawn from
        ``generator`` in that order.  The draws of the whole epoch are made up front, in the
        same order, and copied to the device in one transfer (on a GPU, one copy an epoch
        instead of two a step); the numbers, and so the run, are those of drawing per batch."""
        n, bs = len(self.y_train), self.batch_size
        perm = torch.randperm(n, generator=generator)
        sizes = [len(perm[k * bs:(k + 1) * bs]) for k in range(self.steps_per_epoch)]
        draws = [self.augment.draw(size, generator) for size in sizes] if self.augment is not None else []
        packed = torch.cat([perm, *(d.flatten() for d in draws if d is not None)]).to(self.device)
        perm, flat = packed[:n], packed[n:]
        at = 0
        for k, size in enumerate(sizes):
            idx = perm[k * bs:k * bs + size]
            x = self.x_train[idx]
            if self.augment is not None and draws[k] is not None:
                xf = self.augment.apply(x, flat[at:at + 3 * size].view(3, size))
                at += 3 * size
            else:
                xf = to_float(x, self.mean, self.std)
            yield xf, self.y_train[idx]

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor], carry: Any,
             stats: BatchStats) -> tuple[Tensor, Any]:
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():  # kept on the device (float64: the same sums as on the host)
            stats.loss_sum += loss.detach().double() * len(y)
            stats.correct += (logits.argmax(1) == y).sum()
            stats.count += len(y)
        return loss, carry

    def summarize(self, stats: BatchStats) -> dict[str, float]:
        return {"loss": float(stats.loss_sum) / max(stats.count, 1),
                "acc": int(stats.correct) / max(stats.count, 1)}

    # -- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        x_all, y_all = (self.x_test, self.y_test) if check_split(split) == "test" else (self.x_held, self.y_held)
        if len(y_all) == 0:
            return {}
        was_training = model.training
        model.eval()
        loss_sum: Any = 0.0  # device tensors, read once at the end (float64: as on the host)
        correct: Any = 0
        for k in range(0, len(y_all), self.eval_batch_size):
            x = to_float(x_all[k:k + self.eval_batch_size], self.mean, self.std)
            y = y_all[k:k + self.eval_batch_size]
            logits = model(x)
            loss_sum = loss_sum + F.cross_entropy(logits, y, reduction="sum").double()
            correct = correct + (logits.argmax(1) == y).sum()
        model.train(was_training)
        return {"loss": float(loss_sum) / len(y_all), "acc": int(correct) / len(y_all)}

    @torch.no_grad()
    def train_loss_pass(self, model: nn.Module, generator: torch.Generator) -> float:
        """The mean training loss over one full pass of the training split, in eval mode,
        through the training augmentation (drawn from ``generator``): the mean of the batch
        means, as ``compute_loss_accuracy`` of the official image scripts computes MLR-SNet's
        starting loss (``meta-train/image-classification/utils.py``)."""
        was_training = model.training
        model.eval()
        means = [float(F.cross_entropy(model(x), y)) for x, y in self.train_batches(generator)]
        model.train(was_training)
        return sum(means) / max(len(means), 1)

    # -- held-out meta data -----------------------------------------------------------------
    def held_out(self, model: nn.Module, generator: torch.Generator) -> HeldOut | None:
        """The held-out images (None when the profile holds none out): shuffled batches
        through the training augmentation, and their loss at given parameters."""
        if len(self.y_held) == 0:
            return None
        return HeldOut(HeldOutImageBatches(self, generator), self._loss_at(model))

    def _loss_at(self, model: nn.Module) -> Any:
        def loss_at(params: Mapping[str, Tensor], batch: tuple[Tensor, Tensor]) -> Tensor:
            x, y = batch
            # Buffers are cloned so a look-ahead forward never moves the BN running stats.
            state = {**{n: b.clone() for n, b in model.named_buffers()}, **params}
            return F.cross_entropy(functional_call(model, state, (x,)), y)

        return loss_at


class TextWorkload:
    kind = "text"
    metric = "ppl"

    def __init__(self, task: Task, profile: Profile, device: torch.device,
                 data_dir: str | None = None) -> None:
        corpus = _cached_corpus(task.dataset, _key(data_dir), os.environ.get(DATA_ENV),
                                profile.vocab_size)
        self.num_outputs = len(corpus.vocab)
        self.device = device
        self.bptt = profile.bptt
        self.batch_size = profile.batch_size
        train = corpus.train if profile.train_tokens is None else corpus.train[: profile.train_tokens]
        cut = (lambda t: t) if profile.eval_tokens is None else (lambda t: t[: profile.eval_tokens])
        self.train_data = batchify(train, profile.batch_size).to(device)
        self.val_eval = batchify(cut(corpus.valid), profile.eval_batch_size).to(device)
        self.test_eval = batchify(cut(corpus.test), profile.eval_batch_size).to(device)
        self.val_meta = batchify(cut(corpus.valid), profile.batch_size).to(device)
        if len(self.train_data) < 2:
            raise UserError(f"task {task.name}: too few training tokens for batch size {profile.batch_size}")
        self.steps_per_epoch = math.ceil((len(self.train_data) - 1) / self.bptt)
        # the corpus folder: its files' digests make the run's data identity, as for images
        self.data_source = str(corpus.source) if corpus.source else f"{task.dataset} corpus"
        self.sizes = {"train": int(train.numel()), "val": int(self.val_eval.numel()),
                      "test": int(self.test_eval.numel())}

    def start_epoch(self, model: nn.Module) -> Any:
        return model.init_hidden(self.batch_size, device=self.device)

    def train_batches(self, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        return bptt_batches(self.train_data, self.bptt)

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor], carry: Any,
             stats: BatchStats) -> tuple[Tensor, Any]:
        x, y = batch
        logits, hidden = model(x, _detach(carry))
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        with torch.no_grad():  # kept on the device (float64: the same sums as on the host)
            stats.loss_sum += loss.detach().double() * y.numel()
            stats.count += y.numel()
        return loss, hidden

    def summarize(self, stats: BatchStats) -> dict[str, float]:
        loss = float(stats.loss_sum) / max(stats.count, 1)
        return {"loss": loss, "ppl": math.exp(min(loss, 50.0))}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        data = self.test_eval if check_split(split) == "test" else self.val_eval
        was_training = model.training
        model.eval()
        hidden = model.init_hidden(data.size(1), device=self.device)
        loss_sum: Any = 0.0  # a device tensor, read once at the end (float64: as on the host)
        count = 0
        for x, y in bptt_batches(data, self.bptt):
            logits, hidden = model(x, hidden)
            loss_sum = loss_sum + F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                                                  reduction="sum").double()
            count += y.numel()
        model.train(was_training)
        loss = float(loss_sum) / max(count, 1)
        return {"loss": loss, "ppl": math.exp(min(loss, 50.0))}

    @torch.no_grad()
    def train_loss_pass(self, model: nn.Module, generator: torch.Generator) -> float:
        """The mean training loss over one full pass of the training stream, in eval mode,
        the hidden state carried from window to window: the mean of the window means, as the
        official language-model script computes its initial training perplexity (its ``test``
        on the training split, ``meta-train/language-modeling/meta_train.py``); ``gamma``
        turns it into that perplexity.  ``generator`` is unused (no augmentation)."""
        was_training = model.training
        model.eval()
        hidden = model.init_hidden(self.batch_size, device=self.device)
        means = []
        for x, y in bptt_batches(self.train_data, self.bptt):
            logits, hidden = model(x, hidden)
            means.append(float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))))
        model.train(was_training)
        return sum(means) / max(len(means), 1)

    def held_out(self, model: nn.Module, generator: torch.Generator) -> HeldOut:
        """The validation split read as the official meta-training reads it
        (:class:`ValidationWindows`), and a window's loss at given parameters.  ``generator``
        is unused (the windows come in order)."""
        return HeldOut(ValidationWindows(self), self._loss_at(model))

    def _loss_at(self, model: nn.Module) -> Any:
        def loss_at(params: Mapping[str, Tensor], batch: MetaWindow) -> Tensor:
            start = batch.hidden if batch.hidden is not None else model.init_hidden(batch.x.size(1),
                                                                                      device=self.device)
            logits, hidden = functional_call(model, dict(params), (batch.x, start), strict=False)
            batch.source.hidden = _detach(hidden)  # the next meta window continues from here
            return F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch.y.reshape(-1))

        return loss_at


class HeldOutImageBatches:
    """Endless held-out batches as the official image meta-training draws them: shuffled
    passes over the held-out set in batches of the training batch size (the last batch of a
    pass is smaller), each batch through the training augmentation (a ``DataLoader`` over the
    meta set with ``shuffle=True`` and ``transform_train``, re-iterated when exhausted,
    ``meta-train/image-classification/meta_train.py``).

    The permutation and the position in it are :meth:`state_dict`; the loop checkpoints them
    beside the generator, so a resumed run draws the same batches.
    """

    def __init__(self, workload: ImageWorkload, generator: torch.Generator) -> None:
        self.workload, self.generator = workload, generator
        self.order: Tensor | None = None
        self.position = 0

    def __iter__(self) -> HeldOutImageBatches:
        return self

    @property
    def batches_per_pass(self) -> int:
        """Batches in one pass over the whole held-out set (the last one may be smaller)."""
        return math.ceil(len(self.workload.y_held) / self.workload.batch_size)

    def __next__(self) -> tuple[Tensor, Tensor]:
        wl = self.workload
        n = len(wl.y_held)
        if self.order is None or self.position >= n:
            self.order, self.position = torch.randperm(n, generator=self.generator), 0
        idx = self.order[self.position:self.position + wl.batch_size]
        self.position += len(idx)
        # the batch's indices and augmentation numbers travel together: one copy per batch
        draws = wl.augment.draw(len(idx), self.generator) if wl.augment is not None else None
        packed = (idx if draws is None else torch.cat([idx, draws.flatten()])).to(wl.device)
        idx = packed[:len(idx)]
        x = wl.x_held[idx]
        xf = wl.augment.apply(x, packed[len(idx):].view(3, len(idx))) if draws is not None else to_float(
            x, wl.mean, wl.std)
        return xf, wl.y_held[idx]

    def state_dict(self) -> dict[str, Any]:
        return {"order": None if self.order is None else self.order.clone(), "position": self.position}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.order = None if state["order"] is None else state["order"].clone()
        self.position = int(state["position"])


@dataclass
class MetaWindow:
    """One validation window for a meta step, with the hidden state it starts from."""

    x: Tensor
    y: Tensor
    hidden: Any  # None: zeros
    source: ValidationWindows


class ValidationWindows:
    """Endless meta windows as the official language-model meta-training reads them: the
    validation split (batchified with the training batch size) in order, ``bptt`` tokens per
    window, only whole windows, the hidden state carried from one meta forward to the next
    and reset to zeros when the reading wraps to the start
    (``meta-train/language-modeling/meta_train.py``).  The held-out loss stores the state each
    window ends with; position and state are :meth:`state_dict`."""

    def __init__(self, workload: TextWorkload) -> None:
        self.workload = workload
        self.windows = max(1, (len(workload.val_meta) - 1) // workload.bptt)
        self.position = 0
        self.hidden: Any = None

    def __iter__(self) -> ValidationWindows:
        return self

    @property
    def batches_per_pass(self) -> int:
        """Windows in one pass over the whole validation split."""
        return self.windows

    def __next__(self) -> MetaWindow:
        wl = self.workload
        if self.position >= self.windows:
            self.position = 0
        if self.position == 0:
            self.hidden = None  # the held-out loss starts from zeros
        i = self.position * wl.bptt
        t = min(wl.bptt, len(wl.val_meta) - 1 - i)
        self.position += 1
        return MetaWindow(wl.val_meta[i:i + t], wl.val_meta[i + 1:i + 1 + t], self.hidden, self)

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "hidden": _detach(self.hidden)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.position = int(state["position"])
        # the carried state lives with the model (an epoch checkpoint is read onto the CPU)
        self.hidden = _placed(state["hidden"], self.workload.device)


def make_workload(task: Task, profile: Profile, device: torch.device,
                  data_dir: str | None = None) -> ImageWorkload | TextWorkload:
    cls = {"image": ImageWorkload, "text": TextWorkload}[task.kind]
    return cls(task, profile, device, data_dir)
