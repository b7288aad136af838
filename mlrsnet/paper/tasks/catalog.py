"""The twelve task settings of the MLR-SNet supplement, each with smoke/mini/paper profiles.

Paper settings come from PAPER_FACTS.md (the supplement and the authors' code): images use
SGD with momentum 0, weight decay 5e-4, batch 128, 200 epochs and a held-out meta set of
1,000 training images; language models use batch 32, BPTT 35, 150 epochs, gradient
clipping 0.25, dropout 0.5, weight decay 5e-6; EfficientNet uses Nesterov momentum 0.9,
weight decay 1e-5, batch 256.  Where the supplement is silent (EfficientNet's and
WikiText-2's epoch counts) the choice is stated in the profile's ``notes``.

Two CPU profiles run on the real subsets in ``shared/data`` (5,000 training images, 1,000
of them held out for the methods that read held-out data; the full PTB/WikiText-2
vocabularies over a prefix of the corpus) with narrower models, sized from measured run
times on one core of a 2-core machine (``benchmarks/profile_floors.py``):

* ``mini``, the search profile: at most about 90 s a run, 10 epochs on 2,000 training images,
  clearly above chance; what ``tune`` searches at.  Text: 3 epochs of 100,000 tokens (about
  140 s): fewer tokens do not beat a unigram model of PTB, and a search there ranks LRs by
  noise (20,000 tokens x 10 epochs: test perplexity 900 against the unigram 639);
* ``cpu``, the figure profile: at most about 5 minutes a run, the same models for 12-20
  epochs on every training image (fewer for the slow depthwise models; text: 4 epochs of
  180,000 tokens), where the figures retrain the searches' best configurations.

The measured time per run and the accuracy or perplexity each profile reaches are in the
README ("What the CPU profiles learn"); most ``cpu`` settings stay below the floors the
issue set, and the README says by how much.
"""

from __future__ import annotations

from typing import Any

from mlrsnet.harness.contract import OptimSettings
from mlrsnet.paper.profiles import Profile
from mlrsnet.paper.tasks.spec import Task

IMAGE_SGD = OptimSettings(momentum=0.0, weight_decay=5e-4)
EFFICIENTNET_SGD = OptimSettings(momentum=0.9, weight_decay=1e-5, nesterov=True)
TEXT_SGD = OptimSettings(momentum=0.0, weight_decay=5e-6, clip_grad_norm=0.25)

R18_MINI = {"width": 0.125}
R18_SMOKE = {"width": 0.0625, "blocks_per_stage": (1, 1, 1, 1)}
NASNET_SMOKE = {"width": 0.0625, "normal_repeats": 1, "reduction_cells": 1}
#: Fig. 4 at paper scale: ImageNet weights (torchvision's), ImageNet's stride-2 stem, inputs
#: resized to 224x224 (:mod:`mlrsnet.paper.models.pretrained`).
FINE_TUNE = {"pretrained": "imagenet", "input_size": 224, "stem_stride": 2}


#: GPUs per trial (and per Ray cell) at ``paper`` for the small settings, which leave most of
#: a modern GPU idle with one run: a quarter for ShuffleNetV2, MobileNetV2 and the PTB LSTMs,
#: half for NASNet and ResNet-18 at batch 128 on 32x32 images; one GPU for the rest.  Trials
#: sharing a GPU train as fast as alone while it has idle capacity (measure yours with
#: benchmarks/perf/gpu_check.py) and change no result: the share is not part of a run.
QUARTER_GPU, HALF_GPU = 0.25, 0.5


def _paper_cpus(gpus: float) -> float:
    """CPUs per ``paper`` trial: 4 with a whole GPU, 2 with a share of one (augmentation
    runs on the GPU; the CPU only feeds it)."""
    return 4.0 if gpus >= 1 else 2.0


def _image_profiles(
    mini_model: dict[str, Any],
    smoke_model: dict[str, Any],
    *,
    paper_batch: int = 128,
    paper_epochs: int = 200,
    mini_epochs: int = 10,
    mini_holdout: int = 1000,
    mini_train: int | None = 2000,
    cpu_epochs: int = 12,
    cpu_train: int | None = None,
    paper_notes: str = "",
    paper_model: dict[str, Any] | None = None,
    mini_notes: str = "",
    cpu_notes: str = "",
    paper_gpus: float = 1.0,
) -> dict[str, Profile]:
    return {
        "smoke": Profile(
            epochs=2, batch_size=32, model_kwargs=smoke_model, train_size=128, holdout=64,
            test_size=64, eval_batch_size=64, tune_samples=2,
            notes="seconds; for tests",
        ),
        "mini": Profile(
            epochs=mini_epochs, batch_size=128, model_kwargs=mini_model, train_size=mini_train,
            holdout=mini_holdout, test_size=None, eval_batch_size=500, tune_samples=8,
            notes=mini_notes or "search profile: at most about 90 s a run on one core",
        ),
        "cpu": Profile(
            epochs=cpu_epochs, batch_size=128, model_kwargs=mini_model, train_size=cpu_train,
            holdout=mini_holdout, test_size=None, eval_batch_size=500, tune_samples=8,
            notes=cpu_notes or "figure profile: at most about 5 minutes a run on one core",
        ),
        "paper": Profile(
            epochs=paper_epochs, batch_size=paper_batch, scale="paper", model_kwargs=dict(paper_model or {}),
            train_size=None,
            holdout=1000, test_size=None, eval_batch_size=500, allow_mini_data=False,
            tune_samples=30, cpus_per_trial=_paper_cpus(paper_gpus), gpus_per_trial=paper_gpus,
            expects_gpu=True, requires_data=True, notes=paper_notes,
        ),
    }


def _text_profiles(paper_model: dict[str, Any], mini_model: dict[str, Any],
                   smoke_model: dict[str, Any], *, paper_notes: str = "", cpu_epochs: int = 4,
                   cpu_tokens: int = 180_000, cpu_model: dict[str, Any] | None = None,
                   mini_tokens: int = 100_000, mini_epochs: int = 3,
                   mini_notes: str = "", vocab_size: int | None = None,
                   paper_gpus: float = 1.0) -> dict[str, Profile]:
    """``vocab_size`` caps the vocabulary of every profile but ``paper`` (a CPU scale-down)."""
    words = ("full vocabulary" if vocab_size is None
             else f"the {vocab_size:,} most frequent words, the rest <unk>")
    return {
        "smoke": Profile(
            epochs=2, batch_size=4, bptt=10, model_kwargs=smoke_model, holdout=0,
            train_tokens=1_200, eval_tokens=400, eval_batch_size=10, tune_samples=2,
            vocab_size=vocab_size, notes="seconds; for tests",
        ),
        "mini": Profile(
            epochs=mini_epochs, batch_size=32, bptt=35, model_kwargs=mini_model, holdout=0,
            train_tokens=mini_tokens, eval_tokens=5_000, eval_batch_size=10, tune_samples=8,
            vocab_size=vocab_size, notes=mini_notes or (f"search profile: {words}; the first {mini_tokens // 1000}k "
                                 "training tokens, 5k of valid/test"),
        ),
        "cpu": Profile(
            epochs=cpu_epochs, batch_size=32, bptt=35, model_kwargs=cpu_model or mini_model,
            holdout=0, train_tokens=cpu_tokens, eval_tokens=10_000, eval_batch_size=10,
            tune_samples=8, vocab_size=vocab_size,
            notes=f"figure profile: {words}; the first {cpu_tokens // 1000}k training "
                  "tokens, 10k of valid/test",
        ),
        "paper": Profile(
            epochs=150, batch_size=32, scale="paper", bptt=35, model_kwargs=paper_model, holdout=0,
            eval_batch_size=10, allow_mini_data=False, tune_samples=30,
            cpus_per_trial=_paper_cpus(paper_gpus), gpus_per_trial=paper_gpus, expects_gpu=True,
            requires_data=True, notes=paper_notes,
        ),
    }


def _lstm(emb: int, hidden: int, layers: int, dropout: float, tie: bool = False) -> dict[str, Any]:
    return {"emb_size": emb, "hidden_size": hidden, "num_layers": layers, "dropout": dropout,
            "tie_weights": tie}


def build_catalog() -> dict[str, Task]:
    tasks = [
        Task("resnet18-cifar10", "ResNet-18 on CIFAR-10", "image", "resnet18", "cifar10",
             IMAGE_SGD, _image_profiles(R18_MINI, R18_SMOKE, paper_gpus=HALF_GPU),
             num_classes=10, paper_params=11_173_962, table1=True),
        Task("wrn28_10-cifar100", "WideResNet-28-10 on CIFAR-100", "image", "wrn28_10",
             "cifar100", IMAGE_SGD,
             _image_profiles({"depth": 10, "widen_factor": 1, "width": 0.5},
                             {"depth": 10, "widen_factor": 1, "width": 0.25}, cpu_epochs=20,
                             cpu_notes="figure profile: 20 epochs (the model is cheap; 100 classes "
                                       "need them)"),
             num_classes=100, paper_params=36_536_884, table1=True),
        Task("lstm2-ptb", "2-layer LSTM on Penn Treebank", "text", "lstm_lm", "ptb", TEXT_SGD,
             _text_profiles(_lstm(512, 512, 2, 0.5), _lstm(128, 128, 2, 0.5),
                            _lstm(16, 16, 2, 0.5), paper_gpus=QUARTER_GPU),
             table1=True, base_lr=20.0),
        Task("lstm3-ptb", "3-layer LSTM on Penn Treebank", "text", "lstm_lm", "ptb", TEXT_SGD,
             _text_profiles(_lstm(512, 512, 3, 0.5), _lstm(128, 128, 3, 0.5),
                            _lstm(16, 16, 3, 0.5), paper_gpus=QUARTER_GPU),
             table1=True, transfer_target=True, base_lr=20.0),
        Task("shufflenetv2-cifar10", "ShuffleNetV2 on CIFAR-10", "image", "shufflenetv2",
             "cifar10", IMAGE_SGD,
             _image_profiles({"width": 0.25, "depth": 0.34}, {"width": 0.1, "depth": 0.1},
                             cpu_epochs=20, cpu_notes="figure profile: 20 epochs (12 took 162 s)",
                             paper_gpus=QUARTER_GPU),
             num_classes=10, paper_params=1_268_646, table1=True, transfer_target=True),
        Task("mobilenetv2-cifar10", "MobileNetV2 on CIFAR-10", "image", "mobilenetv2",
             "cifar10", IMAGE_SGD,
             _image_profiles({"width": 0.25, "depth": 0.34}, {"width": 0.1, "depth": 0.2},
                             mini_train=1500, cpu_train=3500,
                             mini_notes="search profile: 1,500 train images (depthwise convs are "
                                        "slow on CPU)",
                             cpu_notes="figure profile: 3,500 train images (depthwise convs)",
                             paper_gpus=QUARTER_GPU),
             num_classes=10, paper_params=2_254_090, table1=True, transfer_target=True),
        Task("nasnet-cifar10", "NASNet-A on CIFAR-10", "image", "nasnet", "cifar10", IMAGE_SGD,
             _image_profiles({"width": 0.0625, "normal_repeats": 1}, NASNET_SMOKE,
                             mini_train=1000, cpu_train=2500,
                             mini_notes="search profile: 1,000 train images (separable convs are "
                                        "slow on CPU)",
                             cpu_notes="figure profile: 2,500 train images (separable convs)",
                             paper_gpus=HALF_GPU),
             num_classes=10, paper_params=5_126_494, table1=True, transfer_target=True),
        Task("resnet18-svhn", "ResNet-18 on SVHN", "image", "resnet18", "svhn", IMAGE_SGD,
             _image_profiles(R18_MINI, R18_SMOKE, paper_gpus=HALF_GPU),
             num_classes=10, augment=False, paper_params=11_173_962, table1=True,
             transfer_target=True),
        Task("resnet18-tinyimagenet", "ResNet-18 on TinyImageNet", "image", "resnet18",
             "tinyimagenet", IMAGE_SGD,
             _image_profiles({**R18_MINI, "stem_stride": 2}, R18_SMOKE, mini_holdout=1000, cpu_epochs=20,
                             mini_notes="search profile: 64x64 inputs halved by a stride-2 stem; "
                                        "2,000 train / 1,000 held out",
                             cpu_notes="figure profile: 64x64 inputs halved by a stride-2 stem; "
                                       "all 4,000 train (3,000 for methods that hold 1,000 out), "
                                       "20 epochs"),
             num_classes=200, table1=True, transfer_target=True),
        Task("efficientnet_b0-cifar100", "EfficientNet-B0 on CIFAR-100", "image",
             "efficientnet_b0", "cifar100", EFFICIENTNET_SGD,
             _image_profiles({"width": 0.25, "depth": 0.34, "stem_stride": 2},
                             {"width": 0.1, "depth": 0.1, "stem_stride": 2}, paper_batch=256,
                             cpu_epochs=16, cpu_notes="figure profile: 16 epochs (12 took 183 s); "
                                                      "from scratch on 32x32 images",
                             paper_model=FINE_TUNE,
                             paper_notes="fine-tuned from ImageNet weights at 224x224 (Kornblith et al. "
                                         "2019's protocol, which the supplement cites); epochs not "
                                         "given by the supplement: 200 assumed"),
             num_classes=100, paper_params=4_135_648, transfer_target=True),
        Task("efficientnet_b7-cifar100", "EfficientNet-B7 on CIFAR-100", "image",
             "efficientnet_b7", "cifar100", EFFICIENTNET_SGD,
             _image_profiles({"width": 0.125, "depth": 0.2, "stem_stride": 2},
                             {"width": 0.05, "depth": 0.05, "stem_stride": 2}, paper_batch=256,
                             mini_train=1000, cpu_train=2500, cpu_epochs=20,
                             mini_notes="search profile: 1,000 train images (the deepest model)",
                             cpu_notes="figure profile: 2,500 train images (the deepest model), "
                                       "20 epochs; from scratch on 32x32 images",
                             paper_model=FINE_TUNE,
                             paper_notes="fine-tuned from ImageNet weights at 224x224 (Kornblith et al. "
                                         "2019's protocol, which the supplement cites); epochs not "
                                         "given by the supplement: 200 assumed"),
             num_classes=100, paper_params=64_043_060, transfer_target=True),
        Task("lstm-wikitext2", "Tied 650-unit LSTM on WikiText-2", "text", "lstm_lm",
             "wikitext-2", TEXT_SGD,
             _text_profiles(_lstm(650, 650, 2, 0.5, tie=True), _lstm(128, 128, 2, 0.5, tie=True),
                            _lstm(16, 16, 2, 0.5, tie=True),
                            paper_notes="epochs/batch as PTB (150, 32): the supplement gives "
                                        "only the model",
                            mini_tokens=60_000, cpu_tokens=180_000, cpu_epochs=4,
                            # the 33k-word softmax is most of a CPU step: with all of it a
                            # 5-minute run saw 214 steps and ended above the unigram model
                            vocab_size=10_000),
             transfer_target=True, base_lr=20.0),
    ]
    return {t.name: t for t in tasks}
