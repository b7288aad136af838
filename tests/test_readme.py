"""The README agrees with the repository: its method list is the registry's, the ``make``
targets it names are the Makefile's public ones (all of them), and the repository paths it
names exist.

What is read: ``make TARGET`` wherever code stands (inline code spans and fenced blocks);
repository paths only in inline code spans and relative links outside fenced blocks (fenced
blocks hold examples, e.g. a ``baselines/halving.py`` you would write, and diagrams).
A path counts as a repository path when its first component is a tracked top-level entry of
this repository, except the output folders ``results/`` and ``reports/`` (their README paths
name files that runs write).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mlrsnet.harness.registry import discover, method_origin
from mlrsnet.paper.report.methods_list import with_methods

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"
METHODS_START, METHODS_END = "<!-- methods-list:start -->", "<!-- methods-list:end -->"
OUTPUT_DIRS = {"results", "reports"}

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _text() -> str:
    return README.read_text()


def _fenced(text: str) -> list[str]:
    return FENCE.findall(text)


def _prose(text: str) -> str:
    return FENCE.sub("", text)


def _code(text: str) -> list[str]:
    return _fenced(text) + CODE_SPAN.findall(_prose(text))


# -- (a) the methods ----------------------------------------------------------------------
def readme_methods(text: str) -> list[str]:
    """The names of the method list: each item starts with the name in backticks."""
    assert METHODS_START in text and METHODS_END in text, "the README lost its method-list markers"
    block = text.split(METHODS_START, 1)[1].split(METHODS_END, 1)[0]
    return re.findall(r"^- `([^`]+)`", block, re.M)


def committed_methods() -> dict[str, type]:
    """The registered methods whose module is committed to this repository (an uncommitted
    plug-in a user dropped into ``baselines/`` is not the README's business)."""
    tracked = set(subprocess.run(["git", "ls-files", "baselines"], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout.split())
    return {name: cls for name, cls in discover().items() if method_origin(cls) in tracked}


def test_the_method_list_is_the_registrys_for_the_committed_methods():
    committed = committed_methods()
    assert committed, "no committed method is registered"
    text = _text()
    listed = readme_methods(text)
    assert len(listed) == len(set(listed)), f"listed twice: {sorted({m for m in listed if listed.count(m) > 1})}"
    assert with_methods(text, committed) == text, (
        f"README lists {sorted(set(listed) - set(committed))} that are not methods and misses "
        f"{sorted(set(committed) - set(listed))}, or describes one differently; regenerate with: "
        "python -m mlrsnet.paper.report.methods_list README.md")


def test_a_dropped_in_module_needs_no_readme_edit(tmp_path, monkeypatch):
    """An uncommitted module in baselines/ is registered; the README check above ignores it."""
    import mlrsnet.baselines as baselines

    (tmp_path / "dropped_in.py").write_text(
        "from mlrsnet.harness.schedules import Schedule\n\n"
        "class DroppedIn(Schedule):\n    name = 'dropped-in'\n\n    def factor(self, step):\n        return 1.0\n")
    monkeypatch.setattr(baselines, "__path__", [*baselines.__path__, str(tmp_path)])
    assert "dropped-in" in discover() and "dropped-in" not in committed_methods()


# -- (b) the make targets -----------------------------------------------------------------
def makefile_targets() -> tuple[set[str], set[str]]:
    """(every rule's target, the .PHONY ones)."""
    text = MAKEFILE.read_text()
    rules = set(re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", text, re.M))
    phony = set()
    for line in re.findall(r"^\.PHONY\s*:(.*)$", text, re.M):
        phony.update(line.split())
    return rules - {".PHONY"}, phony


def readme_make_targets(text: str) -> set[str]:
    found = set()
    for code in _code(text):
        found.update(re.findall(r"(?<![\w-])make\s+([A-Za-z0-9][\w.-]*)", code))
    return found


def test_the_readme_parses_make_mentions():
    sample = "`make demo`  \n```bash\nmake test     # x\nmake -n lint\n```\nmake sure (prose)"
    assert readme_make_targets(sample) == {"demo", "test"}


def test_every_make_target_the_readme_names_exists():
    rules, phony = makefile_targets()
    missing = sorted(readme_make_targets(_text()) - rules)
    assert not missing, f"the README names make targets the Makefile lacks: {missing}"
    assert phony <= rules, f".PHONY names targets without a rule: {sorted(phony - rules)}"


def test_every_public_make_target_is_in_the_readme():
    _, phony = makefile_targets()
    unmentioned = sorted(phony - readme_make_targets(_text()))
    assert not unmentioned, f"public make targets the README does not mention: {unmentioned}"


# -- (c) the paths ------------------------------------------------------------------------
def _tracked_roots() -> set[str]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
        files = out.stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: what is on disk
        files = [p.name for p in ROOT.iterdir() if not p.name.startswith(".")]
    return {f.split("/", 1)[0] for f in files if f}


def readme_paths(text: str, roots: set[str]) -> list[str]:
    """Repository paths named in code spans and relative links outside fenced blocks."""
    prose = _prose(text)
    candidates = CODE_SPAN.findall(prose) + [t.split("#", 1)[0] for t in LINK.findall(prose)
                                             if not re.match(r"[a-z]+:|#", t)]
    out = []
    for c in candidates:
        c = c.strip().removeprefix("./")
        if not re.fullmatch(r"[\w.*/-]+", c) or ("/" not in c and c not in roots):
            continue
        first = c.split("/", 1)[0]
        if first in roots and first not in OUTPUT_DIRS:
            out.append(c)
    return out


def _exists(path: str) -> bool:
    if "*" in path:
        return any(ROOT.glob(path.rstrip("/")))
    target = ROOT / path
    return target.is_dir() if path.endswith("/") else target.exists()


def test_the_readme_parses_paths():
    roots = {"mlrsnet", "docs", "results", "Makefile"}
    sample = ("`mlrsnet/harness/` and `mlrsnet.harness.store`, `meta-test/x.py`, `results/demo/`, "
              "[guide](docs/tuning.md#top), [site](https://x.org/a/b), `Makefile`, `a b/c`\n"
              "```\n`mlrsnet/nowhere.py`\n```\n")
    assert readme_paths(sample, roots) == ["mlrsnet/harness/", "Makefile", "docs/tuning.md"]


def test_every_repository_path_the_readme_names_exists():
    paths = readme_paths(_text(), _tracked_roots())
    assert paths, "found no repository path in the README: is the reader broken?"
    missing = sorted({p for p in paths if not _exists(p)})
    assert not missing, f"the README names paths that do not exist: {missing}"


@pytest.mark.parametrize("path", ["mlrsnet/paper/tune/", "mlrsnet/harness/loop.py", "baselines/hd.py"])
def test_the_checker_sees_paths_that_exist(path):
    assert _exists(path)


# -- (d) the verdicts ---------------------------------------------------------------------------
def test_the_readme_summary_of_the_verdicts_is_the_one_computed_from_the_published_results():
    """No hand-copied verdict: the block between the verdict markers is what the report's
    verdict computation gives on ``reports/cpu/results`` (regenerate it with
    ``python -m mlrsnet.paper.report.reproduction README.md reports/cpu/results``)."""
    from mlrsnet.harness.store import Store
    from mlrsnet.paper.report.reproduction import END, START, with_summary

    text = _text()
    assert START in text and END in text, "the README lost its verdict markers"
    expected = with_summary(text, Store(ROOT / "reports" / "cpu" / "results"), "reports/cpu/verdicts.md")
    assert text == expected, ("the README's verdicts differ from the published results; run "
                              "`python -m mlrsnet.paper.report.reproduction README.md reports/cpu/results`")
    assert (ROOT / "reports" / "cpu" / "verdicts.md").exists()
