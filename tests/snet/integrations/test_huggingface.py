"""The Hugging Face adapter, against the real ``transformers.Trainer`` (tiny models built from
a config, a few steps, CPU).

Reference: the Trainer's own per-step log (``logging_steps=1``): its ``loss`` (the step's mean
training loss, over the micro-batches of gradient accumulation) fed to a plain
MLRSNetScheduler gives the LRs, and its ``learning_rate`` (the LR of the step just taken) must
be those LRs.  A classifier (micro-batch means) and a causal LM (the Trainer normalises by the
step's token count, ``num_items_in_batch``).  The scheduler's state goes into the Trainer's
checkpoints (``scheduler.pt``) and ``resume_from_checkpoint`` continues the schedule exactly.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import transformers
from transformers import Trainer, TrainingArguments

from mlrsnet.snet.integrations.huggingface import MLRSNetCallback
from mlrsnet.snet.scheduler import NO_LOSS_ERROR, MLRSNetScheduler

transformers.logging.set_verbosity_error()


class Pairs(torch.utils.data.Dataset):
    """Token sequences labelled by whether token 1 occurs more often than token 2."""

    def __init__(self, n: int = 64, length: int = 8, causal_lm: bool = False) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 30, (n, length), generator=g)
        self.causal_lm = causal_lm

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = self.ids[i]
        label = ids if self.causal_lm else ((ids == 1).sum() > (ids == 2).sum()).long()
        return {"input_ids": ids, "labels": label}


def classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2)
    return transformers.BertForSequenceClassification(config)


def causal_lm() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=30, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    return transformers.GPT2LMHeadModel(config)


def arguments(out: Path, **kw) -> TrainingArguments:
    kw = {"max_steps": 12, "per_device_train_batch_size": 8, "logging_steps": 1, "save_strategy": "no",
          "report_to": [], "use_cpu": True, "disable_tqdm": True, "seed": 0, **kw}
    return TrainingArguments(output_dir=str(out), **kw)


def train(out: Path, model_fn=classifier, resume: str | None = None, **kw) -> tuple[MLRSNetCallback, list[dict]]:
    model = model_fn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    outputs = 30 if model_fn is causal_lm else 2
    mlrsnet = MLRSNetCallback(optimizer, "ours", **({"vocab_size": outputs} if model_fn is causal_lm
                                                    else {"num_classes": outputs}))
    trainer = Trainer(model=model, args=arguments(out, **kw), train_dataset=Pairs(causal_lm=model_fn is causal_lm),
                      optimizers=(optimizer, mlrsnet.lr_scheduler), callbacks=[mlrsnet])
    trainer.train(resume_from_checkpoint=resume)
    return mlrsnet, [h for h in trainer.state.log_history if "loss" in h]


def reference_lrs(losses: list[float], **kw) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    sched = MLRSNetScheduler(opt, "ours", **kw)
    out = []
    for loss in losses:
        sched.step(loss)
        out.append(sched.get_last_lr()[0])
    return out


@pytest.mark.parametrize("model_fn,task", [(classifier, {"num_classes": 2}), (causal_lm, {"vocab_size": 30})])
@pytest.mark.parametrize("accumulate", [1, 2])
def test_the_lr_of_each_step_comes_from_the_loss_the_trainer_logs_for_it(tmp_path: Path, model_fn, task, accumulate) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("error", module="mlrsnet")  # no wrong-order or other warning of ours
        mlrsnet, log = train(tmp_path, model_fn, gradient_accumulation_steps=accumulate)
    assert [h["step"] for h in log] == list(range(1, 13))
    expected = reference_lrs([h["loss"] for h in log], total_steps=12, **task)
    assert [h["learning_rate"] for h in log] == pytest.approx(expected, rel=1e-5)
    assert mlrsnet.scheduler.last_epoch == 11 and mlrsnet.scheduler.stage_starts == (0, 4, 8)


def test_the_schedule_is_in_the_trainers_checkpoints_and_resumes_exactly(tmp_path: Path) -> None:
    _, straight = train(tmp_path / "straight")
    _, first = train(tmp_path / "first", save_strategy="steps", save_steps=5)
    saved = torch.load(tmp_path / "first" / "checkpoint-5" / "scheduler.pt", weights_only=True)
    assert saved["last_epoch"] == 4 and saved["checkpoints"] == "ours-mini"
    mlrsnet, resumed = train(tmp_path / "first", resume=str(tmp_path / "first" / "checkpoint-5"))
    resumed = [h for h in resumed if h["step"] > 5]  # the log restored from the checkpoint, then the new steps
    assert [h["step"] for h in resumed] == list(range(6, 13))
    assert [h["learning_rate"] for h in resumed] == [h["learning_rate"] for h in straight[5:]]
    assert [h["learning_rate"] for h in first] == [h["learning_rate"] for h in straight]


def test_mlrsnetscheduler_as_the_trainers_scheduler_is_refused_naming_the_callback(tmp_path: Path) -> None:
    model = classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    sched = MLRSNetScheduler(optimizer, "ours", num_classes=2, total_steps=12)
    trainer = Trainer(model=model, args=arguments(tmp_path), train_dataset=Pairs(), optimizers=(optimizer, sched))
    with pytest.raises(TypeError) as refused:
        trainer.train()
    assert str(refused.value) == NO_LOSS_ERROR and "huggingface.MLRSNetCallback" in NO_LOSS_ERROR


def test_the_callback_without_its_scheduler_or_the_scheduler_without_its_callback_is_refused(tmp_path: Path) -> None:
    model = classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    mlrsnet = MLRSNetCallback(optimizer, "ours", num_classes=2)
    trainer = Trainer(model=model, args=arguments(tmp_path), train_dataset=Pairs(), optimizers=(optimizer, None),
                      callbacks=[mlrsnet])
    with pytest.raises(ValueError, match=r"optimizers=\(optimizer, mlrsnet.lr_scheduler\)"):
        trainer.train()
    mlrsnet = MLRSNetCallback(optimizer, "ours", num_classes=2)
    trainer = Trainer(model=model, args=arguments(tmp_path), train_dataset=Pairs(),
                      optimizers=(optimizer, mlrsnet.lr_scheduler))
    with pytest.raises(RuntimeError, match=r"callbacks=\[mlrsnet\]"):
        trainer.train()
