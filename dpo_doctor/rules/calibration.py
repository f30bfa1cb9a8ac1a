"""Measured rates of each rule on the calibration corpus (calibration.json, written by
benchmarks/corpus/evaluate.py): what `dpo-doctor explain CODE` states about how often the rule is right.

The numbers are held out (leave-one-out over model families or models, as `folds_by` says): thresholds chosen on
the other folds, counted on the held-out one, pooled over the rotations. A rule the corpus never saw (no run whose measured outcome has its kind) says so.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

MODES = (("plain", "without a quality signal"), ("suite", "with a verifiable probe suite"))


@lru_cache(maxsize=1)
def load() -> dict:
    """The packaged calibration.json ({} when it is missing, e.g. a source tree without a corpus evaluation)."""
    try:
        text = resources.files("dpo_doctor.rules").joinpath("calibration.json").read_text()
    except FileNotFoundError:
        return {}
    return json.loads(text)


def _rate(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.0f}%)" if d else "no runs"


def describe(code: str) -> str | None:
    """Lines on the rule's measured held-out detection and false-alarm rates, or None without data."""
    data = load()
    row = (data.get("rules") or {}).get(code.upper())
    if not row:
        return None
    unit = data.get("folds_by", "family")
    lines = [f"Measured on the calibration corpus ({data.get('runs', '?')} TRL DPO runs, truth from measured outcomes; "
             f"held out: thresholds chosen on the other {unit} folds, counted on each {unit} in turn; "
             f"benchmarks/README.md has the tables):"]
    for mode, label in MODES:
        h = (row.get(mode) or {}).get("held_out")
        if not h:
            continue
        lines.append(f"  {label}: detected {_rate(h['detected'], h['positives'])} of the runs that had it; "
                     f"fired on {_rate(h['false_alarms'], h['healthy'])} of the healthy runs and on "
                     f"{_rate(h['other_alarms'], h['others'])} of the runs without it")
    return "\n".join(lines) if len(lines) > 1 else None
