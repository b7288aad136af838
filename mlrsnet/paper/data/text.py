"""Word-level corpora (PTB, WikiText-2) and the batching recipe of PyTorch's word LM example.

Tokenisation is the one every published PTB/WikiText-2 number uses: whitespace-split
words plus an ``<eos>`` per line, vocabulary indexed in order of first appearance.
The whole file is split at once (not line by line) so WikiText-2 loads in about a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mlrsnet.errors import UserError
from mlrsnet.paper.data.locate import CORPUS_SPLITS, PathLike, find_corpus_dir, prepare_command

EOS = "<eos>"
UNK = "<unk>"


@dataclass
class Corpus:
    """A tokenised corpus: ``vocab[i]`` is the word with id ``i``; splits are 1-d int64."""

    name: str
    vocab: list[str]
    train: Tensor
    valid: Tensor
    test: Tensor
    source: Path | None = None

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


def read_tokens(path: Path) -> list[str]:
    """Words of every line followed by ``<eos>``, exactly as ``line.split() + ['<eos>']``."""
    try:
        text = path.read_text(encoding="utf-8")  # text mode: \r\n and \r become \n
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start}); it is not a prepared corpus "
                        "file: prepare the corpus again (`mlrsnet-bench data prepare NAME`)") from None
    if text and not text.endswith("\n"):
        text += "\n"  # a last line without newline still ends a sentence
    return text.replace("\n", f" {EOS} ").split()


def load_corpus(name: str, data_dir: PathLike | None = None) -> Corpus:
    """Load ``<data dir>/<name>/{train,valid,test}.txt``.

    The vocabulary is built from train in order of first appearance.  Words that occur
    only in valid or test (none do in PTB or WikiText-2) are appended after, as the
    reference Dictionary does, so ids never collide.
    """
    folder = find_corpus_dir(name, data_dir)
    word_ids: dict[str, int] = {}
    splits: dict[str, Tensor] = {}
    for split in CORPUS_SPLITS:
        tokens = read_tokens(folder / f"{split}.txt")
        if not tokens:
            raise UserError(f"{folder / f'{split}.txt'} holds no words (an empty corpus file); "
                            f"restore it or prepare the corpus again: "
                            f"`{prepare_command(name, data_dir)}`")
        for word in dict.fromkeys(tokens):  # unique words in order of first appearance
            word_ids.setdefault(word, len(word_ids))
        ids = np.fromiter(map(word_ids.__getitem__, tokens), dtype=np.int64, count=len(tokens))
        splits[split] = torch.from_numpy(ids)
    return Corpus(name=name, vocab=list(word_ids), train=splits["train"],
                  valid=splits["valid"], test=splits["test"], source=folder)


def cap_vocabulary(corpus: Corpus, size: int) -> Corpus:
    """The corpus with its vocabulary cut to the ``size`` words most frequent in train, every
    other word read as ``<unk>`` (the preprocessing that made PTB's 10k vocabulary).

    A scale-down for CPU profiles, where the softmax over WikiText-2's 33,278 words is most
    of a step: perplexities are then over the capped vocabulary and not comparable to
    full-vocabulary ones.  ``<unk>`` is always kept (it takes the last place when it is not
    among the ``size`` most frequent); ties are broken by first appearance, and the kept
    words keep their relative order, so the cap is deterministic.
    """
    if size < 2:
        raise UserError(f"a vocabulary cap must keep at least 2 words, got {size}")
    if size >= corpus.vocab_size:
        return corpus
    counts = torch.bincount(corpus.train, minlength=corpus.vocab_size)
    # most frequent first; a stable sort keeps ties in order of first appearance (the ids)
    order = torch.sort(counts, descending=True, stable=True).indices
    unk = corpus.vocab.index(UNK) if UNK in corpus.vocab else None
    unk_kept = unk is not None and bool((order[:size] == unk).any())
    kept = sorted(order[: size if unk_kept else size - 1].tolist())
    vocab = [corpus.vocab[i] for i in kept] + ([] if unk_kept else [UNK])
    unk_id = vocab.index(UNK)
    remap = torch.full((corpus.vocab_size,), unk_id, dtype=torch.int64)
    remap[torch.tensor(kept, dtype=torch.int64)] = torch.arange(len(kept), dtype=torch.int64)
    return Corpus(name=corpus.name, vocab=vocab, train=remap[corpus.train],
                  valid=remap[corpus.valid], test=remap[corpus.test], source=corpus.source)


def batchify(tokens: Tensor, batch_size: int) -> Tensor:
    """Cut a 1-d token stream into ``batch_size`` contiguous columns, shape (T, B).

    Trailing tokens that do not fill a whole row are dropped; column ``b`` continues
    where column ``b-1`` stops, so hidden state can be carried down each column.
    """
    if tokens.dim() != 1:
        raise ValueError(f"expected a 1-d token tensor, got shape {tuple(tokens.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = tokens.numel() // batch_size
    if rows == 0:
        raise ValueError(f"{tokens.numel()} tokens cannot fill one row of {batch_size} columns")
    return tokens[: rows * batch_size].view(batch_size, rows).t().contiguous()


def bptt_batches(data: Tensor, bptt: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Consecutive windows of a batchified (T, B) stream: inputs and next-word targets.

    ``x`` is rows ``i .. i+t-1`` and ``y`` rows ``i+1 .. i+t``, both (t, B) with ``t <=
    bptt``; the last window is shorter when ``T-1`` is not a multiple of ``bptt``.
    """
    if bptt < 1:
        raise ValueError(f"bptt must be >= 1, got {bptt}")
    length = data.size(0) - 1
    for start in range(0, length, bptt):
        t = min(bptt, length - start)
        yield data[start:start + t], data[start + 1:start + 1 + t]


def unigram_perplexity(fit: Tensor, evaluate: Tensor, vocab_size: int) -> float:
    """Perplexity on ``evaluate`` of the unigram model whose word probabilities are the
    frequencies in ``fit``: ``exp(-mean_t log p(w_t))``, ``p(w) = count(w) / len(fit)``.

    The floor a language model must clearly beat (issue "CPU profiles": at least 30 % below
    it); a word never seen in ``fit`` gets add-one mass so the value stays finite
    (``(count + 1) / (len + V)`` for every word then, as Laplace smoothing does).
    """
    if fit.dim() != 1 or evaluate.dim() != 1 or fit.numel() == 0 or evaluate.numel() == 0:
        raise ValueError("unigram_perplexity needs two non-empty 1-d token tensors")
    counts = torch.bincount(fit, minlength=vocab_size).double()
    if bool((counts[evaluate] == 0).any()):
        probs = (counts + 1.0) / (counts.sum() + vocab_size)
    else:
        probs = counts / counts.sum()
    return float(torch.exp(-probs[evaluate].log().mean()))
