"""`DoctorCallback`: diagnose a DPO run while it trains (a `transformers.TrainerCallback`, so TRL's DPOTrainer
takes it; the built-in trainer takes it too).

on_log   the log rules (NaN, loss at ln 2, early saturation, ...) over `state.log_history`, parsed by
         `dpo_doctor.trainlog` exactly as a later scan parses trainer_state.json; each NEW finding is printed once.
on_save  `dpo_doctor.scan.scan` of the run dir: the code path and cache of `dpo-doctor scan`, so the reference and
         the earlier checkpoints cost nothing and only the new checkpoint is scored, and the numbers equal a later
         scan of the run. report.json, report.html and report.md go to OUTPUT_DIR/dpo-doctor/; new findings are
         printed with the time the diagnosis took in mean training steps; metrics and diagnoses go to the run's
         trackers (integrations/trackers.py).
stop_on  "error", "warning" or codes: training stops (after the report is written) on the first such finding. A
         finding from the log asks the trainer to save now, so the stop still comes with a scanned report.
Only the main process scans, writes and prints; its stop decision is broadcast so every rank stops together.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import time
import traceback
from pathlib import Path

from transformers import TrainerCallback

from dpo_doctor.errors import UserError
from dpo_doctor.files import write_atomic
from dpo_doctor.integrations.trackers import Trackers
from dpo_doctor.scan.config import ScanConfig
from dpo_doctor.severity import SEVERITY_RANK

OUT_NAME = "dpo-doctor"  # reports go to OUTPUT_DIR/dpo-doctor/


class DoctorCallback(TrainerCallback):
    """Diagnose while training; see the module docstring. Every argument mirrors a `dpo-doctor scan` flag except:

    data          preference pairs: a file/folder `dpo-doctor scan --data` reads, or a list of pair dicts (written
                  once to OUT/pairs.jsonl). Default: the trainer's eval_dataset (written to OUT/eval_pairs.jsonl
                  and marked `data_is_eval`, so DPO004 compares the trainer's eval metrics with the scan's); no
                  eval set either: log-only diagnoses.
    ref           the reference model dir. Default: PEFT -> the adapters' base; else the trainer's ref_model or
                  the policy's source dir (`config._name_or_path`); not a local dir -> the initial policy saved
                  once to OUT/reference/.
    stop_on       None | "warning" | "error" | codes like ["DPO001", "DPO201"].
    sample_every  generation probes on every N-th save (0: never; samples of earlier checkpoints stay cached).
    report_to     trackers to log to (default: the trainer's args.report_to).
    strict        re-raise a failed diagnosis instead of printing it and training on (tests).
    """

    def __init__(self, data=None, ref=None, beta: float | None = None, out=None, stop_on=None, sample_every: int = 0,
                 max_pairs: int | None = 512, max_length: int | None = None, cache_dir=None, report_to=None,
                 device: str = ScanConfig.device, dtype: str = ScanConfig.dtype, select=(), ignore=(),
                 rule_settings=(),
                 strict: bool = False):
        self.data, self.ref, self.beta, self.out = data, ref, beta, out
        self.stop_on = _stop_rule(stop_on)
        self.sample_every, self.max_pairs, self.max_length = sample_every, max_pairs, max_length
        self.cache_dir, self.report_to, self.device, self.dtype = cache_dir, report_to, device, dtype
        self.select, self.ignore, self.rule_settings = tuple(select), tuple(ignore), tuple(rule_settings)
        self.strict = strict
        self.data_path: Path | None = None  # resolved at on_train_begin
        self.data_is_eval = False
        self.ref_path: Path | None = None
        self.report_dir: Path | None = None
        self._trainer = None
        self._seen: set[str] = set()  # codes already printed
        self._stop: dict | None = None  # the log finding that asked to stop
        self._broken: set[str] = set()  # checkpoints saved with NaN/Inf weights (not scannable)
        self._saves, self._t0, self._doctor_s, self._start_step = 0, time.perf_counter(), 0.0, 0
        self._trackers: Trackers | None = None
        self._told_command = False

    def attach(self, trainer):
        """`DoctorCallback(...).attach(trainer)`: add to a built trainer, which then also gives its eval set and
        reference (otherwise found on the call stack at on_train_begin)."""
        self._trainer = trainer
        trainer.add_callback(self)
        return self

    # ---- the hooks ----------------------------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        self._t0, self._doctor_s, self._start_step = time.perf_counter(), 0.0, state.global_step
        self._trackers = Trackers(self.report_to if self.report_to is not None else getattr(args, "report_to", None),
                                  getattr(args, "logging_dir", None))
        self.report_dir = Path(self.out) if self.out is not None else Path(args.output_dir) / OUT_NAME
        if not state.is_world_process_zero:
            return
        self.report_dir.mkdir(parents=True, exist_ok=True)
        trainer = self._trainer or _find_trainer(self)
        self.data_path, self.data_is_eval = self._resolve_data(trainer)
        if self.data_path is not None:
            self.ref_path = self._resolve_ref(model, processing_class, trainer, kwargs.get("ref_model"))
        what = f"pairs {self.data_path}" + (" (the trainer's eval set)" if self.data_is_eval else "") \
            if self.data_path is not None else "no pairs: log-only diagnoses"
        _say(f"diagnosing while training: {what}; reference {self.ref_path or 'from the run'}; "
             f"reports in {self.report_dir}")

    def on_log(self, args, state, control, logs=None, **kwargs):
        new = self._new(self._log_findings(args, state))  # every rank: the same log gives the same decision
        if state.is_world_process_zero:
            _print_findings(new, f"step {state.global_step}")
        hit = self._stop_hit(new)
        if hit is not None and self._stop is None:
            self._stop = hit
            control.should_save = True  # save (and scan) this step; on_save stops training after the report

    def on_save(self, args, state, control, model=None, **kwargs):
        hit = None
        if state.is_world_process_zero:
            started = time.perf_counter()
            report = self._diagnose_safely(args, state, model)
            spent = time.perf_counter() - started
            self._doctor_s += spent
            if report is not None:
                hit = self._after_scan(state, report, spent)
        hit = self._stop or _from_main(hit)
        if hit is not None:
            control.should_training_stop = True
            if state.is_world_process_zero:
                _say(f"stopping training at step {state.global_step} (stop_on={_stop_text(self.stop_on)}): {hit['code']} "
                     f"{hit['name']} ({hit['severity']}): {hit['message']} Report: {self.report_dir}/report.html")

    # ---- on_train_begin: data and reference ---------------------------------------------------------------------

    def _resolve_data(self, trainer) -> tuple[Path | None, bool]:
        if self.data is not None and isinstance(self.data, (str, os.PathLike)):
            return Path(self.data), False
        if self.data is not None:  # a list of pair dicts (or a datasets.Dataset)
            return write_jsonl(self.report_dir / "pairs.jsonl", [dict(r) for r in self.data]), False
        eval_set = getattr(trainer, "eval_dataset", None)
        if eval_set is None or isinstance(eval_set, dict):
            return None, False
        rows = [{k: r[k] for k in ("prompt", "chosen", "rejected") if k in r} for r in eval_set]
        path = write_jsonl(self.report_dir / "eval_pairs.jsonl", rows)
        return path, self.max_pairs is None or len(rows) <= self.max_pairs  # a subset is not the trainer's set

    def _resolve_ref(self, model, tokenizer, trainer, ref_model) -> Path | None:
        if self.ref is not None:
            return Path(self.ref)
        if getattr(model, "peft_config", None) is not None:
            return None  # discovery: the adapters' base from adapter_config.json
        ref_model = ref_model if ref_model is not None else getattr(trainer, "ref_model", None)
        source = getattr(ref_model, "module", ref_model) if ref_model is not None else model
        name = getattr(getattr(source, "config", None), "_name_or_path", "") or ""
        if name and Path(name).is_dir():
            return Path(name)
        return save_reference(source, tokenizer, self.report_dir / "reference")

    # ---- on_log: the log rules ------------------------------------------------------------------------------------

    def _log_findings(self, args, state) -> list[dict]:
        from dpo_doctor.rules import RunFacts, parse_settings, run_rules

        frame = log_frame(state.log_history)
        if frame is None:
            return []
        overrides = parse_settings(self.rule_settings)
        facts = RunFacts(checkpoints=(), beta=self._beta(args) or RunFacts.beta, train_log=frame, log_only=True)
        found = run_rules(facts, select=set(self.select) or None, ignore=set(self.ignore) or None,
                          overrides=overrides)
        return [d.to_dict() for d in found]

    def _new(self, diagnoses: list[dict]) -> list[dict]:
        new = [d for d in diagnoses if d["code"] not in self._seen]
        self._seen.update(d["code"] for d in new)
        return new

    def _stop_hit(self, new: list[dict]) -> dict | None:
        kind, value = self.stop_on
        for d in new:
            if (kind == "severity" and SEVERITY_RANK[d["severity"]] >= SEVERITY_RANK[value]) or \
                    (kind == "codes" and d["code"] in value):
                return d
        return None

    # ---- on_save: the scan ----------------------------------------------------------------------------------------

    def _diagnose_safely(self, args, state, model) -> dict | None:
        try:
            return self._diagnose(args, state, model)
        except Exception as exc:  # the doctor must not kill the training it watches
            if self.strict:
                raise
            detail = str(exc) if isinstance(exc, UserError) else traceback.format_exc()
            _say(f"could not diagnose checkpoint-{state.global_step}; training goes on. {detail}")
            return None

    def _diagnose(self, args, state, model) -> dict:
        from dpo_doctor.scan.pipeline import scan

        name = f"checkpoint-{state.global_step}"
        if model is not None and not _finite(model):
            self._broken.add(name)
        self._saves += 1
        with isolated_from_training():
            out = scan(self._scan_config(args))
        render(out)
        return read_report(out)

    def _scan_config(self, args):
        """`dpo-doctor scan`'s defaults (one ScanConfig) with what this callback sets replaced."""
        from dataclasses import replace

        run_dir = Path(args.output_dir)
        kept = [n for n in checkpoint_names(run_dir) if n not in self._broken]
        data = self.data_path if kept else None  # every checkpoint broken: the log is all there is
        return replace(ScanConfig(run_dir=run_dir), data=data, ref=self.ref_path, beta=self._beta(args),
                       out=self.report_dir, max_pairs=self.max_pairs, max_length=self._max_length(args),
                       cache_dir=self.cache_dir, device=self.device, dtype=self.dtype, select=self.select,
                       ignore=self.ignore, rule_settings=self.rule_settings,
                       checkpoint_filter=tuple(kept) if self._broken else (),
                       generate=self.sample_every > 0 and self._saves % self.sample_every == 0,
                       render=False, data_is_eval=self.data_is_eval)

    def _after_scan(self, state, report: dict, spent: float) -> dict | None:
        diagnoses = report.get("diagnoses") or []
        new = self._new(diagnoses)
        where = f"checkpoint-{state.global_step}"
        _print_findings(new, where)
        steps = max(1, state.global_step - self._start_step)
        mean_step = max(1e-9, (time.perf_counter() - self._t0 - self._doctor_s) / steps)
        _say(f"{where} diagnosed in {spent:.1f} s = {spent / mean_step:.1f} mean training steps "
             f"({mean_step:.2f} s each); verdict {report.get('verdict')}; {self.report_dir}/report.html")
        if not self._told_command and report.get("data"):
            self._told_command = True
            _say(f"the same numbers later: {self.scan_command(report)}")
        checkpoints = report.get("checkpoints") or []
        metrics = checkpoints[-1].get("metrics", {}) if checkpoints else {}
        if self._trackers is not None:
            self._trackers.log(state.global_step, metrics, diagnoses, new)
        return self._stop_hit(new)

    def scan_command(self, report: dict) -> str:
        """The `dpo-doctor scan` command line that reproduces this report's numbers."""
        run = report.get("run") or {}
        data = report.get("data") or {}
        parts = ["dpo-doctor scan", str(run.get("path", "")), "--data", str(self.data_path)]
        if self.ref_path is not None:
            parts += ["--ref", str(self.ref_path)]
        parts += ["--beta", str(run.get("beta")), "--max-length", str(data.get("max_length"))]
        if self.max_pairs is not None:
            parts += ["--max-pairs", str(self.max_pairs)]
        if self.cache_dir is not None:
            parts += ["--cache-dir", str(self.cache_dir)]
        return " ".join(parts)

    def _beta(self, args) -> float | None:
        beta = self.beta if self.beta is not None else getattr(args, "beta", None)
        return float(beta) if isinstance(beta, (int, float)) and beta > 0 else None

    def _max_length(self, args) -> int | None:
        return self.max_length if self.max_length is not None else getattr(args, "max_length", 1024)


# ---- helpers (no trainer state) ----------------------------------------------------------------------------------


def _stop_rule(stop_on) -> tuple[str, object]:
    """("none", None) | ("severity", "warning"|"error"|"info") | ("codes", frozenset); unknown codes -> UserError."""
    if stop_on is None:
        return "none", None
    if isinstance(stop_on, str) and stop_on.lower() in SEVERITY_RANK:
        return "severity", stop_on.lower()
    from dpo_doctor.rules import get_rule

    codes = [stop_on] if isinstance(stop_on, str) else list(stop_on)
    return "codes", frozenset(get_rule(c).code for c in codes)


def log_frame(history: list):
    """`state.log_history` -> the train_log table, through the trainer_state.json reader a later scan uses."""
    from dpo_doctor.trainlog import state as trainer_state
    from dpo_doctor.trainlog.table import Problems, build_frame

    problems = Problems("log_history")
    return build_frame(trainer_state.rows(history, problems), problems)


def read_report(out: Path) -> dict:
    """report.json, validated by the one report loader."""
    from dpo_doctor.report import read_report_json

    return read_report_json(Path(out) / "report.json")


def render(out: Path) -> None:
    """report.html + report.md next to report.json (the scan never renders views itself)."""
    from dpo_doctor.views import render_all

    render_all(out)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def save_reference(model, tokenizer, path: Path) -> Path:
    """The initial policy (or the trainer's in-memory reference) as a model dir the scan can load."""
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path


def checkpoint_names(run_dir: Path) -> list[str]:
    from dpo_doctor.discover import CHECKPOINT_RE

    return sorted((d.name for d in run_dir.iterdir() if d.is_dir() and CHECKPOINT_RE.match(d.name)),
                  key=lambda n: int(n.split("-")[1])) if run_dir.is_dir() else []


def _finite(model) -> bool:
    import torch

    with torch.no_grad():
        return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _find_trainer(callback):
    """The Trainer running this callback, from the call stack (callbacks are not handed the trainer)."""
    frame = inspect.currentframe()
    for _ in range(16):
        frame = frame.f_back if frame is not None else None
        if frame is None:
            return None
        handler = getattr(frame.f_locals.get("self"), "callback_handler", None)
        if handler is not None and callback in getattr(handler, "callbacks", ()):
            return frame.f_locals["self"]
    return None


def _from_main(value):
    """Rank 0's value on every rank (a no-op in a single process)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return value
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def isolated_from_training():
    """The scan must leave training as it was: RNG states restored (the scan seeds torch), HF progress bars as they
    were, and a rank-0-only scan runs as one process (its distributed mode would wait for the other ranks)."""
    import random

    import numpy as np
    import torch
    from transformers.utils import logging as hf_logging

    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
           torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    bars, world = hf_logging.is_progress_bar_enabled(), os.environ.get("WORLD_SIZE")
    os.environ["WORLD_SIZE"] = "1"
    try:
        yield
    finally:
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        if rng[3] is not None:
            torch.cuda.set_rng_state_all(rng[3])
        if world is None:
            os.environ.pop("WORLD_SIZE", None)
        else:
            os.environ["WORLD_SIZE"] = world
        if bars:
            hf_logging.enable_progress_bar()


def _say(text: str) -> None:
    print(f"dpo-doctor: {text}", flush=True)


def _print_findings(new: list[dict], where: str) -> None:
    for d in new:
        _say(f"[{where}] {d['code']} {d['name']} ({d['severity']}): {d['message']}\n"
             f"    fix: {d['recommendation']['text']}")


def _stop_text(rule: tuple[str, object]) -> str:
    kind, value = rule
    return ",".join(sorted(value)) if kind == "codes" else str(value)
