"""The run folder every zoo writes and reads: one place for its layout.

    <out>/<name>/            a run: TRL layout (checkpoint-N/, trainer_state.json, dpo_doctor_config.json),
                             train.jsonl, eval.jsonl, truth.jsonl (+ probes.jsonl for a zoo with a suite),
                             scenario.json (what was injected and every setting), symptoms.json after `zoo measure`

`fresh_run` empties a folder to train into (a finished run is kept), `write_jsonl` is the one JSONL writer,
`read_record` reads scenario.json (checked: a run without one is not a zoo run), `log_endpoints` reads the training
log through the scanner's own reader (dpo_doctor.trainlog), so the zoo sees the log exactly as a scan does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dpo_doctor.errors import UserError
from dpo_doctor.files import write_atomic

RECORD = "scenario.json"
REQUIRED = ("name", "kind", "eval_data", "scan_ref")


def fresh_run(out: Path, name: str, force: bool) -> Path | None:
    """out/<name>/ emptied and ready to train into; None when a finished run (scenario.json) is kept."""
    run = Path(out) / name
    if (run / RECORD).exists() and not force:
        return None
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    return run


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Rows as JSON Lines, written atomically (a crash never leaves half a file)."""
    write_atomic(Path(path), "".join(json.dumps(r) + "\n" for r in rows))
    return Path(path)


def write_record(run: Path, record: dict) -> Path:
    """scenario.json, written last: its presence marks a finished run."""
    return write_atomic(Path(run) / RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_record(run: Path) -> dict:
    """A run's scenario.json; UserError naming the file when it is missing or lacks a required key."""
    path = Path(run) / RECORD
    if not path.exists():
        raise UserError(f"{path}: missing; this folder is not a built zoo run (build it with: dpo-doctor zoo build)")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e}); rebuild the run with: dpo-doctor zoo build --force") from e
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise UserError(f"{path}: missing {', '.join(missing)}; rebuild the run with: dpo-doctor zoo build --force")
    return record


def runs_in(out: Path) -> list[Path]:
    """The finished runs under `out`, sorted by name."""
    return sorted(p.parent for p in Path(out).glob(f"*/{RECORD}"))


def log_endpoints(run: Path) -> dict:
    """Last logged train accuracy / loss and the first, lowest and last eval loss (overfitting shows here), read
    with the scanner's training-log reader."""
    from dpo_doctor.trainlog import read_train_log

    df = read_train_log(Path(run))
    if df is None:
        return {}
    rows = df.to_dicts()
    split = lambda r: r.get("split") or "train"  # noqa: E731
    train = [r for r in rows if split(r) == "train" and r.get("loss") is not None]
    evals = [r for r in rows if split(r) == "eval" and r.get("loss") is not None]
    out = {"train_acc": train[-1].get("rewards/accuracies"), "train_loss": train[-1]["loss"]} if train else {}
    if evals:
        out.update(eval_loss_first=evals[0]["loss"], eval_loss_min=min(r["loss"] for r in evals),
                   eval_loss_last=evals[-1]["loss"], eval_acc_last=evals[-1].get("rewards/accuracies"))
    return out
