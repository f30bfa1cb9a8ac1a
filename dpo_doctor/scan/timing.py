"""Where a scan's time went: wall seconds per stage and per model, for report.json's `timings`.

Stages (report.json keys): startup (checking the flags, importing torch and transformers), discovery (finding the run, checkpoints and reference), data (tokenizer, pairs, training
log, probe suite, probe prompts), cache (the weights' digests, cache lookups and writes), loading (model weights), pair_scoring (log-probs of the pairs), sampling (generation probes),
kl_scoring (scoring the samples and the pair texts under policy and reference), judging (`--judge`), metrics_rules
(metrics, rules, building report.json) and rendering (HTML/Markdown, added by the CLI after the scan). Per model
(`reference` and each checkpoint): cache, loading, pair_scoring, sampling, kl_scoring, judging. A stage served from the cache
costs ~0 and says so in `settings.from_cache`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from dpo_doctor.report import TIMING_STAGES as STAGES  # report.json's stage keys, owned by the report


class StageClock:
    """Accumulates wall seconds: `with clock("loading", "checkpoint-50"): ...` adds to the stage and the model."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.stages: dict[str, float] = {}
        self.models: dict[str, dict[str, float]] = {}

    @contextmanager
    def __call__(self, stage: str, model: str | None = None):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0, model)

    def add(self, stage: str, seconds: float, model: str | None = None) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds
        if model is not None:
            per = self.models.setdefault(model, {})
            per[stage] = per.get(stage, 0.0) + seconds

    def to_dict(self) -> dict:
        """report.json's `timings`: total_s (wall time from the clock's start), stages, checkpoints."""
        return {"total_s": round(time.perf_counter() - self.started, 4),
                "stages": {s: round(self.stages[s], 4) for s in STAGES if s in self.stages},
                "checkpoints": {m: {s: round(v, 4) for s, v in per.items()} for m, per in self.models.items()}}
