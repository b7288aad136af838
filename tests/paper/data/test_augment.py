"""Batched crop/flip augmentation: same output as the per-image torchvision recipe."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlrsnet.paper.data import NORMALIZATION, BatchAugment, load_image_dataset, to_float

MEAN, STD = NORMALIZATION["cifar10"]


@pytest.fixture(scope="module")
def cifar_batch(shared_data) -> torch.Tensor:
    return load_image_dataset("cifar10", allow_mini=True, data_dir=shared_data).x_train[:64]


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_output_is_normalised_float_nchw(cifar_batch):
    out = BatchAugment(MEAN, STD)(cifar_batch, _seeded(0))
    assert out.shape == (64, 3, 32, 32) and out.dtype == torch.float32
    lowest = (0 - torch.tensor(MEAN)) / torch.tensor(STD)
    highest = (1 - torch.tensor(MEAN)) / torch.tensor(STD)
    per_channel = out.transpose(0, 1).reshape(3, -1)
    assert (per_channel.min(1).values >= lowest - 1e-5).all()
    assert (per_channel.max(1).values <= highest + 1e-5).all()


def test_without_crop_and_flip_it_is_plain_normalisation(cifar_batch):
    out = BatchAugment(MEAN, STD, crop_padding=0, flip=False)(cifar_batch, _seeded(0))
    assert torch.equal(out, to_float(cifar_batch, MEAN, STD))


def test_same_seed_gives_the_same_batch_and_another_seed_does_not(cifar_batch):
    augment = BatchAugment(MEAN, STD)
    first, again = augment(cifar_batch, _seeded(7)), augment(cifar_batch, _seeded(7))
    assert torch.equal(first, again)
    assert not torch.equal(first, augment(cifar_batch, _seeded(8)))


def _match_crop(augmented: torch.Tensor, image: torch.Tensor, pad: int) -> list[tuple[int, int, bool]]:
    """All (dy, dx, flipped) whose manual crop of the zero-padded image equals ``augmented``."""
    padded = F.pad(image, (0, 0, pad, pad, pad, pad))  # HWC, black border
    h, w = image.shape[:2]
    matches = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[dy:dy + h, dx:dx + w]
            for flipped in (False, True):
                candidate = crop.flip(1) if flipped else crop
                if torch.equal(to_float(candidate[None], MEAN, STD)[0], augmented):
                    matches.append((dy, dx, flipped))
    return matches


def test_each_image_is_a_crop_of_its_zero_padded_self_with_its_own_offset(cifar_batch):
    out = BatchAugment(MEAN, STD, crop_padding=4)(cifar_batch, _seeded(3))
    found = []
    for augmented, image in zip(out[:24], cifar_batch[:24], strict=True):
        matches = _match_crop(augmented, image, pad=4)
        assert matches, "output is not any crop of the padded image"
        found.append(matches[0])
    assert len({(dy, dx) for dy, dx, _ in found}) > 5  # offsets drawn per image
    assert {flipped for _, _, flipped in found} == {False, True}


def test_flip_mirrors_the_width_axis(cifar_batch):
    out = BatchAugment(MEAN, STD, crop_padding=0, flip=True)(cifar_batch, _seeded(1))
    plain = to_float(cifar_batch, MEAN, STD)
    flipped = [torch.equal(o, p.flip(2)) for o, p in zip(out, plain, strict=True)]
    unflipped = [torch.equal(o, p) for o, p in zip(out, plain, strict=True)]
    assert all(f or u for f, u in zip(flipped, unflipped, strict=True))
    assert 16 < sum(flipped) < 48  # about half of 64


def test_offsets_are_uniform_over_all_positions_and_half_the_images_flip():
    # Each pixel of a 12x12 probe carries its own position, so the crop offset and flip of
    # every output can be read back off its centre pixels.
    h = w = 12
    probe = (1 + torch.arange(h * w)).view(1, h, w, 1).expand(9000, h, w, 3).to(torch.uint8)
    out = BatchAugment((0, 0, 0), (1, 1, 1), crop_padding=4)(probe, _seeded(11))
    pixels = (out[:, 0] * 255).round().long()  # back to the probe's values
    centre, right = pixels[:, 6, 6] - 1, pixels[:, 6, 7] - 1
    flipped = right < centre
    dy = centre // w - 2                       # out[6, .] = padded[dy + 6] = probe[dy + 2]
    dx = torch.where(flipped, centre % w - 1, centre % w - 2)
    assert abs(flipped.float().mean().item() - 0.5) < 0.03
    counts = torch.bincount(dy * 9 + dx, minlength=81)
    assert counts.numel() == 81 and counts.min() > 0.5 * 9000 / 81 and counts.max() < 1.5 * 9000 / 81


def test_rejects_float_batches():
    with pytest.raises(ValueError):
        BatchAugment(MEAN, STD)(torch.zeros(2, 32, 32, 3), _seeded(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cpu_generator_gives_the_same_augmentation_for_a_gpu_batch(cifar_batch):
    augment = BatchAugment(MEAN, STD)
    on_cpu = augment(cifar_batch, _seeded(5))
    on_gpu = augment(cifar_batch.cuda(), _seeded(5))
    assert on_gpu.device.type == "cuda"
    assert (on_gpu.cpu() - on_cpu).abs().max() < 1e-5
