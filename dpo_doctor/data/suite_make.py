"""`dpo-doctor suite make`: turn a data set with reference answers into a verifiable probe suite.

A task's own checks are the best quality signal a scan can have (held-out questions of the task the run was trained
for). Given any table the pairs reader reads (JSONL, JSON, Parquet, CSV, a `datasets.save_to_disk` folder) or a Hub
dataset id, with a prompt column and an answer column, this writes `OUT/manifest.json` + `OUT/prompts.jsonl` in the
suite format dpo_doctor/data/suites.py loads (`{prompt, answer, check}` rows), so that
`dpo-doctor scan ... --probe-suite OUT` grades every checkpoint's answers on them. Rows are checked with the same
parser a scan uses, so a suite that is written also loads. Keep the questions apart from the training data (and from
any questions you grade the final model on) so the suite measures the skill, not memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dpo_doctor.data.suites import CHECKS, parse_row
from dpo_doctor.errors import UserError, did_you_mean
from dpo_doctor.files import ensure_dir, write_atomic


def _rows(data) -> list[dict[str, Any]]:
    from dpo_doctor.data.hub import is_dataset_source, read_dataset
    from dpo_doctor.data.pairs import read_rows

    if is_dataset_source(data):
        return read_dataset(data, "DATA")
    path = Path(data)
    if not path.exists():
        raise UserError(f"{data}: no such file or folder; pass a JSONL/JSON/Parquet/CSV file, a saved dataset folder "
                        f"or a Hub dataset id with a prompt column and an answer column")
    return read_rows(path)


def _column(rows: list[dict], name: str, flag: str, data) -> None:
    keys = sorted({str(k) for r in rows[:50] for k in r})
    if not any(name in r for r in rows[:50]):
        raise UserError(f"{flag} {name}: {data} has no column {name!r}{did_you_mean(name, keys)} (columns: "
                        f"{', '.join(keys)})")


def make_suite(data, prompt_col: str, answer_col: str, check: str, out: Path, name: str | None = None,
               max_rows: int | None = None) -> tuple[Path, int]:
    """Write the suite; returns (its folder, the number of prompts). Every row is checked as a scan would."""
    if check not in CHECKS:
        raise UserError(f"--check {check!r}{did_you_mean(check, CHECKS)}: use one of {', '.join(CHECKS)}")
    if max_rows is not None and max_rows <= 0:
        raise UserError(f"--max-rows {max_rows}: must be a positive number of rows")
    rows = _rows(data)
    if not rows:
        raise UserError(f"{data}: no rows to turn into a suite")
    _column(rows, prompt_col, "--prompt-col", data)
    _column(rows, answer_col, "--answer-col", data)
    out_rows, seen = [], set()
    for i, row in enumerate(rows[:max_rows] if max_rows else rows):
        where = f"{data}: row {i + 1}"
        answer = row.get(answer_col)
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            answer = str(answer)  # numbers in a CSV or Parquet column are answers too
        item = {"prompt": row.get(prompt_col), "answer": answer, "check": check}
        prompt, task = parse_row(item, check, where)
        if prompt in seen:
            continue  # one prompt once: a repeated question would count twice in every paired test
        seen.add(prompt)
        out_rows.append({"prompt": prompt, "answer": task.answer, "check": check})
    out = Path(out)
    ensure_dir(out, "suite folder")
    manifest = {"name": name or out.name, "file": "prompts.jsonl", "n_prompts": len(out_rows), "checker": check,
                "source": str(data), "description": f"Made by dpo-doctor suite make from {data} (prompt column "
                f"{prompt_col!r}, answer column {answer_col!r}, check {check!r})."}
    write_atomic(out / "prompts.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out_rows))
    write_atomic(out / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return out, len(out_rows)
