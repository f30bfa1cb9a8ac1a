"""Scan scaling: wall time vs number of checkpoints (1, 2, 4, 8) and vs number of pairs, plus the incremental cost
of one new checkpoint on a warm cache. Shows the K+1 cost of the reference cache. Prints ONE JSON line.

usage: python benchmarks/scan_scaling.py [--hidden 128] [--layers 2] [--pairs 256,512,1024,2048,4096]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402


def timed_scan(run: Path, setup: common.Setup, data: str, work: Path, cache: Path) -> float:
    from dpo_doctor.scan.pipeline import ScanConfig, scan

    t0 = time.perf_counter()
    scan(ScanConfig(run_dir=run, data=Path(data), ref=Path(setup.ref), beta=0.1, generate=False, render=False,
                    out=work / "report", cache_dir=cache, max_length=1024))
    return round(time.perf_counter() - t0, 2)


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--pairs", default="256,512,1024,2048,4096")
    a = ap.parse_args()
    torch.set_num_threads(1)
    sizes = [int(x) for x in a.pairs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        setup = common.build(work, max(sizes), 8, a.hidden, a.layers)
        rows = Path(setup.data).read_text().splitlines(keepends=True)
        ckpts = common.checkpoint_dirs(setup.run)
        data256 = work / "p256.jsonl"
        data256.write_text("".join(rows[:256]))
        by_k = {}
        for k in (1, 2, 4, 8):  # cold cache each time: K+1 passes
            run = work / f"run{k}"
            run.mkdir()
            for c in ckpts[:k]:
                (run / c.name).symlink_to(c)
            by_k[k] = timed_scan(run, setup, str(data256), work, work / f"cache_k{k}")
        # incremental: warm cache of 4 checkpoints, then a 5th appears
        run = work / "run4"
        (run / ckpts[4].name).symlink_to(ckpts[4])
        incremental = timed_scan(run, setup, str(data256), work, work / "cache_k4")
        by_n = {}
        for n in sizes:
            d = work / f"p{n}.jsonl"
            d.write_text("".join(rows[:n]))
            by_n[n] = timed_scan(work / "run1", setup, str(d), work, work / f"cache_n{n}")
            shutil.rmtree(work / f"cache_n{n}", ignore_errors=True)
    per_pass = by_k[8] / 9
    print(json.dumps({"benchmark": "scan_scaling", "date": time.strftime("%Y-%m-%d"), "device": "cpu, 1 thread",
                      "model_params": setup.params, "seconds_vs_checkpoints_256_pairs": by_k,
                      "seconds_per_pass_at_k8": round(per_pass, 2),
                      "seconds_one_new_checkpoint_warm_cache_of_4": incremental,
                      "seconds_vs_pairs_1_checkpoint": by_n, "loadavg": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
