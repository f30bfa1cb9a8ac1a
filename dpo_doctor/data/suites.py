"""Probe suites: a shipped suite by name (`probes/<name>/`, installed as `dpo_doctor.probes`) or a user's by path.

A suite is data: `manifest.json` (name, description, `file`, and `checker`: the default check of its rows) plus a
JSONL file of rows. A row is `{"prompt": str}`, or, in a verifiable suite,
`{"prompt": str, "answer": str, "check": "exact|numeric|choice|regex|json_key"}` (`check` defaults to the
manifest's `checker`). What each check accepts (dpo_doctor/metrics/task_accuracy.py scores them):
* exact: the answer text, compared case- and punctuation-insensitively with the whole completion;
* contains: the answer text, found as whole words anywhere in the completion (case- and punctuation-insensitive);
* numeric: a number, compared with the last number in the completion (an optional `"tolerance": T` row field
  accepts any number within T of it: a task whose notion of right is "close enough");
* choice: one capital letter (the option the prompt lists), compared with the letter the completion picks;
* regex: a Python regular expression searched in the stripped completion (anchor it with ^...$ for a whole answer);
* json_key: a key the completion's JSON object must have.
`--probe-suite` takes a shipped name, a suite folder (with manifest.json) or a JSONL file of rows. Rows are
checked when the suite is loaded, so a typo costs an error naming FILE and line, never a scan. The `mirror` suite has
no file and means "the held-out pairs' prompts".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from dpo_doctor.data.jsonl import describe, read_json, read_jsonl
from dpo_doctor.errors import UserError, did_you_mean

CHECKS = ("exact", "contains", "numeric", "choice", "regex", "json_key")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Task:
    """One verifiable prompt: the answer the checker `check` accepts."""
    prompt: str
    answer: str
    check: str
    tolerance: float = 0.0  # numeric only: accept |got - answer| <= tolerance


@dataclass(frozen=True)
class Suite:
    name: str
    manifest: dict[str, Any]
    prompts: tuple[str, ...]  # empty for the mirror suite
    tasks: tuple[Task, ...] = ()  # one per prompt in a verifiable suite, else empty

    @property
    def mirrors_pairs(self) -> bool:
        return not self.manifest.get("file")

    @property
    def verifiable(self) -> bool:
        return bool(self.tasks)

    @property
    def answers(self) -> tuple[tuple[str, str, float], ...]:
        """(answer, check, tolerance) per prompt id: what metrics.task_accuracy scores the samples against."""
        return tuple((t.answer, t.check, t.tolerance) for t in self.tasks)


def _suites_root():
    return resources.files("dpo_doctor.probes")


def suite_names() -> list[str]:
    return sorted(p.name for p in _suites_root().iterdir() if (p / "manifest.json").is_file())


def _check_answer(answer: Any, check: str, where: str) -> str:
    """The answer as text, or a UserError saying why it cannot be checked that way."""
    if isinstance(answer, (int, float)) and not isinstance(answer, bool) and check == "numeric":
        answer = str(answer)
    if not isinstance(answer, str) or not answer.strip():
        raise UserError(f"{where}: \"answer\" must be a non-empty string for check {check!r}, got "
                        f"{describe(answer)}")
    if check == "numeric" and not NUMBER.fullmatch(answer.strip().replace(",", "")):
        raise UserError(f"{where}: numeric answer {answer!r} is not a number (write e.g. \"42\" or \"-3.5\")")
    if check == "choice" and not re.fullmatch(r"[A-Z]", answer.strip()):
        raise UserError(f"{where}: choice answer {answer!r} must be one capital letter (e.g. \"B\")")
    if check == "regex":
        try:
            re.compile(answer)
        except re.error as exc:
            raise UserError(f"{where}: regex answer {answer!r} does not compile ({exc})") from None
    return answer.strip() if check != "regex" else answer


def parse_row(row: Any, default_check: str | None, where: str) -> tuple[str, Task | None]:
    """(prompt, task or None) of one JSONL row; `where` ("FILE: line N") goes into every error."""
    if not isinstance(row, dict) or "prompt" not in row:
        raise UserError(f"{where}: expected an object with a \"prompt\" key, got {describe(row)}")
    prompt = row["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError(f"{where}: \"prompt\" must be a non-empty string, got {describe(prompt)}")
    check = row.get("check", default_check if "answer" in row else None)
    if check is None:
        return prompt, None
    if check not in CHECKS:
        raise UserError(f"{where}: unknown check {check!r}{did_you_mean(check, CHECKS)} (one of {', '.join(CHECKS)})")
    if "answer" not in row:
        raise UserError(f"{where}: check {check!r} needs an \"answer\"")
    return prompt, Task(prompt, _check_answer(row["answer"], check, where), check, _tolerance(row, check, where))


def _tolerance(row: dict, check: str, where: str) -> float:
    if "tolerance" not in row:
        return 0.0
    tol = row["tolerance"]
    if check != "numeric":
        raise UserError(f"{where}: \"tolerance\" applies to numeric checks only, not {check!r}; remove it")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0 or tol == float("inf"):
        raise UserError(f"{where}: \"tolerance\" must be a finite number >= 0, got {describe(tol)}")
    return float(tol)


def read_rows(path: Path, default_check: str | None) -> tuple[tuple[str, ...], tuple[Task, ...]]:
    """Prompts and tasks of a suite's JSONL file (read by data.jsonl, the one JSONL reader); a suite is verifiable
    only if every row is."""
    prompts, tasks = [], []
    for line in read_jsonl(path, "probe suite"):
        where = f"{path}: line {line.lineno}"
        prompt, task = parse_row(line.obj, default_check, where)
        if (tasks and task is None) or (prompts and task is not None and not tasks):
            raise UserError(f"{where}: some rows have an answer to check and some do not; give every row an "
                            f"\"answer\" (and \"check\") or none")
        prompts.append(prompt)
        tasks += [task] if task is not None else []
    if not prompts:
        raise UserError(f"{path}: no prompts; expected one {{\"prompt\": ...}} object a line")
    return tuple(prompts), tuple(tasks)


def _manifest(path: Path) -> dict[str, Any]:
    manifest = read_json(path, "probe-suite manifest")
    if not isinstance(manifest, dict):
        raise UserError(f"{path}: expected a JSON object with name, description, file and checker")
    checker = manifest.get("checker")
    if checker is not None and checker not in CHECKS:
        raise UserError(f"{path}: unknown checker {checker!r}{did_you_mean(checker, CHECKS)} "
                        f"(one of {', '.join(CHECKS)})")
    return manifest


def _from_folder(folder: Path, name: str) -> Suite:
    manifest = _manifest(folder / "manifest.json")
    if not manifest.get("file"):
        return Suite(manifest.get("name", name), manifest, ())
    data = folder / manifest["file"]
    if not data.is_file():
        raise UserError(f"{folder / 'manifest.json'}: its file {manifest['file']!r} is missing from {folder}")
    prompts, tasks = read_rows(data, manifest.get("checker"))
    return Suite(manifest.get("name", name), manifest, prompts, tasks)


def load_suite_path(path: str | Path) -> Suite:
    """A user suite: a folder with manifest.json, or a JSONL file of rows (its name: the file's stem)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "manifest.json").is_file():
            raise UserError(f"{path}: a probe-suite folder needs a manifest.json (name, description, file, checker)")
        return _from_folder(path, path.name)
    if not path.is_file():
        raise UserError(f"{path}: probe suite not found; pass a shipped name ({', '.join(suite_names())}), a folder "
                        f"with manifest.json, or a JSONL file of {{\"prompt\", \"answer\", \"check\"}} rows")
    prompts, tasks = read_rows(path, None)
    return Suite(path.stem, {"name": path.stem, "file": path.name, "source": "user"}, prompts, tasks)


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or spec.endswith((".jsonl", ".json")) or Path(spec).exists()


def find_suite(spec: str) -> Path:
    """Where `--probe-suite SPEC` is, without reading it: a shipped suite's folder, else the user's folder or JSONL
    file; an unknown name or a missing path is a UserError (the nearest shipped name suggested)."""
    names = suite_names()
    if spec in names:
        return Path(str(_suites_root() / spec))
    if _looks_like_path(spec):
        path = Path(spec)
        if path.is_dir() and not (path / "manifest.json").is_file():
            raise UserError(f"{path}: a probe-suite folder needs a manifest.json (name, description, file, checker)")
        if not path.exists():
            raise UserError(f"{path}: probe suite not found; pass a shipped name ({', '.join(names)}), a folder "
                            f"with manifest.json, or a JSONL file of {{\"prompt\", \"answer\", \"check\"}} rows")
        return path
    raise UserError(f"unknown probe suite {spec!r}{did_you_mean(spec, names)} (choose one of {', '.join(names)}, "
                    f"or pass a suite folder or JSONL file)")


def load_suite(spec: str | Suite) -> Suite:
    """`--probe-suite SPEC`: a shipped suite by name, else a user suite by path; unknown names suggest the nearest.
    A Suite already loaded is returned as it is (callers that have one need not read it again)."""
    if isinstance(spec, Suite):
        return spec
    path = find_suite(spec)
    if spec in suite_names():
        return _from_folder(path, spec)
    return load_suite_path(path)
