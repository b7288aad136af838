"""Word-level corpora and the (T, B) / BPTT batching recipe."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from mlrsnet.errors import UserError
from mlrsnet.paper.data import Corpus, batchify, bptt_batches, cap_vocabulary, load_corpus
from mlrsnet.paper.data.text import read_tokens, unigram_perplexity


def _corpus(tmp_path, train: str, valid: str = "a\n", test: str = "b\n") -> Corpus:
    folder = tmp_path / "toy"
    folder.mkdir(parents=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{split}.txt").write_bytes(text.encode())
    return load_corpus("toy", data_dir=tmp_path)


def test_ptb_has_10000_types_and_the_published_token_counts(shared_data):
    corpus = load_corpus("ptb", data_dir=shared_data)
    assert corpus.vocab_size == 10_000
    assert (corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()) == (929_589, 73_760, 82_430)
    assert corpus.train.dtype == torch.int64
    assert int(corpus.train.max()) == 9_999  # valid/test add no words


def test_wikitext2_has_33278_types(shared_data):
    corpus = load_corpus("wikitext-2", data_dir=shared_data)
    assert corpus.vocab_size == 33_278
    assert (corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()) == (2_088_628, 217_646, 245_569)
    assert corpus.vocab[:4] == ["<eos>", "=", "Valkyria", "Chronicles"]  # file starts " = Valkyria ..."


def test_a_vocabulary_cap_keeps_the_most_frequent_words_and_adds_unk(tmp_path):
    # counts: a 3, b 2, then c, d, <eos> once each (ties: first appearance wins)
    corpus = _corpus(tmp_path, "a b a c a b d\n", valid="d a\n", test="c e\n")
    capped = cap_vocabulary(corpus, 4)
    assert capped.vocab == ["a", "b", "c", "<unk>"]
    words = [capped.vocab[i] for i in capped.train]
    assert words == ["a", "b", "a", "c", "a", "b", "<unk>", "<unk>"]
    assert [capped.vocab[i] for i in capped.valid] == ["<unk>", "a", "<unk>"]
    assert [capped.vocab[i] for i in capped.test] == ["c", "<unk>", "<unk>"]


def test_a_vocabulary_cap_reuses_the_corpus_unk_and_leaves_a_small_vocabulary_alone(tmp_path):
    corpus = _corpus(tmp_path, "<unk> x <unk> y <unk> x\n")  # <unk> 3, x 2, y 1, <eos> 1
    capped = cap_vocabulary(corpus, 2)
    assert capped.vocab == ["<unk>", "x"]
    assert capped.train.tolist() == [0, 1, 0, 0, 0, 1, 0]
    assert cap_vocabulary(corpus, corpus.vocab_size) is corpus
    with pytest.raises(UserError, match="at least 2"):
        cap_vocabulary(corpus, 1)


def test_wikitext2_capped_at_10000_words_reads_the_rest_as_its_unk(shared_data):
    corpus = load_corpus("wikitext-2", data_dir=shared_data)
    capped = cap_vocabulary(corpus, 10_000)
    assert capped.vocab_size == 10_000 and "<unk>" in capped.vocab
    assert capped.train.numel() == corpus.train.numel() and int(capped.train.max()) < 10_000
    counts = Counter(read_tokens(shared_data / "wikitext-2" / "train.txt"))
    kept = {w for w, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:10_000]}
    assert "<unk>" in kept  # WikiText-2's own <unk> is among its most frequent words
    expected_unk = sum(n for w, n in counts.items() if w not in kept) + counts["<unk>"]
    assert int((capped.train == capped.vocab.index("<unk>")).sum()) == expected_unk


def test_vocab_is_in_order_of_first_appearance_with_eos_per_line(tmp_path):
    corpus = _corpus(tmp_path, "the cat\n\nsat  the\tmat\n")
    assert corpus.vocab[:5] == ["the", "cat", "<eos>", "sat", "mat"]
    words = [corpus.vocab[i] for i in corpus.train]
    assert words == ["the", "cat", "<eos>", "<eos>", "sat", "the", "mat", "<eos>"]


def test_words_seen_only_outside_train_get_new_ids_after_train(tmp_path):
    corpus = _corpus(tmp_path, "x y\n", valid="y z\n", test="w\n")
    assert corpus.vocab == ["x", "y", "<eos>", "z", "w"]
    assert corpus.valid.tolist() == [1, 3, 2] and corpus.test.tolist() == [4, 2]


def test_a_last_line_without_newline_and_crlf_endings_tokenise_like_lf(tmp_path):
    lf = _corpus(tmp_path / "lf", "a b\nc\n")
    crlf = _corpus(tmp_path / "crlf", "a b\r\nc")
    assert lf.vocab == crlf.vocab and torch.equal(lf.train, crlf.train)


def test_batchify_makes_contiguous_columns_and_drops_the_remainder():
    data = batchify(torch.arange(11), 3)
    assert data.shape == (3, 3) and data.is_contiguous()
    assert data[:, 0].tolist() == [0, 1, 2] and data[:, 2].tolist() == [6, 7, 8]


def test_batchify_on_ptb_gives_the_reference_shape(shared_data):
    corpus = load_corpus("ptb", data_dir=shared_data)
    data = batchify(corpus.train, 20)
    assert data.shape == (929_589 // 20, 20)
    assert torch.equal(data[:, 1], corpus.train[46_479:2 * 46_479])


def test_bptt_targets_are_inputs_shifted_by_one_and_the_last_window_is_shorter():
    data = batchify(torch.arange(22), 2)  # (11, 2)
    windows = list(bptt_batches(data, 4))
    assert [x.shape for x, _ in windows] == [(4, 2), (4, 2), (2, 2)]
    assert all(x.shape == y.shape for x, y in windows)
    assert torch.equal(torch.cat([x for x, _ in windows]), data[:-1])
    assert torch.equal(torch.cat([y for _, y in windows]), data[1:])
    x, y = windows[0]
    assert torch.equal(y[:-1], x[1:])


@pytest.mark.parametrize("bad", [0, -1])
def test_batch_sizes_and_bptt_must_be_positive(bad):
    with pytest.raises(ValueError):
        batchify(torch.arange(10), bad)
    with pytest.raises(ValueError):
        list(bptt_batches(torch.zeros(5, 2), bad))


def test_unigram_perplexity_is_the_inverse_geometric_mean_of_the_fitted_frequencies() -> None:
    # fit: a a a b (p(a)=3/4, p(b)=1/4); evaluate a b -> exp(-(log 3/4 + log 1/4) / 2) = 4/sqrt(3)
    fit, evaluate = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1])
    assert unigram_perplexity(fit, evaluate, vocab_size=2) == pytest.approx(4 / 3 ** 0.5)


def test_unigram_perplexity_smooths_a_word_unseen_in_the_fit_split() -> None:
    # word 2 is unseen: add-one over V=3 gives p = (3+1, 1+1, 0+1) / (4+3)
    fit, evaluate = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 2])
    expected = math.exp(-(math.log(4 / 7) + math.log(1 / 7)) / 2)
    assert unigram_perplexity(fit, evaluate, vocab_size=3) == pytest.approx(expected)
