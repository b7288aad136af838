"""What a task setting is: a model, a dataset, the optimiser facts, and its profiles.

A task is the paper's unit of comparison ("ResNet-18 on CIFAR-10").  Profiles scale the
same task from seconds (``smoke``) through a CPU reproduction on real subsets (``mini``)
to the paper's exact settings (``paper``); methods and schedules see only the profile's
epoch count, so epoch-based schedules scale with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import OptimSettings, Workload
from mlrsnet.paper.profiles import Profile


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    kind: str  # "image" | "text"
    arch: str
    dataset: str
    optim: OptimSettings
    profiles: dict[str, Profile]
    num_classes: int | None = None  # text: the vocabulary size comes from the corpus
    augment: bool = True
    paper_params: int | None = None
    #: Part of the supplement's Table 1 (MultiStep tuned by BayesOpt/BOHB).
    table1: bool = False
    #: Meta-test setting of Fig. 2/5 (MLR-SNet transferred from CIFAR-10).
    transfer_target: bool = False
    #: Default initial LR for a fixed schedule when a spec does not give one.
    base_lr: float = 0.1

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise UserError(
                f"task {self.name!r} has no profile {name!r}; profiles: {', '.join(self.profiles)}"
            )
        return self.profiles[name]

    def references(self, profile: str, data_dir: str | None = None) -> dict[str, Any]:
        """What a report draws beside this task's curves at ``profile``: its title and test
        metric, chance accuracy (images: one over the classes) or the unigram perplexity of
        the corpus (train-split word frequencies on the whole test split, over the
        vocabulary the profile keeps; None when the corpus is not found)."""
        out: dict[str, Any] = {"title": self.title, "kind": self.kind,
                               "metric": "acc" if self.kind == "image" else "ppl"}
        if self.kind == "image":
            return {**out, "classes": self.num_classes,
                    "chance": 1.0 / self.num_classes if self.num_classes else None}
        from mlrsnet.paper.data import cap_vocabulary, load_corpus
        from mlrsnet.paper.data.text import unigram_perplexity

        cap = self.profile(profile).vocab_size
        try:
            corpus = load_corpus(self.dataset, data_dir)
        except UserError:
            return {**out, "unigram_ppl": None, "vocab_size": cap}
        if cap is not None:
            corpus = cap_vocabulary(corpus, cap)
        return {**out, "vocab_size": corpus.vocab_size,
                "unigram_ppl": unigram_perplexity(corpus.train, corpus.test, corpus.vocab_size)}

    def model_kwargs(self, profile: str) -> dict[str, Any]:
        return dict(self.profile(profile).model_kwargs)

    def build(self, profile: Profile, device: torch.device,
              data_dir: str | None = None) -> tuple[Workload, nn.Module]:
        """The workload, then the model (drawn from torch's global RNG, on ``device``)."""
        from mlrsnet.paper.models import build_model
        from mlrsnet.paper.workloads import make_workload

        workload = make_workload(self, profile, device, data_dir)
        kwargs = dict(profile.model_kwargs)
        source, size = kwargs.pop("pretrained", None), kwargs.pop("input_size", None)
        model = build_model(self.arch, num_classes=workload.num_outputs, **kwargs)
        if source is not None:  # fine-tuning from ImageNet weights (Fig. 4 at paper scale)
            from mlrsnet.paper.data import NORMALIZATION
            from mlrsnet.paper.models.pretrained import (
                ImageNetInput,
                Pretrained,
                load_pretrained,
                weights_folder,
            )

            model = load_pretrained(model, self.arch, source, weights_folder(data_dir))
            mean, std = NORMALIZATION[self.dataset]
            model = Pretrained(model, ImageNetInput(mean, std, size or 224))
        elif size is not None:
            raise UserError(f"task {self.name}: input_size is for pretrained models (set pretrained too)")
        return workload, model.to(device)
