"""What a workload guarantees, checked on the real data subsets.

A benchmark of learning-rate schedules is only as valid as its data split: the images a
method learns its schedule from (the held-out meta/validation set) must be training images
the network never trains on, never test images, the same for every run seed; a look-ahead
loss on held-out data must not move BatchNorm's running statistics; a language model must
carry its hidden state from one BPTT window to the next without back-propagating into the
previous one; and a misspelt split name is an error, not a silent evaluation of something.

Every reference below is computed independently of the workload: images are identified by
the bytes of their rows in the ``.npz`` read with numpy, words by a tokenisation written
here from the corpus text files.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from support.augmented import source_index

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import BatchStats
from mlrsnet.harness.registry import get_task
from mlrsnet.paper.data import NORMALIZATION
from mlrsnet.paper.workloads import make_workload

CPU = torch.device("cpu")
IMAGE_TASK, TEXT_TASK = "resnet18-cifar10", "lstm2-ptb"


# -- independent references ---------------------------------------------------------------
def digest(image: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest()


def digests(images: torch.Tensor | np.ndarray) -> list[bytes]:
    array = images.cpu().numpy() if isinstance(images, torch.Tensor) else images
    return [digest(row) for row in array]


class NpzIndex:
    """Where every image of the prepared file sits: digest -> ("train" | "test", row)."""

    def __init__(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as npz:
            self.arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        self.where: dict[bytes, tuple[str, int]] = {}
        for split in ("train", "test"):
            for row, d in enumerate(digests(self.arrays[f"x_{split}"])):
                assert d not in self.where, "the subset itself holds a duplicate image"
                self.where[d] = (split, row)

    def locate(self, images: torch.Tensor) -> list[tuple[str, int] | None]:
        return [self.where.get(d) for d in digests(images)]

    def train_rows(self, images: torch.Tensor) -> list[int]:
        """Rows of ``x_train`` holding ``images``; fails if one is not a training image."""
        found = self.locate(images)
        not_train = [f for f in found if f is None or f[0] != "train"]
        assert not not_train, f"{len(not_train)} images are not training images of the file: {not_train[:3]}"
        return [row for _, row in found]


@functools.lru_cache(maxsize=1)
def _index(path: Path) -> NpzIndex:
    return NpzIndex(path)


@pytest.fixture
def cifar10(data_dir: Path) -> NpzIndex:
    return _index(data_dir / "cifar10-mini.npz")


def image_workload(data_dir: Path, profile: str = "smoke", **overrides):
    task = get_task(IMAGE_TASK)
    workload = make_workload(task, replace(task.profile(profile), **overrides), CPU, str(data_dir))
    assert Path(workload.data_source) == data_dir / "cifar10-mini.npz"
    return workload


def text_workload(data_dir: Path, **overrides):
    task = get_task(TEXT_TASK)
    return make_workload(task, replace(task.profile("smoke"), **overrides), CPU, str(data_dir))


def to_uint8(x: torch.Tensor, dataset: str = "cifar10") -> torch.Tensor:
    """Undo ``(x/255 - mean)/std`` of a normalised NCHW batch: the NHWC uint8 pixels."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATION[dataset])
    pixels = ((x * std + mean) * 255.0).round()
    assert pixels.min() >= 0 and pixels.max() <= 255
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def normalise(x_uint8_nhwc: np.ndarray, dataset: str = "cifar10") -> torch.Tensor:
    mean, std = (np.asarray(v, dtype=np.float32) for v in NORMALIZATION[dataset])
    x = (x_uint8_nhwc.astype(np.float32) / 255.0 - mean) / std
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def corpus_ids(data_dir: Path, name: str = "ptb") -> dict[str, np.ndarray]:
    """Each split as word ids: words of a line then ``<eos>``, ids in order of first
    appearance over train, valid, test (the tokenisation every published PTB number uses)."""
    vocab: dict[str, int] = {}
    out = {}
    for split in ("train", "valid", "test"):
        words = [w for line in (data_dir / name / f"{split}.txt").read_text().splitlines()
                 for w in [*line.split(), "<eos>"]]
        out[split] = np.array([vocab.setdefault(w, len(vocab)) for w in words], dtype=np.int64)
    return out


def occurrences(stream: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """Start positions of ``seq`` as a contiguous run inside ``stream``."""
    windows = sliding_window_view(stream, len(seq))
    return np.flatnonzero((windows == seq).all(axis=1))


# -- 1. held-out and training images are disjoint parts of the training split -------------
@pytest.mark.parametrize("profile", ["smoke", "mini"])
def test_held_out_images_are_training_images_never_trained_on(data_dir, cifar10, profile) -> None:
    workload = image_workload(data_dir, profile)
    prof = get_task(IMAGE_TASK).profile(profile)
    held = cifar10.train_rows(workload.x_held)
    trained = cifar10.train_rows(workload.x_train)

    assert len(held) == len(set(held)) == prof.holdout
    assert len(trained) == len(set(trained))
    assert set(held).isdisjoint(trained)
    n_file = len(cifar10.arrays["y_train"])
    if prof.train_size is None:  # nothing is thrown away: the two parts are the whole split
        assert sorted(held + trained) == list(range(n_file))
    else:
        assert len(trained) == prof.train_size
    # labels travel with their images
    assert np.array_equal(workload.y_held.numpy(), cifar10.arrays["y_train"][held])
    assert np.array_equal(workload.y_train.numpy(), cifar10.arrays["y_train"][trained])


@pytest.mark.parametrize("profile", ["smoke", "mini"])
def test_the_held_out_set_is_class_balanced_as_the_official_meta_set(data_dir, cifar10, profile) -> None:
    # The official image meta-training holds out 100 images per CIFAR-10 class; smaller
    # held-out sets keep the proportion (class counts differ by at most one).
    held = cifar10.train_rows(image_workload(data_dir, profile).x_held)
    counts = np.bincount(cifar10.arrays["y_train"][held], minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == len(held)
    if profile == "mini":
        assert counts.tolist() == [100] * 10


def test_evaluation_images_are_the_test_split_and_never_trained_on(data_dir, cifar10) -> None:
    workload = image_workload(data_dir, "smoke")
    n = get_task(IMAGE_TASK).profile("smoke").test_size
    assert cifar10.locate(workload.x_test) == [("test", row) for row in range(n)]
    assert np.array_equal(workload.y_test.numpy(), cifar10.arrays["y_test"][:n])


# -- 2. the split belongs to the task, not to the run seed ----------------------------------
def test_the_held_out_split_does_not_depend_on_the_global_seed_the_loop_sets(data_dir, cifar10) -> None:
    # The loop calls torch.manual_seed(run seed) right before task.build(); build the task
    # the same way for two seeds.
    task = get_task(IMAGE_TASK)
    built = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        built[seed] = task.build(task.profile("smoke"), CPU, str(data_dir))
    (w0, m0), (w1, m1) = built[0], built[1]
    # the seed did reach what the run draws: the two models start from different weights
    assert not torch.equal(next(m0.parameters()), next(m1.parameters()))
    assert cifar10.train_rows(w0.x_held) == cifar10.train_rows(w1.x_held)
    assert cifar10.train_rows(w0.x_train) == cifar10.train_rows(w1.x_train)


# -- 3. meta/validation batches come from the held-out set, never from the test split -------
def test_image_held_out_batches_are_augmented_held_out_images_in_shuffled_passes(data_dir, cifar10) -> None:
    # As the official meta loader: the held-out set, through the training augmentation,
    # in shuffled passes of the training batch size (each image once per pass).
    workload = image_workload(data_dir, "smoke")
    held_pixels = workload.x_held.numpy()
    labels = workload.y_held.numpy()
    batches = workload.held_out(None, torch.Generator().manual_seed(0)).batches
    n, bs = len(labels), workload.batch_size
    per_pass = -(-n // bs)
    passes = []
    for _ in range(2):
        rows: list[int] = []
        for _ in range(per_pass):
            x, y = next(batches)
            assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
            for image, label in zip(to_uint8(x).numpy(), y.numpy(), strict=True):
                same_class = np.flatnonzero(labels == label)
                k = source_index(image, held_pixels[same_class])
                assert k is not None, "a meta image is no crop/flip of a held-out image of its class"
                rows.append(int(same_class[k]))
        passes.append(rows)
    for rows in passes:
        assert sorted(rows) == list(range(n))  # every held-out image exactly once per pass
    assert passes[0] != passes[1]  # reshuffled
    identical = sum(np.array_equal(to_uint8(normalise(held_pixels[[r]])).numpy()[0], held_pixels[r]) for r in range(3))
    assert identical == 3  # the un-normalisation itself is exact


def test_text_meta_windows_come_from_the_validation_corpus_not_test(data_dir) -> None:
    workload = text_workload(data_dir)
    prof = get_task(TEXT_TASK).profile("smoke")
    ids = corpus_ids(data_dir)
    valid_part = ids["valid"][: prof.eval_tokens]
    batches = workload.held_out(None, torch.Generator().manual_seed(0)).batches
    for _ in range(20):
        window = next(batches)
        x, y = window.x, window.y
        assert x.shape[1] == prof.batch_size and 1 <= x.shape[0] <= prof.bptt
        assert torch.equal(x[1:], y[:-1])  # y is the next word of x
        for column in range(x.shape[1]):
            seq = torch.cat([x[:1, column], y[:, column]]).numpy()
            assert len(occurrences(valid_part, seq)) > 0, "a meta window is not validation text"
            assert len(occurrences(ids["test"], seq)) == 0, "a meta window is test text"


def test_text_meta_windows_are_read_in_order_carrying_the_hidden_state(data_dir) -> None:
    # As the official language-model meta-training: whole validation windows in order, each
    # meta forward starting from the state the previous one ended with, zeros after a wrap.
    task = get_task(TEXT_TASK)
    workload, model = task.build(task.profile("smoke"), CPU, str(data_dir))
    model.eval()  # no dropout: the reference forward below must be reproducible
    held_out = workload.held_out(model, torch.Generator().manual_seed(0))
    windows, loss_at = held_out.batches, held_out.loss
    params = dict(model.named_parameters())
    bptt, val = workload.bptt, workload.val_meta
    count = (len(val) - 1) // bptt
    hidden = None
    for k in range(count + 1):
        window = next(windows)
        i = (k % count) * bptt
        assert torch.equal(window.x, val[i:i + bptt]) and torch.equal(window.y, val[i + 1:i + 1 + bptt])
        if k % count == 0:
            assert window.hidden is None
            hidden = model.init_hidden(val.size(1))
        else:
            assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(window.hidden, hidden, strict=True))
        with torch.no_grad():
            _, hidden = model(window.x, hidden)
        loss_at(params, window)


# -- 4. a look-ahead loss on held-out data leaves BatchNorm's running statistics alone ------
def test_the_held_out_loss_leaves_batchnorm_buffers_untouched(data_dir) -> None:
    task = get_task(IMAGE_TASK)
    torch.manual_seed(0)
    workload, model = task.build(task.profile("smoke"), CPU, str(data_dir))
    model.train()
    buffers = dict(model.named_buffers())
    assert any(n.endswith("running_mean") for n in buffers) and any(
        n.endswith("num_batches_tracked") for n in buffers)
    before = {n: b.clone() for n, b in buffers.items()}
    held_out = workload.held_out(model, torch.Generator().manual_seed(0))
    x, y = next(held_out.batches)
    reference = copy.deepcopy(model)  # a plain train-mode forward on a copy: the expected loss

    params = dict(model.named_parameters())
    loss = held_out.loss(params, (x, y))
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    shifted = {n: p.detach() + 0.01 for n, p in params.items()}
    loss_shifted = held_out.loss(shifted, (x, y))

    for name, b in model.named_buffers():
        assert torch.equal(b, before[name]), f"the held-out loss moved buffer {name}"
    assert torch.allclose(loss, F.cross_entropy(reference(x), y), rtol=1e-5, atol=1e-6)
    assert all(g is not None for g in grads)  # differentiable w.r.t. the given parameters
    assert not torch.allclose(loss_shifted, loss)  # it does evaluate at the parameters given
    # the comparison can fail: the same forward done the ordinary way moves every BN buffer
    moved = [n for n, b in reference.named_buffers() if not torch.equal(b, before[n])]
    assert sorted(moved) == sorted(before)


# -- 5. the language model carries its hidden state across BPTT windows, detached ----------
def text_model(data_dir: Path):
    task = get_task(TEXT_TASK)
    torch.manual_seed(0)
    return task.build(task.profile("smoke"), CPU, str(data_dir))


def test_an_epoch_starts_from_a_zero_hidden_state_and_windows_follow_each_other(data_dir) -> None:
    workload, model = text_model(data_dir)
    prof = get_task(TEXT_TASK).profile("smoke")
    carry = workload.start_epoch(model)
    shape = (model.num_layers, prof.batch_size, model.hidden_size)
    assert [tuple(t.shape) for t in carry] == [shape, shape]
    assert all(not t.any() for t in carry)
    windows = list(workload.train_batches(torch.Generator().manual_seed(0)))
    assert len(windows) == workload.steps_per_epoch
    for (_, y1), (x2, _) in zip(windows, windows[1:], strict=False):
        assert torch.equal(y1[-1], x2[0])  # window k+1 continues where window k stopped
    # each column is a contiguous run of the training text
    train_ids = corpus_ids(data_dir)["train"][: prof.train_tokens]
    column = torch.cat([windows[0][0][:1, 1], *(y[:, 1] for _, y in windows)]).numpy()
    assert len(occurrences(train_ids, column)) == 1


def test_the_hidden_state_carries_into_the_next_window_without_its_graph(data_dir) -> None:
    workload, model = text_model(data_dir)
    batches = workload.train_batches(torch.Generator().manual_seed(0))
    (x1, y1), (x2, y2) = next(batches), next(batches)
    stats = BatchStats()

    model.train()
    loss1, h1 = workload.loss(model, (x1, y1), workload.start_epoch(model), stats)
    assert all(t.requires_grad for t in h1)  # the state leaves window 1 with its graph
    loss2, h2 = workload.loss(model, (x2, y2), h1, stats)
    # window 2's loss does not reach back into window 1's state ...
    assert torch.autograd.grad(loss2, list(h1), allow_unused=True) == (None, None)
    # ... so back-propagating window 1 (freeing its graph) and then window 2 works
    loss1.backward()
    loss2.backward()
    assert stats.count == y1.numel() + y2.numel()

    # The state that is carried is the true continuation (no dropout: model.eval()).
    model.eval()
    with torch.no_grad():
        zero = model.init_hidden(x1.size(1))
        _, h1 = workload.loss(model, (x1, y1), zero, BatchStats())
        carried, _ = workload.loss(model, (x2, y2), h1, BatchStats())
        restarted, _ = workload.loss(model, (x2, y2), model.init_hidden(x1.size(1)), BatchStats())
        # reference: both windows in one pass from a zero state, scored on window 2
        logits, (h_ref, c_ref) = model(torch.cat([x1, x2]), zero)
        _, (h1_ref, c1_ref) = model(x1, zero)
        expected = F.cross_entropy(logits[len(x1):].reshape(-1, logits.size(-1)), y2.reshape(-1))
    assert torch.allclose(h1[0], h1_ref, atol=1e-6) and torch.allclose(h1[1], c1_ref, atol=1e-6)
    assert torch.allclose(carried, expected, rtol=1e-5)
    assert not torch.allclose(carried, restarted, rtol=1e-5)  # the carried state matters


# -- 6. a split name is one of "val" and "test"; anything else is an error ------------------
@pytest.mark.parametrize("kind", ["image", "text"])
@pytest.mark.parametrize("typo", ["valid", "validation", "train", "Val", "test "])
def test_evaluating_an_unknown_split_is_an_error(data_dir, kind, typo) -> None:
    workload, model = text_model(data_dir) if kind == "text" else get_task(IMAGE_TASK).build(
        get_task(IMAGE_TASK).profile("smoke"), CPU, str(data_dir))
    with pytest.raises(UserError, match=repr(typo)):
        workload.evaluate(model, typo)


def test_val_is_the_held_out_set_and_test_the_test_split(data_dir, cifar10) -> None:
    task = get_task(IMAGE_TASK)
    torch.manual_seed(0)
    workload, model = task.build(task.profile("smoke"), CPU, str(data_dir))
    model.eval()
    held = cifar10.train_rows(workload.x_held)
    n_test = task.profile("smoke").test_size
    a = cifar10.arrays
    with torch.no_grad():
        expected = {
            "val": F.cross_entropy(model(normalise(a["x_train"][held])), torch.from_numpy(a["y_train"][held])),
            "test": F.cross_entropy(model(normalise(a["x_test"][:n_test])), torch.from_numpy(a["y_test"][:n_test])),
        }
    model.train()
    got = {split: workload.evaluate(model, split)["loss"] for split in ("val", "test")}
    assert got["val"] == pytest.approx(float(expected["val"]), rel=1e-5)
    assert got["test"] == pytest.approx(float(expected["test"]), rel=1e-5)
    assert got["val"] != pytest.approx(got["test"], rel=1e-3)
    assert model.training  # evaluation restores the mode it found


def test_text_val_is_the_validation_corpus_and_test_the_test_corpus(data_dir) -> None:
    workload, _ = text_model(data_dir)
    prof = get_task(TEXT_TASK).profile("smoke")
    ids = corpus_ids(data_dir)
    for data, split in ((workload.val_eval, "valid"), (workload.test_eval, "test")):
        stream = data.t().reshape(-1).numpy()  # the columns, one after the other
        assert np.array_equal(stream, ids[split][: len(stream)])
        assert len(stream) > prof.eval_tokens - prof.eval_batch_size


def test_a_capped_profile_trains_wikitext2_on_its_most_frequent_words(data_dir) -> None:
    task = get_task("lstm-wikitext2")
    prof = task.profile("smoke")
    assert prof.vocab_size == 10_000 and task.profile("paper").vocab_size is None
    torch.manual_seed(0)
    workload, model = task.build(prof, CPU, str(data_dir))
    assert workload.num_outputs == 10_000
    assert model(workload.train_data[:3], workload.start_epoch(model))[0].shape[-1] == 10_000
    # recomputed here from word counts over all of train: a kept word keeps its identity,
    # every other word reads as the corpus's own <unk>
    words = [w for line in (data_dir / "wikitext-2" / "train.txt").read_text().splitlines()
             for w in [*line.split(), "<eos>"]]
    counts: dict[str, int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    kept = set(sorted(counts, key=lambda w: -counts[w])[:10_000])  # stable: first appearance
    from mlrsnet.paper.data import cap_vocabulary, load_corpus

    vocab = cap_vocabulary(load_corpus("wikitext-2", data_dir), 10_000).vocab
    stream = workload.train_data.t().reshape(-1).tolist()
    assert [vocab[i] for i in stream] == [w if w in kept else "<unk>" for w in words[: len(stream)]]
