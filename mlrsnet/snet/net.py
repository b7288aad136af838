"""The MLR-SNet network: a one-layer LSTM-style cell and a sigmoid head that map the
current training loss to a learning-rate multiplier in (0, 1).

The module layout (names and shapes of every parameter) is the one the authors' released
checkpoints use, so ``mlr_snet_{1,100,200}.pth`` load with ``load_state_dict`` and a
state dict saved here loads into the official class.  The module itself is *stateless*:
:meth:`MLRSNet.forward` takes the LSTM state and returns the next one.  Whoever drives it
across training steps (the scheduler, the meta-training method) owns that state, so it
can be checkpointed with the run without touching the released parameter layout.

Two gate conventions exist in the official code and a checkpoint loads silently into
either; they give very different schedules, so the convention is chosen by name and every
result records it:

``"meta-train"`` (default: the one that wrote the released checkpoints)
    gate blocks in the order input, forget, output, candidate; forget = sigmoid(pre - 1).
``"meta-test-script"`` (the released meta-test script)
    gate blocks in the order input, forget, candidate, output; forget = sigmoid(pre).
"""

from __future__ import annotations

import math
from os import PathLike
from typing import NamedTuple

import torch
from torch import Tensor, nn

from mlrsnet.errors import UserError

CELL_META_TRAIN = "meta-train"
CELL_META_TEST_SCRIPT = "meta-test-script"
CELL_CONVENTIONS = (CELL_META_TRAIN, CELL_META_TEST_SCRIPT)
DEFAULT_CELL = CELL_META_TRAIN

#: Hidden size of the released checkpoints (both official scripts build ``MLRSNet(1, 50)``).
HIDDEN_SIZE = 50
#: Width of the two-layer maps inside the cell ("bottleneck"), as each official script builds
#: it: the image meta-training cell uses ``hidden_size // 2`` = 25
#: (``meta-train/image-classification/module.py:275,281``; the released checkpoints have this
#: shape, 11,776 parameters), the language-model cell ``hidden_size`` = 50
#: (``meta-train/language-modeling/module.py:275,281``; 23,101 parameters).
BOTTLENECKS = {"image": HIDDEN_SIZE // 2, "text": HIDDEN_SIZE}

#: How a freshly built network is initialised (only meta-training starts from scratch; a
#: checkpoint overwrites everything).  Both are what official code actually runs:
#:
#: ``"torch-default"``  every tensor ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), i.e. PyTorch's
#:     ``nn.Linear`` default.  The official image meta-training cell
#:     (``meta-train/image-classification/module.py``, ``MLRSNetCell``) builds its layers as
#:     ``nn.Linear`` while its ``init_weights`` only matches ``MetaLinear`` modules, so it never
#:     fires and this default is what that script runs.
#: ``"uniform-0.1"``    the cell's weight matrices ~ U(-0.1, 0.1), biases and head as above:
#:     what ``init_weights`` intends, and what the language-model meta-training cell
#:     (``meta-train/language-modeling/module.py``, whose layers are ``MetaLinear``) does.
INIT_TORCH_DEFAULT = "torch-default"
INIT_UNIFORM = "uniform-0.1"
INITS = (INIT_TORCH_DEFAULT, INIT_UNIFORM)
#: Range of the ``"uniform-0.1"`` initialisation of the cell's weight matrices.
INIT_RANGE = 0.1


def check_init(init: str) -> str:
    """Return ``init`` if it names an initialisation, else raise a :class:`UserError`."""
    if init not in INITS:
        raise UserError(f"unknown MLR-SNet initialisation {init!r}; use one of: " + ", ".join(INITS))
    return init


def check_cell(cell: str) -> str:
    """Return ``cell`` if it names a gate convention, else raise a :class:`UserError`."""
    if cell not in CELL_CONVENTIONS:
        raise UserError(f"unknown MLR-SNet cell convention {cell!r}; use one of: "
                        + ", ".join(CELL_CONVENTIONS))
    return cell


class LSTMState(NamedTuple):
    """Hidden and cell state, each of shape (1, hidden_size)."""

    h: Tensor
    c: Tensor

    def detach(self) -> LSTMState:
        return LSTMState(self.h.detach(), self.c.detach())


def _two_layer(in_features: int, hidden_size: int, bottleneck: int) -> nn.Sequential:
    # Index 0 and 2 are the two Linear layers: the checkpoint keys are fc_*.0.* and fc_*.2.*.
    return nn.Sequential(nn.Linear(in_features, bottleneck), nn.ReLU(), nn.Linear(bottleneck, 4 * hidden_size))


class MLRSNetCell(nn.Module):
    """LSTM-style cell whose input-to-hidden and hidden-to-hidden maps are two-layer MLPs of
    width ``bottleneck`` (default ``hidden_size // 2``, the released checkpoints' shape)."""

    def __init__(self, input_size: int = 1, hidden_size: int = HIDDEN_SIZE,
                 cell: str = DEFAULT_CELL, bottleneck: int | None = None) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.bottleneck = hidden_size // 2 if bottleneck is None else int(bottleneck)
        self.cell = check_cell(cell)
        self.fc_i2h = _two_layer(input_size, hidden_size, self.bottleneck)
        self.fc_h2h = _two_layer(hidden_size, hidden_size, self.bottleneck)

    def forward(self, x: Tensor, state: LSTMState) -> LSTMState:
        pre = self.fc_i2h(x) + self.fc_h2h(state.h)
        a, b, c, d = pre.split(self.hidden_size, dim=-1)
        if self.cell == CELL_META_TRAIN:
            in_gate, forget_gate = torch.sigmoid(a), torch.sigmoid(b - 1.0)
            out_gate, candidate = torch.sigmoid(c), torch.tanh(d)
        else:
            in_gate, forget_gate = torch.sigmoid(a), torch.sigmoid(b)
            candidate, out_gate = torch.tanh(c), torch.sigmoid(d)
        c_new = forget_gate * state.c + in_gate * candidate
        return LSTMState(out_gate * torch.tanh(c_new), c_new)


class MLRSNet(nn.Module):
    """Loss in, LR multiplier in (0, 1) out; ``gamma`` (see :mod:`mlrsnet.snet.gamma`) scales it."""

    def __init__(self, hidden_size: int = HIDDEN_SIZE, cell: str = DEFAULT_CELL,
                 generator: torch.Generator | None = None, init: str = INIT_TORCH_DEFAULT,
                 bottleneck: int | None = None) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        # nn.Linear initialises itself from the global RNG; that draw is discarded (the
        # weights are re-drawn below), so restore the RNG and leave the run's stream intact.
        with torch.random.fork_rng(devices=[]):
            self.layer1 = MLRSNetCell(1, hidden_size, cell, bottleneck)
            self.layer3 = nn.Linear(hidden_size, 1)
        self.reset_parameters(generator, init)

    @property
    def cell(self) -> str:
        return self.layer1.cell

    @property
    def bottleneck(self) -> int:
        return self.layer1.bottleneck

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None,
                         init: str = INIT_TORCH_DEFAULT) -> None:
        """Draw every tensor as ``init`` says (see :data:`INITS`).  A private ``generator``
        keeps the global RNG (and hence the trained model's initialisation) untouched."""
        uniform_cell = check_init(init) == INIT_UNIFORM
        for name, p in self.named_parameters():
            fan_in = p.shape[1] if p.dim() == 2 else self._fan_in_of_bias(name)
            cell_weight = name.startswith("layer1.") and p.dim() == 2
            bound = INIT_RANGE if (uniform_cell and cell_weight) else 1 / math.sqrt(fan_in)
            p.uniform_(-bound, bound, generator=generator)

    def _fan_in_of_bias(self, bias_name: str) -> int:
        weight = self.get_parameter(bias_name.rsplit(".", 1)[0] + ".weight")
        return weight.shape[1]

    def initial_state(self) -> LSTMState:
        """Zero state (the first step of a run)."""
        ref = self.layer3.weight
        zeros = torch.zeros(1, self.hidden_size, dtype=ref.dtype, device=ref.device)
        return LSTMState(zeros, zeros.clone())

    def forward(self, x: Tensor | float, state: LSTMState) -> tuple[Tensor, LSTMState]:
        """One step.  ``x`` is the (scaled) training loss, any shape with one element.
        Returns the multiplier (shape (1, 1)) and the next state."""
        ref = self.layer3.weight
        x = torch.as_tensor(x, dtype=ref.dtype, device=ref.device).reshape(1, 1)
        new_state = self.layer1(x, state)
        return torch.sigmoid(self.layer3(new_state.h)), new_state

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def load_mlrsnet(path: str | PathLike[str], cell: str = DEFAULT_CELL) -> MLRSNet:
    """An :class:`MLRSNet` with the weights of a checkpoint file (official or ours), on CPU,
    its bottleneck width read from the file's shapes (25 for the released checkpoints and
    image meta-training, 50 for language-model meta-training: :data:`BOTTLENECKS`).

    The released files were saved from CUDA tensors; they are mapped to the CPU here.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"MLR-SNet checkpoint {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"MLR-SNet checkpoint {path} is a folder, not a checkpoint file") from None
    except Exception as exc:  # a corrupt or foreign file: say which one (torch's advice to
        # load with weights_only=False is wrong here: never unpickle an unknown file)
        kind = "not a PyTorch checkpoint" if not isinstance(exc, OSError) else f"unreadable ({exc})"
        raise UserError(f"cannot read MLR-SNet checkpoint {path}: {kind} (damaged, truncated or "
                        "another kind of file); replace it with the original checkpoint") from None
    try:
        if not isinstance(state, dict):
            raise RuntimeError(f"it holds a {type(state).__name__}, not a state dict")
        first = state.get("layer1.fc_i2h.0.weight")
        net = MLRSNet(cell=cell, bottleneck=int(first.shape[0]) if isinstance(first, Tensor) and first.dim() == 2
                      else None)
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"{path} is not an MLR-SNet checkpoint in the released layout: {exc}") from None
    return net
