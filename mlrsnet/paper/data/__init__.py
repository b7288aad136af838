"""Datasets: prepared ``.npz`` images, word-level corpora, batched augmentation, preparation.

The public names live here; the modules behind them each do one job:
``locate`` (where data is, and the error when it is not), ``images`` (load + normalise),
``augment`` (batched crop/flip on the training device), ``text`` (corpora, batchify,
BPTT windows), ``sources`` (official mirrors and digests), ``fetch`` (download and
verify), ``convert`` (official formats -> arrays), ``prepare`` and ``check`` (the
``mlrsnet-bench data`` commands).
"""

from mlrsnet.paper.data.augment import BatchAugment
from mlrsnet.paper.data.check import check
from mlrsnet.paper.data.fetch import ChecksumError, DownloadError
from mlrsnet.paper.data.images import NORMALIZATION, ImageDataset, load_image_dataset, to_float
from mlrsnet.paper.data.locate import (
    CORPORA,
    DATA_ENV,
    IMAGE_DATASETS,
    MissingDataError,
    data_dirs,
    find_corpus_dir,
    find_image_file,
)
from mlrsnet.paper.data.prepare import KNOWN, prepare
from mlrsnet.paper.data.text import Corpus, batchify, bptt_batches, cap_vocabulary, load_corpus

__all__ = [
    "BatchAugment", "ChecksumError", "CORPORA", "Corpus", "DATA_ENV", "DownloadError",
    "IMAGE_DATASETS", "ImageDataset", "KNOWN", "MissingDataError", "NORMALIZATION", "batchify",
    "bptt_batches", "check", "data_dirs", "find_corpus_dir", "find_image_file",
    "cap_vocabulary", "load_corpus", "load_image_dataset", "prepare", "to_float",
]
