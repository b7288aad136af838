"""How a task's loss enters MLR-SNet and how its sigmoid output becomes a learning rate.

MLR-SNet outputs a number in (0, 1); the LR used is ``gamma * output``, where ``gamma``
rescales to the task from a training loss ``L`` and the number of outputs ``C``::

    gamma = |sqrt(L) * ln(L * C) / C**0.25 / 4|

Images use the mean training loss for ``L`` and the number of classes for ``C``.  Language
models use the training perplexity ``exp(loss)`` for ``L`` and the vocabulary size for
``C``, and feed the network ``loss / ln(V)`` instead of the raw loss (so a uniform
predictor reads 1 whatever the vocabulary).  The absolute value matters once ``L * C < 1``
(a nearly perfect fit), where the formula turns negative; the official transfer script
takes it, and for meta-training it changes nothing because ``L0 * C > 1`` at
initialisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlrsnet.errors import UserError

#: Largest exponent used when turning a language-model loss into a perplexity (exp(700) is
#: still a finite double); a loss beyond it means training has diverged anyway.
_MAX_LOG_PPL = 700.0


def gamma_formula(loss_like: float, outputs: int) -> float:
    """``|sqrt(L) ln(L C) / C^0.25 / 4|`` for a (positive) loss or perplexity ``L``."""
    if not (math.isfinite(loss_like) and loss_like > 0):
        raise ValueError(f"gamma needs a positive finite training loss, got {loss_like!r}")
    return abs(math.sqrt(loss_like) * math.log(loss_like * outputs) / outputs ** 0.25 / 4.0)


@dataclass(frozen=True)
class TaskScale:
    """The two task-dependent maps: loss -> network input, loss -> gamma."""

    kind: str  # "image" | "text"
    outputs: int  # classes (images) or vocabulary size (text)

    def __post_init__(self) -> None:
        if self.kind not in ("image", "text"):
            raise ValueError(f"kind must be 'image' or 'text', not {self.kind!r}")
        if self.outputs < 2:
            raise ValueError(f"a task needs at least 2 classes / tokens, got {self.outputs}")

    @classmethod
    def of(cls, *, num_classes: int | None = None, vocab_size: int | None = None) -> TaskScale:
        """From exactly one of ``num_classes`` (images) or ``vocab_size`` (language models)."""
        if (num_classes is None) == (vocab_size is None):
            raise UserError("give exactly one of num_classes= (image classification) or "
                            "vocab_size= (language modelling)")
        if num_classes is not None:
            return cls("image", int(num_classes))
        return cls("text", int(vocab_size))  # type: ignore[arg-type]

    def net_input(self, loss: float) -> float:
        """What the LSTM reads for a mini-batch loss."""
        return loss / math.log(self.outputs) if self.kind == "text" else loss

    def gamma(self, loss: float) -> float:
        """``gamma`` from a (mean) training loss: the loss itself for images, its perplexity
        for language models."""
        loss_like = math.exp(min(loss, _MAX_LOG_PPL)) if self.kind == "text" else loss
        return gamma_formula(loss_like, self.outputs)
