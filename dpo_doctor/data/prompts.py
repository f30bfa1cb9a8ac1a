"""Prompt sets for the generation probes: a user's JSONL file, a shipped probe suite, or the held-out pairs.

A prompt is a string (standard format, tokenized as is) or a list of chat messages (conversational, rendered with
the tokenizer's chat template and a generation prompt), exactly as the pairs' prompts are. Suites live in
`probes/<name>/` (installed as `dpo_doctor.probes`) as data: `manifest.json` plus `prompts.jsonl` (string prompts,
with answers and checks in a verifiable suite); `data.suites` loads them, and user suites by path. The `mirror`
suite has no file and means "the held-out pairs' prompts".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dpo_doctor.data.jsonl import read_jsonl
from dpo_doctor.data.messages import check_text, misspelled
from dpo_doctor.data.suites import Suite, load_suite, suite_names  # noqa: F401 (suites live there)
from dpo_doctor.errors import UserError

Prompt = str | list[dict]
MIRROR = "mirror"


def parse_prompt(value: Any, where: str) -> Prompt:
    """Validate one `prompt` value; `where` ("FILE: line N") goes into the error (see `data.messages`)."""
    value = check_text(value, where, "prompt")
    if isinstance(value, str):
        if not value.strip():
            raise UserError(f"{where}: empty prompt; every line needs a non-empty \"prompt\"")
        return value
    return [{"role": m["role"], "content": m["content"]} for m in value]


def load_prompts(path: str | Path) -> list[Prompt]:
    """Read `--prompts PATH`: JSONL, one `{"prompt": ...}` object a line (blank lines skipped)."""
    from dpo_doctor.data.hub import is_dataset_source, read_dataset

    if is_dataset_source(path):  # a Hub dataset id or a folder of data files, with a prompt column
        rows = read_dataset(path, "--prompts")
        missing = [i for i, r in enumerate(rows) if "prompt" not in r]
        if missing:
            raise UserError(f"--prompts {path}: row index {missing[0]} has no \"prompt\" column "
                            f"(columns: {sorted(rows[missing[0]])})")
        return [parse_prompt(r["prompt"], f"{path}: row index {i}") for i, r in enumerate(rows)]
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: prompt file not found; pass --prompts with a JSONL file of {{\"prompt\": ...}} lines")
    prompts = []
    for line in read_jsonl(path, "prompt file"):  # the one JSONL reader: UTF-8, JSON, depth, surrogates
        where = f"{path}: line {line.lineno}"
        if "prompt" not in line.obj:
            raise UserError(f"{where}: no \"prompt\" key (keys: {sorted(map(str, line.obj))})"
                            f"{misspelled(['prompt'], line.obj)}; expected one {{\"prompt\": ...}} "
                            "object a line")
        prompts.append(parse_prompt(line.obj["prompt"], where))
    if not prompts:
        raise UserError(f"{path}: no prompts; expected one {{\"prompt\": ...}} object a line")
    return prompts


def as_messages(prompts: list[Prompt]) -> list[Prompt]:
    """String prompts as single user turns, for conversational data (chat models expect their template)."""
    return [[{"role": "user", "content": p}] if isinstance(p, str) else p for p in prompts]


def resolve_prompts(path: str | Path | None, suite: str | Suite | None, pair_prompts: list[Prompt],
                    conversational: bool = False) -> list[Prompt]:
    """The probe prompts of a scan: `--prompts PATH`, else `--probe-suite NAME`, else the held-out pairs' prompts.

    Suite prompts are wrapped as user messages when the data is conversational, so they mirror its format."""
    if path is not None and suite is not None:
        raise UserError(f"--prompts {path} and --probe-suite {suite} both given; pass one of them")
    if path is not None:
        return load_prompts(path)
    suite = load_suite(suite) if suite is not None else None  # read once (a Suite passed in is not read again)
    if suite is None or suite.mirrors_pairs:
        if not pair_prompts:
            raise UserError("no prompts to generate from: the data has no held-out pairs; pass --prompts PATH or "
                            "--probe-suite NAME, or --no-generate")
        return list(pair_prompts)
    prompts = list(suite.prompts)
    return as_messages(prompts) if conversational else prompts
