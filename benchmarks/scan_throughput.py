"""Scan throughput: dpo-doctor's K-checkpoint scan vs TRL evaluate() per checkpoint vs the bare forward floor.

Same model, checkpoints and pairs for all three, each in its own subprocess (separate peak-RSS figures; TRL's
Accelerate state is a process-wide singleton), one torch thread each (the machine is shared and noisy: compare the
ratios, measured in the same run). Prints ONE JSON line.

  scan  : `dpo_doctor.scan.scan` cold cache, pairs only (--no-generate), K checkpoints -> K+1 passes; the whole call
          (discovery, tokenization, model loading, scoring, metrics, report) is timed.
  trl   : TRL `DPOTrainer(model=ckpt, ref_model=ref).evaluate()` per checkpoint; only evaluate() is timed.
  floor : every sequence (prompt + chosen, prompt + rejected) through each of the K+1 models one at a time,
          unpadded, no_grad; only the forward passes are timed.

usage: python benchmarks/scan_throughput.py [--pairs 128] [--checkpoints 4] [--hidden 320] [--layers 6]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = ("the a of to and in is it that for on with as was be by this are or at from have not but an they which "
         "you one were all we when there can been has more if will would who so no what about up out them into "
         "time only new some could these two may then do first any my now such like our over man me even most "
         "made after also did many before must through back years where much your way well down should because "
         "each just those people how too little state good very make world still own see men work long get here "
         "between both life being under never day same another know while last might us great old year off come "
         "since against go came right used take three").split()


def sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def build(workdir: Path, n_pairs: int, k: int, hidden: int, layers: int) -> dict:
    """Tokenizer, reference, K perturbed checkpoints and pairs with responses spread ~8x in length."""
    import torch

    from dpo_doctor import tiny

    rng = random.Random(0)
    rows = [{"prompt": sentence(rng, 8, 24) + "?", "chosen": " " + sentence(rng, 12, 100) + ".",
             "rejected": " " + sentence(rng, 12, 100) + "."} for _ in range(n_pairs)]
    data = workdir / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = tiny.build_tokenizer([sentence(rng, 20, 60) for _ in range(3000)], vocab_size=2048)
    ref = tiny.build_model(tok, hidden=hidden, layers=layers, heads=4, max_positions=512)
    tiny.save(ref, tok, workdir / "ref")
    run = workdir / "run"
    for i in range(1, k + 1):
        torch.manual_seed(i)
        with torch.no_grad():
            for p in ref.parameters():
                p.add_(torch.randn_like(p) * 1e-3)
        tiny.save(ref, tok, run / f"checkpoint-{i * 10}")
    return {"data": str(data), "ref": str(workdir / "ref"), "run": str(run),
            "params": sum(p.numel() for p in ref.parameters())}


def role_scan(s: dict) -> dict:
    from dpo_doctor.scan import ScanConfig, scan

    t0 = time.perf_counter()
    scan(ScanConfig(run_dir=Path(s["run"]), data=Path(s["data"]), ref=Path(s["ref"]), beta=0.1, generate=False,
                    render=False, out=Path(s["work"]) / "report", cache_dir=Path(s["work"]) / "cache", max_length=512))
    return {"seconds": time.perf_counter() - t0}


def role_trl(s: dict) -> dict:
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from trl import DPOConfig, DPOTrainer

    tok = PreTrainedTokenizerFast.from_pretrained(s["ref"])
    ds = load_dataset("json", data_files=s["data"])["train"]
    ref = AutoModelForCausalLM.from_pretrained(s["ref"])
    total = 0.0
    for ck in sorted(Path(s["run"]).iterdir(), key=lambda p: int(p.name.split("-")[1])):
        args = DPOConfig(output_dir=str(Path(s["work"]) / "trl"), bf16=False, gradient_checkpointing=False,
                         use_cpu=True, report_to="none", per_device_eval_batch_size=8, max_length=512, beta=0.1,
                         dataloader_num_workers=0)
        trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(ck), ref_model=ref, args=args,
                             train_dataset=ds, eval_dataset=ds, processing_class=tok)
        t0 = time.perf_counter()
        trainer.evaluate()
        total += time.perf_counter() - t0
    return {"seconds": total}


def role_floor(s: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from dpo_doctor.data import load_pairs

    tok = PreTrainedTokenizerFast.from_pretrained(s["ref"])
    pairs = load_pairs(Path(s["data"]), tok, max_length=512)
    seqs = [torch.tensor([list(p.prompt_ids) + list(r)]) for p in pairs.tokens for r in (p.chosen_ids, p.rejected_ids)]
    dirs = [Path(s["ref"])] + sorted(Path(s["run"]).iterdir())
    total, tokens = 0.0, 0
    for d in dirs:
        model = AutoModelForCausalLM.from_pretrained(d).eval()
        with torch.inference_mode():
            t0 = time.perf_counter()
            for ids in seqs:
                model(input_ids=ids, use_cache=False)
            total += time.perf_counter() - t0
        tokens += sum(x.shape[1] for x in seqs)
    return {"seconds": total, "tokens": tokens, "sequences": len(seqs)}


def child(role: str, setup: str) -> None:
    import torch

    torch.set_num_threads(1)
    s = json.loads(setup)
    out = {"scan": role_scan, "trl": role_trl, "floor": role_floor}[role](s)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def run_child(role: str, setup: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", role, json.dumps(setup)], capture_output=True,
                          text=True, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{role} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--checkpoints", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=320)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--child", nargs=2)
    a = ap.parse_args()
    if a.child:
        return child(*a.child)
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as work:
        setup = {**build(Path(work), a.pairs, a.checkpoints, a.hidden, a.layers), "work": work}
        load_before = os.getloadavg()
        res = {role: run_child(role, setup) for role in ("floor", "scan", "trl")}
    tokens = res["floor"]["tokens"]
    print(json.dumps({
        "benchmark": "scan_throughput", "date": time.strftime("%Y-%m-%d"), "device": "cpu, 1 thread",
        "model_params": setup["params"], "pairs": a.pairs, "checkpoints": a.checkpoints,
        "passes": a.checkpoints + 1, "tokens_per_pass": tokens // (a.checkpoints + 1),
        "seconds": {k: round(v["seconds"], 2) for k, v in res.items()},
        "pairs_per_s": {k: round(a.pairs * a.checkpoints / v["seconds"], 2) for k, v in res.items()},
        "tokens_per_s": {k: round(tokens / v["seconds"], 1) for k, v in res.items()},
        "scan_over_floor": round(res["scan"]["seconds"] / res["floor"]["seconds"], 3),
        "trl_over_scan": round(res["trl"]["seconds"] / res["scan"]["seconds"], 3),
        "peak_rss_mb": {k: round(v["peak_rss_mb"], 1) for k, v in res.items()},
        "loadavg": [round(x, 2) for x in load_before],
    }))


if __name__ == "__main__":
    main()
