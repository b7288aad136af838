"""``docs/training_loops.md`` runs as printed.

Every fenced ``python`` block is executed: the first (the setup) before each of the others, in
one interpreter (each block in fresh globals, so no block leans on another's names); a block
opening with ``# file: NAME`` is written to NAME instead, and the ``bash`` blocks run as shell
commands in the same folder (``torchrun`` from this environment; when it has no ``torchrun``
script, ``python -m torch.distributed.run``, the module that script runs).  Each block's
closing ``print`` is checked, and the DDP processes must report the same LR.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "training_loops.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, int, str]]:
    text = DOC.read_text()
    return [(m.group(1), text.count("\n", 0, m.start()) + 2, m.group(2)) for m in FENCE.finditer(text)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


RUNNER = """
import sys, traceback
blocks = {blocks!r}
_, setup = blocks[0]
failed = []
for line, code in blocks[1:]:
    print(f"=== block at line {{line}}", flush=True)
    try:
        # the setup, then the block at its own line of the page (tracebacks point there)
        source = setup + "\\n" * (line - 1 - setup.count("\\n")) + code
        exec(compile(source, "docs/training_loops.md", "exec"), {{"__name__": "__main__"}})
    except Exception:
        traceback.print_exc()
        failed.append(line)
    print(f"=== done {{line}}", flush=True)
print("FAILED", failed)
"""


def test_every_block_is_a_python_or_bash_block() -> None:
    assert {kind for kind, _, _ in blocks()} == {"python", "bash"}


def test_the_python_examples_run_as_printed(tmp_path: Path) -> None:
    python = [(line, code) for kind, line, code in blocks() if kind == "python" and not code.startswith("# file:")]
    assert len(python) >= 9
    done = subprocess.run([sys.executable, "-c", RUNNER.format(blocks=python)], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and "FAILED []" in done.stdout, done.stdout[-4000:] + done.stderr[-6000:]
    out = done.stdout
    for label in ("plain loop", "bad losses: 1 skipped", "AMP:", "accumulation: 12 optimizer steps",
                  "resumed after step 15", "Lightning:", "Hugging Face:", "timm:"):
        assert label in out, f"no {label!r} in the output"
    assert out.count("refused:") == 2
    assert "Traceback" not in done.stderr


def test_the_ddp_example_runs_with_the_command_shown(tmp_path: Path) -> None:
    for kind, _, code in blocks():
        if kind == "python" and code.startswith("# file:"):
            (tmp_path / code.splitlines()[0].split(":", 1)[1].strip()).write_text(code)
    commands = [code.strip() for kind, _, code in blocks() if kind == "bash"]
    assert commands == ["torchrun --standalone --nproc-per-node 2 train_ddp.py"]
    command = commands[0]
    if shutil.which("torchrun", path=_env()["PATH"]) is None:
        command = command.replace("torchrun", f"{sys.executable} -m torch.distributed.run", 1)
    done = subprocess.run(command, shell=True, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    # torch 2.14.1's Gloo sometimes aborts at interpreter exit, after both processes printed
    # their result and destroyed the group (a plain DDP script does too; the doc says so)
    aborted_at_exit = "terminate called without an active exception" in done.stderr
    assert done.returncode == 0 or aborted_at_exit, done.stderr[-4000:]
    lrs = sorted(re.findall(r"rank (\d): last LR (\d+\.\d{8})", done.stdout))  # the two may share a line
    assert [rank for rank, _ in lrs] == ["0", "1"], done.stdout
    assert lrs[0][1] == lrs[1][1]
