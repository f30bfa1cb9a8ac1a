"""Many machines, each with its own --cache-dir: under torchrun (2 gloo processes) one rank finds every cache entry
(pair scores and probe samples) and the other finds none. Before the ranks agreed on each lookup, the rank with the
hit returned while the other waited in the scoring's all_reduce forever; now the entry is sent to the rank that
missed, both finish, and the report is the single-process one."""

import json
import os
import subprocess
import sys

import pytest

from tests.test_scan import cfg, make_run

RANK_SCRIPT = """
import os, sys
from pathlib import Path
from dpo_doctor.scan.pipeline import ScanConfig, scan
run, data, ref, out, caches = map(Path, sys.argv[1:6])
rank = int(os.environ["RANK"])
scan(ScanConfig(run_dir=run, data=data, ref=ref, out=out, cache_dir=caches / f"rank{rank}", render=False,
                generate=True, max_prompts=3, samples_per_prompt=2, max_new_tokens=8))
"""


@pytest.mark.parametrize("warm_rank", [0, 1])
def test_one_rank_hits_the_cache_the_other_misses(tmp_path, tiny_dir, pairs_jsonl, warm_rank):
    run = make_run(tmp_path / "run", tiny_dir, steps=(2, 4))
    caches = tmp_path / "caches"
    gen = {"generate": True, "max_prompts": 3, "samples_per_prompt": 2, "max_new_tokens": 8}
    single = json.loads((scan_single(tmp_path, run, pairs_jsonl, tiny_dir, caches / f"rank{warm_rank}", gen)
                         / "report.json").read_text())
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(29541 + warm_rank), str(script), str(run), str(pairs_jsonl), str(tiny_dir), str(tmp_path / "dist"),
           str(caches)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    dist = json.loads((tmp_path / "dist" / "report.json").read_text())
    assert dist["settings"]["scored"] == [] and len(dist["settings"]["from_cache"]) == 3  # nothing rescored
    for a, b in zip(single["checkpoints"], dist["checkpoints"], strict=True):
        assert any(k.startswith("gen/") for k in b["metrics"])
        for k, v in a["metrics"].items():
            assert b["metrics"][k] == pytest.approx(v, rel=1e-6, abs=1e-9, nan_ok=True), k
    cold = caches / f"rank{1 - warm_rank}"
    if warm_rank == 1:  # rank 0 (the one that writes caches) keeps what it was sent
        assert len(list((cold / "scores").glob("*.npz"))) == 3
        # 3 models on the run's prompts + the reference on the default quality suite (mute on a tiny model, so the
        # checkpoints skip it)
        assert len(list((cold / "samples").glob("*.parquet"))) == 4
    else:  # only rank 0 writes caches: rank 1's stays empty, and it waited for nothing
        assert not (cold / "scores").exists() or not list((cold / "scores").glob("*.npz"))


def scan_single(tmp_path, run, data, ref, cache_dir, gen):
    from dpo_doctor.scan.pipeline import scan

    return scan(cfg(tmp_path, run, data, ref=ref, cache_dir=cache_dir, **gen))
