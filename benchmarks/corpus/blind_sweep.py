"""The blind pick's two constants (rules/quality.py `early_pick`: the share of the accuracy gain, the KL factor) swept
over the whole corpus, IN-SAMPLE (no folds): how low the mean gap of the pick without a quality signal can go on this
corpus at all. Prints ONE JSON line.

    python benchmarks/corpus/blind_sweep.py --corpus /work/corpus
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import evaluate as corpus_evaluate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("/work/corpus"))
    args = ap.parse_args()
    import dpo_doctor.rules.quality as quality
    from dpo_doctor.rules import run_rules
    from dpo_doctor.rules.best import choose_best

    runs = corpus_evaluate.load_runs(args.corpus, write=False)
    facts = {}
    for r in runs:
        f = corpus_evaluate.facts_of(args.corpus / "reports" / r["spec"]["name"] / "suite")
        if f is not None:
            facts[r["spec"]["name"]] = (r, corpus_evaluate.strip_quality(f))
    defaults = quality.early_pick.__defaults__
    rows = []
    try:
        for share in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
            for kl_factor in (2.0, 4.0, 8.0, float("inf")):
                quality.early_pick.__defaults__ = (*defaults[:2], share, kl_factor)
                gaps = []
                for r, f in facts.values():
                    graded = {k: v for k, v in r["truth"]["quality"].items() if k != "reference"}
                    pick = (choose_best(f, run_rules(f)) or {}).get("name")
                    if pick in graded:
                        gaps.append(100 * (max(graded.values()) - graded[pick]))
                rows.append({"share": share, "kl_factor": kl_factor, "mean_gap": round(sum(gaps) / len(gaps), 2)})
    finally:
        quality.early_pick.__defaults__ = defaults
    best = min(rows, key=lambda x: x["mean_gap"])
    print(json.dumps({"runs": len(facts), "best": best, "grid": rows}))


if __name__ == "__main__":
    main()
