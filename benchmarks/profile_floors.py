"""Does each CPU profile learn enough for LR schedules to matter?  Time per run and the floor.

For each task and profile (default: ``mini``, the search profile, and ``cpu``, the figure
profile) this trains MultiStep once with the configuration in :data:`CONFIG` through the same
``mlrsnet-bench train`` command users run, one process per run with one thread each
(``MLRSNET_THREADS=1``; ``--jobs`` runs side by side, as the searches do on 2 cores), and
writes ``reports/<profile>/profile_floors.{md,csv}``: wall time per run, final and best test
metric, and the floor the issue sets:

* images: test accuracy at least 45 % on CIFAR-10 (ResNet-18 50 %), 10 % on CIFAR-100,
  4 % on TinyImageNet at the figure profile; at the search profile, twice chance
  (1 / classes);
* language models: test perplexity at least 30 % below the unigram perplexity of the corpus
  (train frequencies, the whole test split: :func:`mlrsnet.paper.data.text.unigram_perplexity`)
  at the figure profile, below it at the search profile (uniform chance, the vocabulary
  size, is no bar: every run beats it).

Run:  MLRSNET_DATA_DIR=../shared/data .venv/bin/python benchmarks/profile_floors.py \\
          [--profiles mini cpu] [--tasks resnet18-cifar10 ...] [--jobs 2] [--results DIR]

``--tuned reports/cpu/results`` trains nothing: it reads the CPU reproduction's figure runs
(``make reproduce-all``) and writes ``reports/cpu/tuned_floors.md``, per task the best
*tuned* MultiStep there (the searches' best configurations retrained at the figure profile;
mean over seeds of each run's best test metric, the best label and experiment) against the
same floor.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The MultiStep configuration each task trains at (every profile).  Image LRs: 0.2 on the
#: momentum-free settings (on ResNet-18/CIFAR-10 at 20 epochs of the cpu-profile data, lr 0.1
#: reached 40 % and 0.3 45 %); EfficientNet (Nesterov momentum 0.9) keeps its base LR 0.1.
#: Language models: the PyTorch word-LM recipe's lr 20 with the paper's "Val" decay.
CONFIG: dict[str, dict[str, Any]] = {
    "resnet18-cifar10": {"hparams": {"lr": 0.2}},
    "wrn28_10-cifar100": {"hparams": {"lr": 0.2}},
    "lstm2-ptb": {"method": "multistep-val"},
    "lstm3-ptb": {"method": "multistep-val"},
    "shufflenetv2-cifar10": {"hparams": {"lr": 0.2}},
    "mobilenetv2-cifar10": {"hparams": {"lr": 0.2}},
    "nasnet-cifar10": {"hparams": {"lr": 0.2}},
    "resnet18-svhn": {"hparams": {"lr": 0.2}},
    "resnet18-tinyimagenet": {"hparams": {"lr": 0.2}},
    "efficientnet_b0-cifar100": {},
    "efficientnet_b7-cifar100": {},
    "lstm-wikitext2": {"method": "multistep-val"},
}
#: The figure profile's floor (issue "CPU profiles"): accuracy, or the fraction of the
#: unigram perplexity a language model must reach.
IMAGE_FLOORS = {"cifar10": 0.45, "cifar100": 0.10, "tinyimagenet": 0.04, "svhn": 0.45}
RESNET18_CIFAR10_FLOOR = 0.50
TEXT_FLOOR = 0.70
RETABULATE = ("The runs behind the published tables are in `reports/profile_floors/results` (the default "
              "`--results`; finished runs are not trained again): add `--collect-only` to re-tabulate them "
              "without training.")


def floor(task: Any, profile: str, unigram: float | None) -> tuple[float, str, float]:
    """The value the best run must reach, a phrase for it (chance-based at ``mini``), and the
    reference the margin is stated against (chance accuracy; the unigram perplexity)."""
    if task.kind == "text":
        assert unigram is not None
        if profile != "cpu":  # uniform chance (the vocabulary size) is far too easy a bar
            return unigram, f"< unigram ppl {unigram:.0f}", unigram
        return TEXT_FLOOR * unigram, f"<= {TEXT_FLOOR * unigram:.0f} ppl (0.7 x unigram {unigram:.0f})", unigram
    chance = 1.0 / (task.num_classes or 10)
    if profile != "cpu":
        return 2.0 * chance, f">= 2 x chance ({100 * chance:.1f} %)", chance
    value = RESNET18_CIFAR10_FLOOR if task.name == "resnet18-cifar10" else IMAGE_FLOORS[task.dataset]
    return value, f">= {100 * value:.0f} %", chance


def unigram_of(dataset: str, data_dir: str | None, vocab_size: int | None = None) -> float:
    """Over the vocabulary the profile trains with (its cap, if it has one)."""
    from mlrsnet.paper.data import cap_vocabulary, load_corpus
    from mlrsnet.paper.data.text import unigram_perplexity

    corpus = load_corpus(dataset, data_dir)
    if vocab_size is not None:
        corpus = cap_vocabulary(corpus, vocab_size)
    return unigram_perplexity(corpus.train, corpus.test, corpus.vocab_size)


def run_one(job: dict[str, Any], results: str, data_dir: str | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "mlrsnet.harness.cli", "train", "--task", job["task"],
           "--method", job["method"], "--profile", job["profile"], "--results", results,
           "--experiment", "profile_floors", "--quiet", "--device", "cpu"]
    for key, value in job["hparams"].items():
        cmd += ["--hparam", f"{key}={value}"]
    env = dict(os.environ, MLRSNET_THREADS="1", OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    if data_dir:
        env["MLRSNET_DATA_DIR"] = data_dir
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    job = dict(job, process_s=time.perf_counter() - started, rc=proc.returncode)
    if proc.returncode:
        job["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
    return job


def collect(results: str, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per job, read from the store (the run's own wall time and test curve)."""
    import pandas as pd

    from mlrsnet.harness.store import Store

    store = Store(results)
    runs = store.runs("profile_floors")
    epochs = store.read("epochs", "profile_floors")
    rows = []
    for job in jobs:
        hit = runs[(runs.task == job["task"]) & (runs.profile == job["profile"])
                   & (runs.method == job["method"]) & (runs.status == "finished")]
        wanted = job["hparams"]
        hit = hit[hit.hparams.map(lambda h, wanted=wanted: (json.loads(h) if isinstance(h, str) else dict(h)) == wanted)]
        if hit.empty:
            rows.append(dict(job, final=None, best=None, wall_s=None))
            continue
        run = hit.sort_values("finished").iloc[-1]
        curve = epochs[(epochs.run_id == run.run_id) & (epochs.split == "test")]
        metric = "acc" if job["kind"] == "image" else "ppl"
        curve = curve[curve.metric == metric].sort_values("epoch")
        values = curve.value.tolist()
        best = max(values) if metric == "acc" else min(values)
        info = json.loads(run.method_info) if isinstance(run.method_info, str) else dict(run.method_info)
        rows.append(dict(job, final=values[-1], best=best, wall_s=float(run.wall_time_s),
                         epochs=len(values), steps=int(info.get("steps_per_epoch", 0)) * len(values)))
    pd.DataFrame(rows)  # fail early if a row is not tabular
    return rows


def write_tables(rows: list[dict[str, Any]], out: Path, command: str) -> None:
    by_profile: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_profile.setdefault(row["profile"], []).append(row)
    for profile, items in by_profile.items():
        folder = out / profile
        folder.mkdir(parents=True, exist_ok=True)
        fields = ["task", "hparams", "epochs", "steps", "wall_s", "final", "best", "floor", "floor_rule",
                  "reference", "margin", "met"]
        with open(folder / "profile_floors.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            for row in items:
                writer.writerow({**row, "hparams": json.dumps(row["hparams"])})
        lines = [f"# Profile `{profile}`: time per run and the floor reached", "",
                 f"MultiStep, one thread per run, {items[0]['jobs']} runs side by side on this machine. "
                 f"Regenerate: `{command}`. {RETABULATE}", "",
                 "Margin: best test accuracy / chance (images), best test perplexity / the "
                 "unigram perplexity (text).", "",
                 "| task | MultiStep hparams | epochs | steps | time per run | final test | best test "
                 "| margin | floor | met |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for row in items:
            def fmt(v: float | None, image: bool = row["kind"] == "image") -> str:
                if v is None:
                    return "-"
                return f"{100 * v:.1f} %" if image else f"{v:.0f} ppl"
            wall = "-" if row["wall_s"] is None else f"{row['wall_s']:.0f} s"
            hp = ", ".join(f"{k}={v}" for k, v in row["hparams"].items()) or "defaults"
            margin = "-" if row["margin"] is None else (
                f"{row['margin']:.1f}x chance" if row["kind"] == "image" else f"{row['margin']:.2f}x unigram")
            met = "-" if row["best"] is None else ("yes" if row["met"] else "**no**")
            lines.append(f"| {row['task']} | {hp} | {row.get('epochs', '-')} | {row.get('steps', '-')} | {wall} "
                         f"| {fmt(row['final'])} | {fmt(row['best'])} | {margin} | {row['floor_rule']} | {met} |")
        (folder / "profile_floors.md").write_text("\n".join(lines) + "\n")
        print(f"wrote {folder / 'profile_floors.md'}")


def combined_table(rows: list[dict[str, Any]]) -> str:
    """One row per task, the search and the figure profile side by side (the README's table)."""
    def cell(row: dict[str, Any] | None) -> list[str]:
        if row is None or row["best"] is None:
            return ["-", "-", "-"]
        best = f"{100 * row['best']:.1f} %" if row["kind"] == "image" else f"{row['best']:.0f} ppl"
        margin = (f"{row['margin']:.1f}x chance" if row["kind"] == "image"
                  else f"{row['margin']:.2f}x unigram")
        return [f"{row['wall_s']:.0f} s ({row['epochs']} ep, {row['steps']} steps)", best, margin]

    by_task: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_task.setdefault(row["task"], {})[row["profile"]] = row
    lines = ["| task | mini: time per run | mini: best test | mini: margin | cpu: time per run "
             "| cpu: best test | cpu: margin | cpu floor | met |", "|---|---|---|---|---|---|---|---|---|"]
    for task, profiles in by_task.items():
        cpu = profiles.get("cpu")
        met = "-" if cpu is None or cpu["best"] is None else ("yes" if cpu["met"] else "**no**")
        floor_rule = cpu["floor_rule"] if cpu else "-"
        lines.append("| " + " | ".join([task, *cell(profiles.get("mini")), *cell(cpu), floor_rule, met]) + " |")
    return "\n".join(lines) + "\n"


def tuned_rows(results: str, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per job (cpu profile only), the best tuned MultiStep of the reproduction's figures:
    over (experiment, label) groups of finished runs tagged ``tuned``, the highest seed-mean
    best test accuracy (lowest perplexity)."""
    from mlrsnet.harness.store import Store

    store = Store(results)
    figures = [e for e in store.experiments() if e.startswith("fig")]
    runs = store.runs(figures)
    runs = runs[(runs.status == "finished") & (runs.profile == "cpu")
                & runs.method.isin(["multistep", "multistep-val"])
                & runs.tags.map(lambda t: isinstance(t, dict) and "tuned" in t)
                & ~runs.data.map(lambda d: isinstance(d, dict) and "copied_from" in d)]
    epochs = store.read("epochs", figures)
    test = epochs[epochs.split == "test"]
    rows = []
    for job in (j for j in jobs if j["profile"] == "cpu"):
        metric = "acc" if job["kind"] == "image" else "ppl"
        pick = max if metric == "acc" else min
        candidates = []
        for (experiment, label), group in runs[runs.task == job["task"]].groupby(
                [runs.experiment, runs.tags.map(lambda t: t.get("label", ""))]):
            bests = []
            for run_id in group.run_id:
                values = test[(test.run_id == run_id) & (test.metric == metric)].value.tolist()
                if values:
                    bests.append(pick(values))
            if bests:
                candidates.append({"experiment": experiment, "label": label, "seeds": len(bests),
                                   "best": sum(bests) / len(bests),
                                   "wall_s": float(group.wall_time_s.mean())})
        chosen = pick(candidates, key=lambda c: c["best"]) if candidates else None
        rows.append(dict(job, **(chosen or {"best": None, "wall_s": None})))
    return rows


def write_tuned_table(rows: list[dict[str, Any]], out: Path, command: str) -> None:
    lines = ["# Profile `cpu`: the best tuned MultiStep of the reproduction against the floor", "",
             "Per task, the searches' best MultiStep configurations as the figures retrain them at the "
             "figure profile (`make reproduce-all`): the highest mean over seeds of each run's best "
             f"test accuracy (lowest perplexity) among the figures' tuned labels. Times are those of the "
             "machine each run trained on (the reproduction spans several 2-core machines, one about 2x "
             "slower than another; `runs.versions` names the CPU of runs recorded since that was added). "
             f"Regenerate: `{command}`.", "",
             "| task | best tuned MultiStep | figure | seeds | time per run | best test | floor | met |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["best"] is None:
            lines.append(f"| {row['task']} | - | - | - | - | - | {row['floor_rule']} | not run |")
            continue
        image = row["kind"] == "image"
        best = f"{100 * row['best']:.1f} %" if image else f"{row['best']:.0f} ppl"
        met = row["best"] >= row["floor"] if image else row["best"] <= row["floor"]
        lines.append(f"| {row['task']} | {row['label']} | {row['experiment']} | {row['seeds']} | "
                     f"{row['wall_s']:.0f} s | {best} | {row['floor_rule']} | {'yes' if met else '**no**'} |")
    folder = out / "cpu"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tuned_floors.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {folder / 'tuned_floors.md'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", nargs="+", default=["mini", "cpu"])
    ap.add_argument("--tasks", nargs="+", help="default: every task in CONFIG")
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    ap.add_argument("--results", default=str(ROOT / "reports" / "profile_floors" / "results"),
                    help="where the runs go (default: beside the published tables; finished runs are kept)")
    ap.add_argument("--out", default=str(ROOT / "reports"))
    ap.add_argument("--collect-only", action="store_true", help="tabulate finished runs, train nothing")
    ap.add_argument("--tuned", default=None, metavar="RESULTS",
                    help="train nothing: the best tuned MultiStep of the reproduction's figures in RESULTS")
    args = ap.parse_args(argv)
    if args.tuned:
        args.profiles = ["cpu"]

    from mlrsnet.paper.data.locate import find_corpus_dir
    from mlrsnet.paper.tasks import get_task
    from mlrsnet.paper.tune.skips import data_missing

    data_dir = os.environ.get("MLRSNET_DATA_DIR")
    jobs, unigrams = [], {}
    for name, entry in CONFIG.items():
        if args.tasks and name not in args.tasks:
            continue
        task = get_task(name)
        for profile in args.profiles:
            reason = data_missing(task, profile, data_dir)
            if reason:
                print(f"skipping {name} ({profile}): {reason}")
                continue
            cap = task.profile(profile).vocab_size
            if task.kind == "text" and (task.dataset, cap) not in unigrams:
                find_corpus_dir(task.dataset, data_dir)
                unigrams[task.dataset, cap] = unigram_of(task.dataset, data_dir, cap)
            value, rule, reference = floor(task, profile, unigrams.get((task.dataset, cap)))
            jobs.append({"task": name, "kind": task.kind, "profile": profile,
                         "method": entry.get("method", "multistep"),
                         "hparams": dict(entry.get(profile, entry.get("hparams", {}))),
                         "floor": value, "floor_rule": rule, "reference": reference, "jobs": args.jobs})
    if args.tuned:
        write_tuned_table(tuned_rows(args.tuned, jobs), Path(args.out),
                          f"MLRSNET_DATA_DIR=../shared/data .venv/bin/python benchmarks/profile_floors.py "
                          f"--tuned {args.tuned}")
        return 0
    if not args.collect_only:
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            for done in pool.map(lambda j: run_one(j, args.results, data_dir), jobs):
                print(f"{done['task']} ({done['profile']}): rc {done['rc']}, {done['process_s']:.0f} s"
                      + (f" {done['error']}" if done.get("error") else ""), flush=True)
    rows = collect(args.results, jobs)
    for row in rows:
        best = row["best"]
        row["met"] = best is not None and (best >= row["floor"] if row["kind"] == "image" else best <= row["floor"])
        row["margin"] = None if best is None else best / row["reference"]
    command = "MLRSNET_DATA_DIR=../shared/data .venv/bin/python benchmarks/profile_floors.py " + " ".join(
        f"--{k} {' '.join(v) if isinstance(v, list) else v}" for k, v in
        (("profiles", args.profiles), ("jobs", args.jobs)))
    write_tables(rows, Path(args.out), command)
    if len(set(args.profiles)) > 1:
        combined = Path(args.out) / "profile_floors.md"
        combined.write_text(f"Regenerate: `{command}`. {RETABULATE}\n\n" + combined_table(rows))
        print(f"wrote {combined}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
