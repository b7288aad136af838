"""Word-level LSTM language model (the PyTorch word-language-model recipe).

The paper's text tasks (PTB: 2- and 3-layer LSTMs with 512-dim embeddings and hidden
states, dropout 0.5; WikiText-2: 650/650 with tied weights) use this classic model:
embedding -> dropout -> multi-layer ``nn.LSTM`` (dropout between layers) -> dropout ->
linear decoder over the vocabulary.  With ``tie_weights`` the decoder reuses the embedding
matrix (Press & Wolf 2017), which needs ``emb_size == hidden_size``.  Embedding and decoder
weights start uniform in [-0.1, 0.1] and the decoder bias at zero, as in the recipe; the
LSTM keeps PyTorch's initialisation.

Tensors are time-major: tokens ``(T, B)``, logits ``(T, B, V)``; the hidden state is the
``(h, c)`` pair of ``nn.LSTM``, each ``(num_layers, B, hidden_size)``, which the training
loop carries (detached) from one BPTT window to the next.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mlrsnet.errors import UserError
from mlrsnet.paper.models._scaling import check_count, check_probability

INIT_RANGE = 0.1


class LSTMLanguageModel(nn.Module):
    """Embedding, stacked LSTM and (optionally tied) decoder, with dropout around the LSTM."""

    def __init__(
        self,
        vocab_size: int,
        emb_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        tie_weights: bool = False,
    ) -> None:
        super().__init__()
        check_count("vocab_size", vocab_size)
        check_count("emb_size", emb_size)
        check_count("hidden_size", hidden_size)
        check_count("num_layers", num_layers)
        dropout = check_probability("dropout", dropout)
        if tie_weights and emb_size != hidden_size:
            raise UserError(
                f"tie_weights needs emb_size == hidden_size (got {emb_size} and {hidden_size}): "
                "the decoder reuses the embedding matrix"
            )
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab_size, emb_size)
        self.rnn = nn.LSTM(emb_size, hidden_size, num_layers, dropout=dropout if num_layers > 1 else 0.0)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -INIT_RANGE, INIT_RANGE)
        nn.init.zeros_(self.decoder.bias)
        if not tie_weights:
            nn.init.uniform_(self.decoder.weight, -INIT_RANGE, INIT_RANGE)

    def forward(self, tokens: Tensor, hidden: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``tokens`` (T, B) -> logits (T, B, V) and the hidden state after the last step."""
        embedded = self.drop(self.encoder(tokens))
        output, hidden = self.rnn(embedded, hidden)
        return self.decoder(self.drop(output)), hidden

    def init_hidden(self, batch_size: int, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """Zero ``(h, c)`` for a new sequence, on ``device`` (default: the model's device)."""
        if device is None:
            device = self.encoder.weight.device
        shape = (self.num_layers, batch_size, self.hidden_size)
        dtype = self.encoder.weight.dtype
        return torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)


def lstm_lm(
    num_classes: int,
    *,
    emb_size: int,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    tie_weights: bool = False,
) -> LSTMLanguageModel:
    """Registry entry: ``num_classes`` is the vocabulary size."""
    return LSTMLanguageModel(num_classes, emb_size, hidden_size, num_layers, dropout, tie_weights)
