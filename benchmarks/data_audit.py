"""`dpo-doctor data` speed: 60,000 pairs (UltraFeedback's size) without a model, and pairs/s with --ref vs its floor.

No model: a synthetic 60k-pair JSONL in a Zipfian pseudo-language (`_common.Language`), prompts of 8-40 words,
answers of 40-260 words (about UltraFeedback's ~1,400 characters), with 2% duplicated rows and 1% swapped
(contradictory) rows, audited by the installed console script end to end (read, every statistic, MinHash near
duplicates, edit distances, rules, report.json, Parquet, filter_ids.jsonl, HTML and Markdown). Target: under 60 s.

With --ref: the 8.1M-parameter Llama of the scan benchmarks (`_common.build`) on 256 pairs of its own language
(truncated to 256 tokens): the audit's reference pass (log-probs + hidden-state sums, one forward pass per answer)
against the floor, the engine's plain log-prob pass over the same tokens (`score_pairs`, bucketed, no hidden
states), both timed with their model load, in this process on one torch thread. Prints one JSON line; the CPU
seconds of the no-model CLI run are reported next to its wall time (on a loaded machine the wall time measures the
load).

    python benchmarks/data_audit.py [--pairs 60000] [--ref-pairs 256]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, Language, build

CLI = Path(sys.executable).parent / "dpo-doctor"


def sentences(lang: Language, rng, n: int, lo: int, hi: int) -> list[str]:
    """n sentences of lo-hi words with the language's Zipf frequencies (numpy: 60k x 3 texts in seconds)."""
    import numpy as np

    words, p = np.array(lang.words), np.array(lang.weights) / sum(lang.weights)
    sizes = rng.integers(lo, hi + 1, n)
    flat = words[rng.choice(len(words), size=int(sizes.sum()), p=p)]
    ends = np.cumsum(sizes)
    return [" ".join(flat[e - k:e]) for e, k in zip(ends, sizes)]


def write_pairs(path: Path, n: int, seed: int = 0) -> None:
    import numpy as np

    lang, rng, gen = Language(seed=seed), random.Random(seed), np.random.default_rng(seed)
    m = n - n // 50 - n // 100
    rows = [{"prompt": p + "?", "chosen": " " + c + ".", "rejected": " " + r + "."} for p, c, r in zip(
        sentences(lang, gen, m, 8, 40), sentences(lang, gen, m, 40, 260), sentences(lang, gen, m, 40, 260))]
    rows += [dict(rng.choice(rows)) for _ in range(n // 50)]
    rows += [{"prompt": r["prompt"], "chosen": r["rejected"], "rejected": r["chosen"]}
             for r in rng.sample(rows, n // 100)]
    rng.shuffle(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def no_model(work: Path, n: int) -> dict:
    data = work / f"pairs-{n}.jsonl"
    if not data.exists():
        write_pairs(data, n)
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([str(CLI), "data", str(data), "--out", str(work / "out")], capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    doc = json.loads((work / "out" / "report.json").read_text())
    stats = doc["data"]["stats"]
    return {"pairs": n, "mb": round(data.stat().st_size / 1e6, 1), "cli_wall_s": round(wall, 1),
            "cli_cpu_s": round(cpu, 1),
            "audit_wall_s": doc["settings"]["wall_s"], "under_60s": wall < 60,
            "pairs_per_s": round(n / wall), "found": [d["code"] for d in doc["diagnoses"]],
            "exact_duplicate_frac": round(stats["data/exact_duplicate_frac"], 4),
            "contradiction_frac": round(stats["data/contradiction_frac"], 4)}


def with_ref(work: Path, n: int) -> dict:
    import numpy as np
    import torch

    from dpo_doctor.audit.config import AuditConfig
    from dpo_doctor.audit.pipeline import load, reference_pass, _tokenizer
    from dpo_doctor.engine.devices import pad_id
    from dpo_doctor.engine.loading import load_model
    from dpo_doctor.engine.pairs import PairScores, score_pairs

    torch.set_num_threads(1)
    (work / "world").mkdir(exist_ok=True)
    setup = build(work / "world", n_pairs=n, k=0, response_words=(16, 140))
    cfg = AuditConfig(data=Path(setup.data), ref=Path(setup.ref), out=work / "ref-out", max_length=256)
    tok, spec = _tokenizer(cfg, [])
    loaded = load(cfg, tok)
    tokens = [t for t in loaded.trained if t is not None]
    n_tokens = sum(len(t.prompt_ids) * 2 + len(t.chosen_ids) + len(t.rejected_ids) for t in tokens)
    start = time.perf_counter()
    stats, _ = reference_pass(cfg, spec, tok, loaded, None)
    audit_s = time.perf_counter() - start
    start = time.perf_counter()  # the floor loads the model too, as the audit's pass does
    model = load_model(spec, torch.device("cpu"), torch.float32)
    score_pairs(model, tokens, pad_id(tok), torch.device("cpu"), PairScores.empty(len(tokens)), prefix_sharing=False)
    floor_s = time.perf_counter() - start
    return {"ref_params": setup.params, "ref_pairs": len(tokens), "ref_tokens": n_tokens,
            "ref_audit_s": round(audit_s, 2), "ref_pairs_per_s": round(len(tokens) / audit_s, 1),
            "floor_logprob_pass_s": round(floor_s, 2), "ref_over_floor": round(audit_s / floor_s, 2),
            "ches_norm_median": round(float(stats["ches/norm_median"]), 3) if np.isfinite(
                stats["ches/norm_median"]) else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=60000)
    ap.add_argument("--ref-pairs", type=int, default=256)
    ap.add_argument("--work", type=Path, default=None, help="keep the generated data here (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        out = no_model(work, args.pairs) if args.pairs else {}
        if args.ref_pairs:
            out.update(with_ref(work, args.ref_pairs))
    out["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    print(json.dumps(out))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
