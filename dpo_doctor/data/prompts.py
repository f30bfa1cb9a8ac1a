"""Prompt sets for the generation probes: a user's JSONL file, a shipped probe suite, or the held-out pairs.

A prompt is a string (standard format, tokenized as is) or a list of chat messages (conversational, rendered with
the tokenizer's chat template and a generation prompt), exactly as the pairs' prompts are. Suites live in
`probes/<name>/` (installed as `dpo_doctor.probes`) as data: `manifest.json` plus `prompts.jsonl` (string prompts); the `mirror` suite has
no file and means "the held-out pairs' prompts".
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from dpo_doctor.errors import UserError

Prompt = str | list[dict]
MIRROR = "mirror"


def _suites_root():
    return resources.files("dpo_doctor.probes")


def suite_names() -> list[str]:
    return sorted(p.name for p in _suites_root().iterdir() if (p / "manifest.json").is_file())


@dataclass(frozen=True)
class Suite:
    name: str
    manifest: dict[str, Any]
    prompts: tuple[str, ...]  # empty for the mirror suite

    @property
    def mirrors_pairs(self) -> bool:
        return not self.manifest.get("file")


def _check_message(m: Any) -> bool:
    return isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)


def parse_prompt(value: Any, where: str) -> Prompt:
    """Validate one `prompt` value; `where` ("FILE:LINE") goes into the error."""
    if isinstance(value, str):
        if not value.strip():
            raise UserError(f"{where}: empty prompt; every line needs a non-empty \"prompt\"")
        return value
    if isinstance(value, list) and value and all(_check_message(m) for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise UserError(f"{where}: \"prompt\" must be a non-empty string or a list of "
                    f"{{\"role\": str, \"content\": str}} messages, got {json.dumps(value)[:80]}")


def load_prompts(path: str | Path) -> list[Prompt]:
    """Read `--prompts PATH`: JSONL, one `{"prompt": ...}` object a line (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: prompt file not found; pass --prompts with a JSONL file of {{\"prompt\": ...}} lines")
    prompts = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{n}: not valid JSON ({exc.msg}); expected one {{\"prompt\": ...}} object a line")
        if not isinstance(row, dict) or "prompt" not in row:
            raise UserError(f"{path}:{n}: expected an object with a \"prompt\" key, got {line.strip()[:80]}")
        prompts.append(parse_prompt(row["prompt"], f"{path}:{n}"))
    if not prompts:
        raise UserError(f"{path}: no prompts; expected one {{\"prompt\": ...}} object a line")
    return prompts


def load_suite(name: str) -> Suite:
    """A shipped probe suite by name; unknown names suggest the nearest."""
    names = suite_names()
    if name not in names:
        near = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {near[0]}? " if near else ""
        raise UserError(f"unknown probe suite {name!r}; {hint}choose one of {', '.join(names)}")
    folder = _suites_root() / name
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    if not manifest.get("file"):
        return Suite(name, manifest, ())
    rows = [json.loads(line) for line in (folder / manifest["file"]).read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return Suite(name, manifest, tuple(r["prompt"] for r in rows))


def as_messages(prompts: list[Prompt]) -> list[Prompt]:
    """String prompts as single user turns, for conversational data (chat models expect their template)."""
    return [[{"role": "user", "content": p}] if isinstance(p, str) else p for p in prompts]


def resolve_prompts(path: str | Path | None, suite: str | None, pair_prompts: list[Prompt],
                    conversational: bool = False) -> list[Prompt]:
    """The probe prompts of a scan: `--prompts PATH`, else `--probe-suite NAME`, else the held-out pairs' prompts.

    Suite prompts are wrapped as user messages when the data is conversational, so they mirror its format."""
    if path is not None and suite is not None:
        raise UserError(f"--prompts {path} and --probe-suite {suite} both given; pass one of them")
    if path is not None:
        return load_prompts(path)
    if suite is None or load_suite(suite).mirrors_pairs:
        if not pair_prompts:
            raise UserError("no prompts to generate from: the data has no held-out pairs; pass --prompts PATH or "
                            "--probe-suite NAME, or --no-generate")
        return list(pair_prompts)
    prompts = list(load_suite(suite).prompts)
    return as_messages(prompts) if conversational else prompts
