"""Build the calibration corpus: real TRL DPO runs, their measured outcomes, and one scan per run (with and
without the corpus's quality suite).

    PYTHONPATH=/work/corpus_src nohup python /work/corpus_src/benchmarks/corpus/build.py --out /work/corpus \
        --family tiny &                   # and, in parallel, --family smollm2,gemma3

Per run (CORPUS/runs/<name>/, resumable: a finished step is skipped):
  1. spec.json + data: train.jsonl, eval.jsonl (held-out pairs, same data kind), suite.jsonl (the corpus suite:
     verifiable questions apart from every other split), grading.jsonl (the truth questions; never scanned);
  2. `train_one.py` in its own process: TRL DPOTrainer -> checkpoint-N/, then measures.json (outcomes per checkpoint);
  3. outcome.json: truth labels from the measured outcomes (outcome.py) + per-checkpoint grades;
  4. two scans with the installed scanner into CORPUS/reports/<name>/{plain,suite}/ (shared --cache-dir
     CORPUS/cache), which evaluate.py reuses.
Timings go to CORPUS/build.log (one JSON line per run step).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import grid as corpus_grid  # noqa: E402
import outcome as corpus_outcome  # noqa: E402
import tasks as corpus_tasks  # noqa: E402


def log(out: Path, **row) -> None:
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **row}
    with (out / "build.log").open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def prepare(run: Path, spec: dict, ref: Path) -> None:
    """A fresh run dir with its spec and data (an unfinished training is started over)."""
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    task = corpus_tasks.TASKS[spec["task"]]
    split = task.split(0)
    write_jsonl(run / "train.jsonl", corpus_tasks.pairs(task, spec["kind"], split["train"], seed=1))
    # held-out pairs: one per eval question, at most spec["eval_n"] (the trainer evaluates them at every save)
    evals = corpus_tasks.pairs(task, spec["kind"], split["eval"], seed=2)
    write_jsonl(run / "eval.jsonl", evals[:spec.get("eval_n")])
    write_jsonl(run / "suite.jsonl", [task.suite_row(it) for it in split["suite"]])
    write_jsonl(run / "grading.jsonl", [task.suite_row(it) for it in split["grading"]])
    (run / "spec.json").write_text(json.dumps({**spec, "ref": str(ref)}, indent=1))


def graded_pairs(run: Path, spec: dict) -> dict:
    """The grader on the held-out pairs: how many have a wrong chosen and a right rejected answer (label noise as
    the grader sees it, a property of the data)."""
    task = corpus_tasks.TASKS[spec["task"]]
    items = {it.prompt: it for it in task.split(0)["eval"]}
    rows = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    flipped = sum(1 for r in rows if not task.grade(r["chosen"], items[r["prompt"]])
                  and task.grade(r["rejected"], items[r["prompt"]]))
    return {"flipped_frac": round(flipped / len(rows), 3), "n_pairs": len(rows)}


def scan_cmd(run: Path, spec: dict, out: Path, cache: Path, suite: bool) -> list[str]:
    s = spec["scan"]
    cmd = [sys.executable, "-c", "from dpo_doctor.cli import main; main()", "scan", str(run),
           "--ref", spec["ref"], "--data", str(run / "eval.jsonl"), "--out", str(out), "--cache-dir", str(cache),
           "--device", "cpu", "--no-render", "--max-prompts", str(s["max_prompts"]),
           "--samples-per-prompt", str(s["samples_per_prompt"]), "--max-new-tokens", str(s["max_new_tokens"])]
    if s.get("max_pairs"):
        cmd += ["--max-pairs", str(s["max_pairs"])]
    if suite:
        cmd += ["--probe-suite", str(run / "suite.jsonl")]
    return cmd


def run_one(root: Path, spec: dict, refs: dict, modes: tuple[str, ...] = ("suite", "plain")) -> None:
    run = root / "runs" / spec["name"]
    t0 = time.time()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    if not (run / "measures.json").exists():
        if not (run / "trained.json").exists():
            prepare(run, spec, refs[spec["model"]])
        p = subprocess.run([sys.executable, str(HERE / "train_one.py"), str(run)], env=env,
                           stdout=open(run / "train.log", "w"), stderr=subprocess.STDOUT)
        if p.returncode != 0:
            log(root, run=spec["name"], step="train", failed=p.returncode, seconds=round(time.time() - t0, 1))
            return
    spec = json.loads((run / "spec.json").read_text())
    measures = json.loads((run / "measures.json").read_text())
    truth = corpus_outcome.label(measures, graded_pairs(run, spec))
    (run / "outcome.json").write_text(json.dumps({"name": spec["name"], "family": spec["family"],
                                                  "task": spec["task"], "kind": spec["kind"], **truth}, indent=1))
    log(root, run=spec["name"], step="train+measure", **measures["timings"], primary=truth["primary"],
        labels=truth["labels"], quality=truth["quality"])
    for suite in [m == "suite" for m in modes]:
        out = root / "reports" / spec["name"] / ("suite" if suite else "plain")
        if (out / "report.json").exists():
            continue
        t1 = time.time()
        out.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(scan_cmd(run, spec, out, root / "cache", suite), env=env,
                           stdout=open(out.parent / f"scan-{out.name}.log", "w"), stderr=subprocess.STDOUT)
        log(root, run=spec["name"], step=f"scan-{out.name}", rc=p.returncode, seconds=round(time.time() - t1, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/work/corpus"))
    ap.add_argument("--family", default="tiny,smollm2,gemma3", help="comma-separated families to build")
    ap.add_argument("--only", default="", help="comma-separated run names")
    ap.add_argument("--scans", default="suite,plain",
                    help="scans to run after training (suite, plain; evaluate.py runs the missing ones)")
    ap.add_argument("--shard", default="0/1", help="I/N: every N-th run of the selection, from the I-th")
    ap.add_argument("--models", default="", help="comma-separated models (tiny-llama, tiny-qwen3, smollm2, gemma3)")
    args = ap.parse_args()
    families = set(args.family.split(","))
    import refs as corpus_refs

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    refs = corpus_refs.build_all(args.out / "models", families)
    specs = [s for s in corpus_grid.GRID.values() if s["family"] in families
             and (not args.only or s["name"] in args.only.split(","))
             and (not args.models or s["model"] in args.models.split(","))]
    i, n = (int(x) for x in args.shard.split("/"))
    specs = specs[i::n]
    log(args.out, step="start", families=sorted(families), runs=len(specs), refs_seconds=round(time.time() - t0, 1))
    for spec in specs:
        run_one(args.out, spec, refs, tuple(args.scans.split(",")))
    log(args.out, step="done", families=sorted(families), seconds=round(time.time() - t0, 1))


if __name__ == "__main__":
    main()
