"""What a refused command line looks like from the outside: one paragraph on stderr, no
traceback, nothing written (shared by the tests of bad input and of nonsense refused up front)."""

from __future__ import annotations

from pathlib import Path

#: The head of a minimal experiment spec and a `train` command line at `smoke`.
HEAD = 'profile = "smoke"\nseeds = [0]\ntasks = ["resnet18-cifar10"]\n'
TRAIN = ["train", "--task", "resnet18-cifar10", "--profile", "smoke", "--quiet"]


def one_paragraph(err: str) -> str:
    """The error paragraph; fails if stderr holds a traceback or more than one paragraph."""
    text = err.strip()
    assert "Traceback" not in text, text
    assert text.count("mlrsnet-bench: error:") == 1 and "\n\n" not in text, text
    return text


def nothing_under(results: Path) -> bool:
    """No file was written under ``results`` (an empty folder is not a result)."""
    return not results.exists() or not any(p.is_file() for p in results.rglob("*"))
