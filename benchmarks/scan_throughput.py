"""Scan throughput: dpo-doctor's K-checkpoint scan vs TRL evaluate() per checkpoint vs the bare forward floor.

Same model, checkpoints and pairs for all three (built by `_common.build`: an ~8M-parameter Llama, 3k BPE vocab,
responses spread ~8x in length, ~100 tokens per sequence), each in its own subprocess (separate peak-RSS figures;
TRL's Accelerate state is a process-wide singleton), one torch thread each. The machine is shared and noisy:
compare the ratios, measured in the same run. Prints ONE JSON line.

  scan  : `dpo_doctor.scan.scan`, cold cache, pairs only (generate=False), K checkpoints -> K+1 passes. The whole
          call (discovery, tokenization, weight loading and hashing, scoring, metrics, rules, report files) is
          timed; `scan_scoring` is the part of it spent inside `score_pairs`.
  trl   : TRL `DPOTrainer(model=checkpoint, ref_model=reference).evaluate()` per checkpoint, TRL's default eval
          batch size (8); only the evaluate() calls are timed.
  floor : every sequence (prompt + chosen, prompt + rejected) through each of the K+1 models one at a time,
          unpadded, inference mode; only the forward passes are timed.

usage: python benchmarks/scan_throughput.py [--pairs 128] [--checkpoints 4] [--hidden 320] [--layers 6]
       [--roles floor,scan,trl]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402


def role_scan(s: common.Setup) -> dict:
    import dpo_doctor.engine.pairs as engine_pairs
    from dpo_doctor.scan.pipeline import ScanConfig, scan

    scoring = [0.0]
    inner = engine_pairs.score_pairs

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            scoring[0] += time.perf_counter() - t

    engine_pairs.score_pairs = timed
    work = Path(s.work) / f"scan-{time.time_ns()}"
    t0 = time.perf_counter()
    scan(ScanConfig(run_dir=Path(s.run), data=Path(s.data), ref=Path(s.ref), beta=0.1, generate=False,
                    render=False, out=work / "report", cache_dir=work / "cache", max_length=1024))
    return {"seconds": time.perf_counter() - t0, "scoring_seconds": scoring[0]}


def role_trl(s: common.Setup) -> dict:
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging
    from trl import DPOConfig, DPOTrainer

    hf_logging.disable_progress_bar()
    tok = PreTrainedTokenizerFast.from_pretrained(s.ref)
    ds = load_dataset("json", data_files=s.data)["train"]
    ref = AutoModelForCausalLM.from_pretrained(s.ref)
    total, metrics = 0.0, {}
    for ck in common.checkpoint_dirs(s.run):
        args = DPOConfig(output_dir=str(Path(s.work) / "trl"), bf16=False, gradient_checkpointing=False,
                         use_cpu=True, report_to="none", max_length=1024, beta=0.1, dataloader_num_workers=0,
                         disable_tqdm=True)
        trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(ck), ref_model=ref, args=args,
                             train_dataset=ds, eval_dataset=ds, processing_class=tok)
        t0 = time.perf_counter()
        metrics = trainer.evaluate()
        total += time.perf_counter() - t0
    return {"seconds": total, "eval_batch_size": args.per_device_eval_batch_size,
            "last_eval_logps_chosen": metrics.get("eval_logps/chosen")}


def role_floor(s: common.Setup) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from dpo_doctor.data.pairs import load_pairs

    tok = PreTrainedTokenizerFast.from_pretrained(s.ref)
    pairs = load_pairs(Path(s.data), tok, max_length=1024)
    seqs = [torch.tensor([list(p.prompt_ids) + list(r)]) for p in pairs.tokens for r in (p.chosen_ids, p.rejected_ids)]
    total, tokens = 0.0, 0
    for d in [Path(s.ref)] + common.checkpoint_dirs(s.run):
        model = AutoModelForCausalLM.from_pretrained(d).eval()
        with torch.inference_mode():
            t0 = time.perf_counter()
            for ids in seqs:
                model(input_ids=ids, use_cache=False)
            total += time.perf_counter() - t0
        tokens += sum(x.shape[1] for x in seqs)
    return {"seconds": total, "tokens": tokens}


ROLES = {"scan": role_scan, "trl": role_trl, "floor": role_floor}


def summary(setup: common.Setup, res: dict, lengths: dict, load: list) -> dict:
    k = setup.checkpoints
    tokens_all = lengths["tokens"] * (k + 1)  # tokens the K+1 forward passes read
    out = {
        "benchmark": "scan_throughput", "date": time.strftime("%Y-%m-%d %H:%M"), "device": "cpu, 1 torch thread",
        "model_params": setup.params, "vocab": setup.vocab, "pairs": setup.n_pairs, "checkpoints": k,
        "passes_floor": k + 1, "lengths": lengths,
        "seconds": {r: round(v["seconds"], 2) for r, v in res.items()},
        "pairs_per_s": {r: round(setup.n_pairs * k / v["seconds"], 2) for r, v in res.items()},
        "tokens_per_s": {r: round(tokens_all / v["seconds"], 1) for r, v in res.items()},
        "peak_rss_mb": {r: v["peak_rss_mb"] for r, v in res.items()},
    }
    if "scan" in res:
        out["scan_scoring_seconds"] = round(res["scan"]["scoring_seconds"], 2)
    if "scan" in res and "floor" in res:
        out["scan_over_floor"] = round(res["scan"]["seconds"] / res["floor"]["seconds"], 3)
        out["scan_scoring_over_floor"] = round(res["scan"]["scoring_seconds"] / res["floor"]["seconds"], 3)
    if "scan" in res and "trl" in res:
        out["trl_over_scan"] = round(res["trl"]["seconds"] / res["scan"]["seconds"], 3)
        out["scan_rss_over_trl"] = round(res["scan"]["peak_rss_mb"] / res["trl"]["peak_rss_mb"], 3)
    if "trl" in res and "floor" in res:
        out["trl_over_floor"] = round(res["trl"]["seconds"] / res["floor"]["seconds"], 3)
    out["loadavg_before_after"] = load
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return common.child_main(ROLES)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--checkpoints", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=320)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--roles", default="floor,scan,trl", help="which contenders to run, comma-separated")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        setup = common.build(Path(work), a.pairs, a.checkpoints, hidden=a.hidden, layers=a.layers)
        lengths = common.length_stats(setup)
        before = common.loadavg()
        res = {role: common.run_child(__file__, role, setup) for role in a.roles.split(",")}
        print(json.dumps(summary(setup, res, lengths, [before, common.loadavg()])))


if __name__ == "__main__":
    main()
