"""Does `dpo-doctor compare` ship the right checkpoint of a sweep? Prints ONE JSON line.

    python benchmarks/compare_sweep.py                  # build the sweep if missing, compare, grade
    python benchmarks/compare_sweep.py --out /tmp/sw    # where the sweep, its scans and the compare go
    python benchmarks/compare_sweep.py --force          # rebuild the sweep and rescan from nothing

The sweep (`dpo_doctor.zoo.sweep`, the same one tests/test_compare_sweep.py builds): the zoo's tiny SFT reference,
three DPO runs of it on healthy pairs of the tiny task at beta 0.02 / 0.1 / 0.5 (lr 5e-4, 48 steps, a checkpoint
every 16: nine checkpoints). `compare` scans every run on 48 held-out pairs with a verifiable suite of the 48
held-out questions (4 samples + greedy each), then every checkpoint is graded apart on 64 questions that neither
training nor any compare scan saw (`zoo.measure.grade_run`, independent samples). Also the blind pick: compare
without a suite (generation probes on the pairs' prompts, the hump heuristic).

Keys: `runs`, `checkpoints`, `pick` / `pick_blind` ("run/checkpoint"), `confidence`, `true_best`, `graded` (every
checkpoint's grade), `pick_gap_points` / `blind_gap_points` = 100 x (grade of the true best - grade of the pick),
`recommended_beta`, `seconds` {build, compare, compare_cached, blind, grade, total}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> dict:
    import torch

    from dpo_doctor.compare.pipeline import CompareConfig, compare
    from dpo_doctor.report import load_report
    from dpo_doctor.scan.config import ScanConfig
    from dpo_doctor.zoo.sweep import SweepConfig, build_sweep, grade_sweep

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/dpo-doctor-compare-sweep"))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.force and args.out.exists():
        shutil.rmtree(args.out)
    t0 = time.time()
    sweep = build_sweep(args.out, SweepConfig())
    t_build = time.time() - t0
    base = ScanConfig(run_dir=sweep / "runs", data=sweep / "eval.jsonl", ref=sweep / "reference", device="cpu",
                      cache_dir=sweep / "reports" / ".cache", probe_suite=str(sweep / "probes.jsonl"), max_prompts=48)
    t = time.time()
    out = compare(CompareConfig(runs=(sweep / "runs",), scan=base, out=sweep / "compare"))
    t_compare = time.time() - t
    t = time.time()
    compare(CompareConfig(runs=(sweep / "runs",), scan=base, out=sweep / "compare"))  # everything from the cache
    t_cached = time.time() - t
    t = time.time()
    blind = compare(CompareConfig(runs=(sweep / "runs",), scan=replace(base, probe_suite=None, max_prompts=32),
                                  out=sweep / "compare-blind"))
    t_blind = time.time() - t
    t = time.time()
    graded = grade_sweep(sweep, sweep / "reports")
    t_grade = time.time() - t
    trained = {f"{run}/{ck}": q for run, cks in graded.items() for ck, q in cks.items() if ck != "reference"}
    true = max(trained, key=trained.get)
    r, rb = load_report(out).raw, load_report(blind).raw
    pick = f"{r['best']['run']}/{r['best']['checkpoint']}"
    pick_blind = f"{rb['best']['run']}/{rb['best']['checkpoint']}" if rb.get("best") else None
    gap = lambda name: None if name is None else round(100 * (trained[true] - trained[name]), 2)  # noqa: E731
    result = {"runs": len(r["runs"]), "checkpoints": len(trained), "pick": pick, "confidence": r["best"]["confidence"],
              "pick_gap_points": gap(pick), "pick_blind": pick_blind, "blind_gap_points": gap(pick_blind),
              "true_best": true, "graded": {k: round(v, 4) for k, v in trained.items()},
              "graded_reference": round(next(iter(graded.values()))["reference"], 4),
              "recommended_beta": r["recommendation"]["beta"],
              "seconds": {"build": round(t_build, 1), "compare": round(t_compare, 1),
                          "compare_cached": round(t_cached, 1), "blind": round(t_blind, 1), "grade": round(t_grade, 1),
                          "total": round(time.time() - t0, 1)}}
    print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    main()
