"""LSTM language model: shapes, tied weights, hidden-state carry, initialisation."""

from __future__ import annotations

import pytest
import torch

from mlrsnet.errors import UserError
from mlrsnet.paper.models import build_model
from mlrsnet.paper.models.lstm_lm import LSTMLanguageModel

VOCAB, EMB, HIDDEN, LAYERS = 50, 16, 16, 2


def make(tie_weights: bool = False, dropout: float = 0.5) -> LSTMLanguageModel:
    torch.manual_seed(0)
    return LSTMLanguageModel(VOCAB, EMB, HIDDEN, LAYERS, dropout, tie_weights=tie_weights)


def test_forward_maps_time_major_tokens_to_vocabulary_logits_and_a_new_state():
    model = make()
    tokens = torch.randint(0, VOCAB, (7, 3))
    logits, (h, c) = model(tokens, model.init_hidden(3))
    assert logits.shape == (7, 3, VOCAB)
    assert h.shape == c.shape == (LAYERS, 3, HIDDEN)


def test_init_hidden_is_zero_and_follows_the_model_dtype():
    h, c = make().double().init_hidden(4)
    assert h.dtype == torch.float64
    assert h.shape == (LAYERS, 4, HIDDEN)
    assert not h.any() and not c.any()


def test_tied_decoder_shares_the_embedding_matrix():
    tied, untied = make(tie_weights=True), make(tie_weights=False)
    assert tied.decoder.weight is tied.encoder.weight
    saved = sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters())
    assert saved == VOCAB * HIDDEN
    tokens = torch.randint(0, VOCAB, (5, 2))
    logits, _ = tied(tokens, tied.init_hidden(2))
    logits.sum().backward()
    # One tensor collects the gradient from both uses.
    assert tied.encoder.weight.grad is tied.decoder.weight.grad


def test_tying_needs_equal_embedding_and_hidden_sizes():
    with pytest.raises(UserError, match="emb_size == hidden_size"):
        LSTMLanguageModel(VOCAB, 16, 32, 1, 0.0, tie_weights=True)


def test_hidden_state_carries_context_across_bptt_windows():
    model = make(dropout=0.0).eval()
    tokens = torch.randint(0, VOCAB, (10, 2))
    with torch.no_grad():
        whole, _ = model(tokens, model.init_hidden(2))
        first, state = model(tokens[:6], model.init_hidden(2))
        carried, _ = model(tokens[6:], state)
        fresh, _ = model(tokens[6:], model.init_hidden(2))
    torch.testing.assert_close(torch.cat([first, carried]), whole)
    assert not torch.allclose(fresh, whole[6:])


def test_dropout_applies_in_training_only():
    model = make(dropout=0.5)
    tokens = torch.randint(0, VOCAB, (4, 2))
    model.train()
    assert not torch.equal(model(tokens, model.init_hidden(2))[0], model(tokens, model.init_hidden(2))[0])
    model.eval()
    assert torch.equal(model(tokens, model.init_hidden(2))[0], model(tokens, model.init_hidden(2))[0])


def test_embedding_and_decoder_start_uniform_in_plus_minus_0_1_with_zero_bias():
    model = make()
    for weight in (model.encoder.weight, model.decoder.weight):
        assert weight.abs().max() <= 0.1
        assert weight.std() > 0.05  # spread over the range, not a constant
    assert not model.decoder.bias.any()


def test_registry_builds_the_language_model_with_num_classes_as_vocabulary():
    model = build_model(
        "lstm_lm",
        num_classes=VOCAB,
        emb_size=EMB,
        hidden_size=EMB,
        num_layers=3,
        dropout=0.5,
        tie_weights=True,
    )
    assert isinstance(model, LSTMLanguageModel)
    assert model.decoder.out_features == VOCAB and model.num_layers == 3
