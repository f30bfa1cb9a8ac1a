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
The trainer comes from the hooks' own arguments (`model`, `processing_class`, the built-in trainer's `ref_model`)
or from `attach(trainer)`, which also gives the trainer's eval set (the eval dataloader holds token ids only) and
its `ref_model`.

Many processes (torchrun / accelerate): every rank takes part in each scan, scoring its shard of the pairs (the
scan's own distributed mode), so no rank waits in a collective while another scores alone; rank 0 writes and
prints, and its stop decision is broadcast once its report is written (rules and report.json: seconds). When the
checkpoint or the pairs are not visible on every rank (an output_dir that is not shared between machines), the
ranks do not scan during training at all, and rank 0 scans the run in `on_train_end`, after the others are done.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from dataclasses import replace
from pathlib import Path

from transformers import TrainerCallback

from dpo_doctor.errors import UserError
from dpo_doctor.files import write_atomic
from dpo_doctor.integrations.trackers import Trackers
from dpo_doctor.scan.config import ScanConfig
from dpo_doctor.severity import SEVERITY_RANK

OUT_NAME = "dpo-doctor"  # reports go to OUTPUT_DIR/dpo-doctor/
# The callback's scan settings when no `config=` is given: ScanConfig's defaults except these. run_dir, data, ref,
# out, beta, max_length, generate, render and data_is_eval are filled in at each save.
DEFAULT_CONFIG = ScanConfig(run_dir=Path("."), data=None, max_pairs=512, generate=False, render=False)
# keyword arguments that are ScanConfig fields, with their defaults: a value other than its default overrides config=
SCAN_KEYWORDS = {"max_pairs": 512, "cache_dir": None, "device": "auto", "dtype": "auto", "select": (), "ignore": (),
                 "rule_settings": ()}


class DoctorCallback(TrainerCallback):
    """Diagnose while training; see the module docstring.

    config        a ScanConfig: every `dpo-doctor scan` setting (max_pairs, cache_dir, device, dtype, select,
                  ignore, rule_settings, trust_remote_code, ...). Default: DEFAULT_CONFIG (ScanConfig's defaults
                  with max_pairs=512). The keyword arguments below that are ScanConfig fields override it when
                  given a value other than their default. The callback fills in, at each save: run_dir (the
                  trainer's output_dir), data, ref, out, beta and max_length (see below), generate (sample_every),
                  render (the callback renders) and data_is_eval.
    data          preference pairs: a file/folder `dpo-doctor scan --data` reads, or a list of pair dicts (written
                  once to OUT/pairs.jsonl). Default: with `attach(trainer)`, the trainer's eval_dataset (written to
                  OUT/eval_pairs.jsonl and marked `data_is_eval`, so DPO004 compares the trainer's eval metrics
                  with the scan's); otherwise, or with no eval set either: log-only diagnoses.
    ref           the reference model dir. Default: PEFT -> the adapters' base; else the trainer's reference (the
                  built-in trainer passes it; TRL's with `attach`) or the policy's source dir
                  (`config._name_or_path`); not a local dir -> the initial policy saved once to OUT/reference/.
                  With TRL and a separate `ref_model`, pass ref= or attach(trainer).
    beta          default: config.beta, else the trainer's args.beta.
    max_length    default: the trainer's args.max_length (so truncation matches training), else config's.
    stop_on       None | "warning" | "error" | codes like ["DPO001", "DPO201"].
    sample_every  generation probes on every N-th save (0: never; samples of earlier checkpoints stay cached).
    report_to     trackers to log to (default: the trainer's args.report_to).
    strict        re-raise a failed diagnosis instead of printing it and training on (tests).
    """

    def __init__(self, data=None, ref=None, beta: float | None = None, out=None, stop_on=None, sample_every: int = 0,
                 max_pairs: int | None = 512, max_length: int | None = None, cache_dir=None, report_to=None,
                 device: str = "auto", dtype: str = "auto", select=(), ignore=(), rule_settings=(),
                 strict: bool = False, config: ScanConfig | None = None):
        given = dict(max_pairs=max_pairs, cache_dir=cache_dir, device=device, dtype=dtype, select=tuple(select),
                     ignore=tuple(ignore), rule_settings=tuple(rule_settings))
        self.config = replace(config if config is not None else DEFAULT_CONFIG,
                              **{k: v for k, v in given.items() if v != SCAN_KEYWORDS[k]},
                              **({"beta": beta} if beta is not None else {}))
        self.data, self.ref, self.out, self.max_length = data, ref, out, max_length
        self.stop_on = _stop_rule(stop_on)
        self.sample_every, self.report_to, self.strict = sample_every, report_to, strict
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
        self._deferred = False  # the run is not visible on every rank: rank 0 scans at on_train_end

    def attach(self, trainer):
        """`DoctorCallback(...).attach(trainer)`: add to a built trainer, which then also gives its eval set (the
        default pairs) and its ref_model."""
        self._trainer = trainer
        trainer.add_callback(self)
        return self

    # ---- the hooks ----------------------------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, processing_class=None, tokenizer=None, **kwargs):
        self._t0, self._doctor_s, self._start_step = time.perf_counter(), 0.0, state.global_step
        self._trackers = Trackers(self.report_to if self.report_to is not None else getattr(args, "report_to", None),
                                  getattr(args, "logging_dir", None))
        self.report_dir = Path(self.out) if self.out is not None else Path(args.output_dir) / OUT_NAME
        tokenizer = processing_class if processing_class is not None else tokenizer
        d = _ranks()
        if d.is_main:  # rank 0 first; the others then reuse its saved reference where the folder is shared
            self._prepare(model, tokenizer, kwargs.get("ref_model"), reuse=False)
        _barrier(d)
        if not d.is_main:
            self._prepare(model, tokenizer, kwargs.get("ref_model"), reuse=True)
        if d.is_main:
            what = f"pairs {self.data_path}" + (" (the trainer's eval set)" if self.data_is_eval else "") \
                if self.data_path is not None else "no pairs: log-only diagnoses (pass data= or attach(trainer))"
            _say(f"diagnosing while training: {what}; reference {self.ref_path or 'from the run'}; "
                 f"reports in {self.report_dir}")

    def _prepare(self, model, tokenizer, ref_model, reuse: bool) -> None:
        self.report_dir.mkdir(parents=True, exist_ok=True)
        self.data_path, self.data_is_eval = self._resolve_data(self._trainer)
        if self.data_path is not None:
            self.ref_path = self._resolve_ref(model, tokenizer, self._trainer, ref_model, reuse)

    def on_log(self, args, state, control, logs=None, **kwargs):
        new = self._new(self._log_findings(args, state))  # every rank: the same log gives the same decision
        if state.is_world_process_zero:
            _print_findings(new, f"step {state.global_step}")
        hit = self._stop_hit(new)
        if hit is not None and self._stop is None:
            self._stop = hit
            control.should_save = True  # save (and scan) this step; on_save stops training after the report

    def on_save(self, args, state, control, model=None, **kwargs):
        d = _ranks()
        name = f"checkpoint-{state.global_step}"
        if model is not None and not _all_ranks(_finite(model, Path(args.output_dir) / name), d):
            self._broken.add(name)  # (a sharded model: each rank checked its own shard)
        self._saves += 1
        # Also the barrier after rank 0 wrote the checkpoint (HF's Trainer calls on_save with none of its own).
        together = not self._deferred and (not d.active or self._visible_everywhere(args, name, d))
        if not together and not self._deferred:
            self._deferred = True
            if d.is_main:
                _say(f"{name} or the pairs are not visible on every rank (an output_dir not shared between "
                     "machines?): no scans during training; rank 0 scans the run when training ends")
        hit, report = None, None
        if together:
            report, spent = self._timed_scan(args, state, single=not d.active)
            if d.is_main and report is not None:
                hit = self._after_scan(state, report, spent)
        hit = self._stop or _from_main(hit, d)
        if report is not None and d.is_main:
            render(self.report_dir)  # after the broadcast: the other ranks do not wait for the HTML
        if hit is not None:
            control.should_training_stop = True
            if d.is_main:
                _say(f"stopping training at step {state.global_step} (stop_on={_stop_text(self.stop_on)}): {hit['code']} "
                     f"{hit['name']} ({hit['severity']}): {hit['message']} Report: {self.report_dir}/report.html")

    def on_train_end(self, args, state, control, **kwargs):
        """Only when the run was not visible on every rank: rank 0 scans it now, alone (the others have returned)."""
        if self._deferred and _ranks().is_main:
            report, spent = self._timed_scan(args, state, single=True)
            if report is not None:
                render(self.report_dir)
                self._after_scan(state, report, spent)

    def _visible_everywhere(self, args, name: str, d) -> bool:
        """Every rank sees the checkpoint, and sees the pairs and the reference the same way (a Hub id is no local
        path on any rank; a local file must be on all of them)."""
        if not _all_ranks((Path(args.output_dir) / name).is_dir(), d):
            return False
        for path in (self.data_path, self.ref_path):
            here = path is not None and Path(path).exists()
            if not (_all_ranks(here, d) or _all_ranks(not here, d)):
                return False
        return True

    def _timed_scan(self, args, state, single: bool) -> tuple[dict | None, float]:
        started = time.perf_counter()
        report = self._diagnose_safely(args, state, single)
        spent = time.perf_counter() - started
        self._doctor_s += spent
        return report, spent

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
        max_pairs = self.config.max_pairs
        return path, max_pairs is None or len(rows) <= max_pairs  # a subset is not the trainer's set

    def _resolve_ref(self, model, tokenizer, trainer, ref_model, reuse: bool = False) -> Path | None:
        if self.ref is not None:
            return Path(self.ref)
        if getattr(model, "peft_config", None) is not None:
            return None  # discovery: the adapters' base from adapter_config.json
        ref_model = ref_model if ref_model is not None else getattr(trainer, "ref_model", None)
        source = getattr(ref_model, "module", ref_model) if ref_model is not None else model
        name = getattr(getattr(source, "config", None), "_name_or_path", "") or ""
        if name and Path(name).is_dir():
            return Path(name)
        path = self.report_dir / "reference"
        if reuse and (path / "config.json").is_file():
            return path  # rank 0 saved it in a shared folder
        return save_reference(source, tokenizer, path)

    # ---- on_log: the log rules ------------------------------------------------------------------------------------

    def _log_findings(self, args, state) -> list[dict]:
        from dpo_doctor.rules import RunFacts, parse_settings, run_rules
        from dpo_doctor.scan.pipeline import run_facts

        frame = log_frame(state.log_history)
        if frame is None:
            return []
        overrides = parse_settings(self.config.rule_settings)
        facts = run_facts([], {}, {}, None, self._beta(args) or RunFacts.beta, None, frame, False, log_only=True)
        found = run_rules(facts, select=set(self.config.select) or None, ignore=set(self.config.ignore) or None,
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

    def _diagnose_safely(self, args, state, single: bool) -> dict | None:
        try:
            return self._diagnose(args, single)
        except Exception as exc:  # the doctor must not kill the training it watches
            if self.strict:
                raise
            detail = str(exc) if isinstance(exc, UserError) else traceback.format_exc()
            _say(f"could not diagnose checkpoint-{state.global_step}; training goes on. {detail}")
            return None

    def _diagnose(self, args, single: bool) -> dict | None:
        """One scan of the run (the report on rank 0, None on the others); `single`: this process alone."""
        from dpo_doctor.scan.pipeline import scan

        with isolated_from_training(single):
            out = scan(self.scan_config(args))
        return read_report(out) if _ranks().is_main or single else None

    def scan_config(self, args) -> ScanConfig:
        """The ScanConfig of the next scan: `config` with this run's folder, pairs, reference and settings."""
        from dpo_doctor.discover import discover

        run_dir = Path(args.output_dir)
        names = [c.name for c in discover(run_dir, ref=self.ref_path).checkpoints] if self._broken else []
        kept = [n for n in names if n not in self._broken]
        return replace(self.config, run_dir=run_dir, ref=self.ref_path, beta=self._beta(args), out=self.report_dir,
                       data=self.data_path if kept or not self._broken else None,  # all broken: the log alone
                       max_length=self._max_length(args), skip_checkpoints=tuple(sorted(self._broken & set(names))),
                       generate=self.sample_every > 0 and self._saves % self.sample_every == 0, render=False,
                       data_is_eval=self.data_is_eval)

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
        if self.config.max_pairs is not None:
            parts += ["--max-pairs", str(self.config.max_pairs)]
        if self.config.cache_dir is not None:
            parts += ["--cache-dir", str(self.config.cache_dir)]
        return " ".join(parts)

    def _beta(self, args) -> float | None:
        beta = self.config.beta if self.config.beta is not None else getattr(args, "beta", None)
        return float(beta) if isinstance(beta, (int, float)) and beta > 0 else None

    def _max_length(self, args) -> int | None:
        if self.max_length is not None:
            return self.max_length
        return getattr(args, "max_length", self.config.max_length)


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
    """report.json, validated by the one report loader, as its JSON dict: the callback handles diagnoses in the
    dict shape the rules write (`Diagnosis.to_dict`), since its log-only findings and the trackers share it."""
    from dpo_doctor.report import read_report

    return read_report(Path(out) / "report.json")[1]


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


def _finite(model, path: Path) -> bool:
    """The scan's finite-weights check on the in-memory model (a sharded model: this rank's shards)."""
    from dpo_doctor.scan.pipeline import check_finite_weights

    try:
        check_finite_weights(model, path)
    except UserError:
        return False
    return True


def _ranks():
    """This process's place among the trainer's processes (engine.distributed.Dist; world 1 when not distributed).
    Never initializes a process group: the trainer has (or has not)."""
    from dpo_doctor.engine.distributed import Dist

    try:
        import torch.distributed as dist
    except ImportError:
        return Dist()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return Dist()
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def _all_ranks(flag: bool, d) -> bool:
    from dpo_doctor.engine.distributed import all_true

    return all_true(flag, d)


def _barrier(d) -> None:
    from dpo_doctor.engine.distributed import barrier

    barrier(d)


def _from_main(value: dict | None, d) -> dict | None:
    """Rank 0's stop decision (a JSON-able dict or None) on every rank, as JSON bytes (nothing is unpickled)."""
    if not d.active:
        return value
    from dpo_doctor.engine.distributed import gather_bytes

    return json.loads(gather_bytes(json.dumps(value).encode() if d.is_main else b"", d)[0])


@contextlib.contextmanager
def isolated_from_training(single: bool = True):
    """The scan must leave training as it was: RNG states restored (the scan seeds torch), HF progress bars as they
    were; `single`: the scan runs as one process (its distributed mode would wait for the other ranks)."""
    import random

    import numpy as np
    import torch
    from transformers.utils import logging as hf_logging

    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
           torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    bars, world = hf_logging.is_progress_bar_enabled(), os.environ.get("WORLD_SIZE")
    if single:
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
