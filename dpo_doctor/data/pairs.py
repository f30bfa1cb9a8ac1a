"""Preference data: read pairs from disk, normalize TRL's four formats, tokenize exactly as TRL does.

Files written for other trainers (LLaMA-Factory, OpenRLHF, ms-swift, or any columns via `--columns`) are first
turned into TRL rows by `data.formats`, with the prompt each trainer builds; the rest is the same.

Formats (TRL `docs/dpo_trainer.md`): standard or conversational, each with an explicit `prompt` column or an
implicit prompt (the common prefix of `chosen` and `rejected`). Tokenization follows TRL 1.x
`DPOTrainer._prepare_dataset` + `DataCollatorForPreference`: EOS appended to standard responses, chat template for
conversational rows (prompt with `add_generation_prompt=True`), the completion starting where the tokenized prompt
and prompt+completion diverge, `keep_start` truncation to `max_length` per sequence, and pairs whose prompt alone
fills `max_length` dropped. Same tokens, same masks, so our numbers agree with the training logs.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpo_doctor.data.formats import DataSpec, to_trl
from dpo_doctor.data.hub import is_dataset_source, read_dataset
from dpo_doctor.data.jsonl import decode, describe, read_bytes, read_json, read_jsonl
from dpo_doctor.data.llamafactory import tokenize_pair as lf_tokenize_pair
from dpo_doctor.data.messages import EXPECTED, check_text, misspelled
from dpo_doctor.data.tokens import PairTokens, tokenize_pair, truncate
from dpo_doctor.errors import UserError, did_you_mean

FORMATS = ("standard_explicit", "standard_implicit", "conversational_explicit", "conversational_implicit")


@dataclass(frozen=True)
class PairSet:
    """Tokenized preference pairs ready for the engine. `pair_ids` index the rows of the source file."""

    path: Path
    format: str
    pair_ids: tuple[int, ...]
    prompts: tuple[Any, ...]  # raw prompts (str or message list): the default prompts of generation probes
    texts: tuple[tuple[str, str, str], ...]  # rendered (prompt, chosen, rejected) for views
    tokens: tuple[PairTokens, ...]
    identical: tuple[bool, ...]  # chosen == rejected: excluded from accuracy
    n_source_rows: int
    n_dropped_too_long: int
    max_length: int | None
    warnings: tuple[str, ...]
    data_format: str = "trl"  # the layout read (data.formats): trl, llamafactory-alpaca, ..., columns

    def fingerprint(self) -> str:
        """Identity of what the engine will see: the token ids themselves (covers data, tokenizer, settings)."""
        h = hashlib.sha256()
        for t in self.tokens:
            h.update(json.dumps([t.prompt_ids, t.chosen_ids, t.rejected_ids]).encode())
        return h.hexdigest()[:24]


# ---- reading -------------------------------------------------------------------------------------------------

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
HOW = "use .jsonl, .json, .parquet, .csv or a datasets.save_to_disk folder"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows from JSONL, JSON, Parquet, CSV or a `datasets.save_to_disk` folder."""
    return read_located(path)[0]


def read_located(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, where each came from: "line N" for JSONL, "row index I" for the rest); bad files -> UserError."""
    path = Path(path)
    if is_dataset_source(path):  # a Hub dataset id or a folder of data files: datasets.load_dataset (data/hub.py)
        rows, labels = read_dataset(path), None
    elif not path.exists():
        raise UserError(f"data file {path} does not exist; pass --data PATH to a JSONL/JSON/Parquet/CSV file or a "
                        "datasets.save_to_disk folder")
    elif path.is_dir():
        rows, labels = _read_saved_dataset(path), None
    else:
        readers = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_table, ".csv": _read_table}
        suffix = path.suffix.lower()
        if suffix not in readers:
            raise UserError(f"{path}: unknown data format {suffix or '(no extension)'!r}"
                            f"{did_you_mean(suffix, SUFFIXES) or ';'} rename or convert it ({HOW})")
        rows, labels = readers[suffix](path)
    if not rows:
        raise UserError(f"{path} is empty: it holds no preference pairs; expected rows with chosen and rejected "
                        "(and optionally prompt)")
    return rows, labels or [f"row index {i}" for i in range(len(rows))]


def _read_jsonl(path: Path) -> tuple[list[dict], list[str]]:
    lines = read_jsonl(path, "data file")
    return [ln.obj for ln in lines], [f"line {ln.lineno}" for ln in lines]


def _read_json(path: Path) -> tuple[list[dict], None]:
    obj = read_json(path, "data file")
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if isinstance(obj, dict) and obj and all(isinstance(v, list) for v in obj.values()):  # column-oriented
        lengths = {k: len(v) for k, v in obj.items()}
        if len(set(lengths.values())) > 1:
            raise UserError(f"{path}: column lists have different lengths {lengths}; give every column one value "
                            "per row")
        keys = list(obj)
        obj = [dict(zip(keys, vals)) for vals in zip(*obj.values())]
    if not isinstance(obj, list):
        raise UserError(f"{path}: found {describe(obj)} at the top level; expected a JSON list of objects with "
                        "prompt/chosen/rejected (or .jsonl, one object a line)")
    for i, row in enumerate(obj):
        if not isinstance(row, dict):
            raise UserError(f"{path}: row index {i}: found {describe(row)}; expected an object with "
                            "prompt/chosen/rejected")
    return obj, None


def _read_table(path: Path) -> tuple[list[dict], None]:
    import io

    import polars as pl

    data = read_bytes(path, "data file")
    is_csv = path.suffix.lower() == ".csv"
    if is_csv:
        decode(data, path)  # a bad byte is named by line and offset, as in JSONL
    try:
        if is_csv:  # every column as text: a CSV answer "42" stays the string "42"
            df = pl.read_csv(io.BytesIO(data), infer_schema=False)
        else:
            df = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # polars raises several types for corrupt files
        raise UserError(f"{path}: cannot read as {path.suffix[1:].upper()} ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0][:120]}); check the file is complete and really "
                        f"{path.suffix[1:].upper()}") from None
    return df.to_dicts(), None


def _read_saved_dataset(path: Path) -> list[dict]:
    if not (path / "dataset_info.json").exists() and not (path / "dataset_dict.json").exists():
        raise UserError(f"{path} is a folder but not a datasets.save_to_disk folder (no dataset_info.json or "
                        f"dataset_dict.json); pass a data file instead ({HOW})")
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError, ValueError, arrow errors for broken folders
        raise UserError(f"{path}: cannot load this datasets.save_to_disk folder ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0][:120]}); re-save it with Dataset.save_to_disk") from None
    if isinstance(ds, datasets.DatasetDict):
        if not ds:
            raise UserError(f"{path}: the saved DatasetDict has no splits; save a split with pairs")
        split = "test" if "test" in ds else next(iter(ds))
        ds = ds[split]
    return [dict(r) for r in ds]


# ---- normalizing ---------------------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    return "conversational" if isinstance(value, list) else "standard"


def check_row(row: dict, where: str, explicit: bool) -> tuple[str, tuple[Any, Any, Any]]:
    """(format, (prompt, chosen, rejected)) of one row, every field checked; `prompt` is None when implicit."""
    missing = [k for k in ("chosen", "rejected") if k not in row]
    if missing:
        raise UserError(f"{where}: missing column(s) {missing}; expected chosen and rejected (and optionally "
                        f"prompt), found {sorted(map(str, row))}{misspelled(missing, row)}")
    chosen, rejected = check_text(row["chosen"], where, "chosen"), check_text(row["rejected"], where, "rejected")
    if _kind(chosen) != _kind(rejected):
        raise UserError(f"{where}: chosen is {_kind(chosen)} ({describe(chosen)}) but rejected is "
                        f"{_kind(rejected)} ({describe(rejected)}); give both strings or both message lists")
    prompt = None
    if explicit:
        if "prompt" not in row:
            raise UserError(f"{where}: no prompt field, but other rows have one; use one format per file (give "
                            "every row a prompt, or none)")
        if row["prompt"] is None:
            raise UserError(f"{where}, field prompt: found null while other rows have prompts; expected {EXPECTED}")
        prompt = check_text(row["prompt"], where, "prompt")
        if _kind(prompt) != _kind(chosen):
            raise UserError(f"{where}: prompt is {_kind(prompt)} but chosen is {_kind(chosen)}; give prompt, "
                            "chosen and rejected in one format (all strings or all message lists)")
    return f"{_kind(chosen)}_{'explicit' if explicit else 'implicit'}", (prompt, chosen, rejected)


def detect_format(row: dict, path: Path) -> str:
    """The TRL format of one row (explicit when it has a non-null prompt)."""
    return check_row(row, str(path), row.get("prompt") is not None)[0]


def extract_prompt(chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """TRL's `extract_prompt`, quirks included: the longest common prefix (characters or messages), backing off one
    space; when one side is a prefix of the other the last shared element stays in the responses."""
    idx = 0
    for idx in range(min(len(chosen), len(rejected))):
        if chosen[idx] != rejected[idx]:
            if chosen[idx - 1] == " ":
                idx -= 1
            break
    return chosen[:idx], chosen[idx:], rejected[idx:]


def normalize(rows: list[dict], path: Path, labels: list[str] | None = None) -> tuple[str, list[tuple[Any, Any, Any]]]:
    """(format, [(prompt, chosen, rejected)]) with the prompt made explicit; one format per file."""
    labels = labels or [f"row index {i}" for i in range(len(rows))]
    explicit = any(row.get("prompt") is not None for row in rows)
    fmt, first, out = None, None, []
    for row, label in zip(rows, labels):
        row_fmt, (prompt, chosen, rejected) = check_row(row, f"{path}: {label}", explicit)
        if fmt is None:
            fmt, first = row_fmt, label
        elif row_fmt != fmt:
            raise UserError(f"{path}: {label} is {_kind_words(row_fmt)} but {first} is {_kind_words(fmt)}; use one "
                            "format per file")
        out.append((prompt, chosen, rejected) if explicit else extract_prompt(chosen, rejected))
    return fmt, out


@dataclass(frozen=True)
class Normalized:
    """A file's pairs as TRL (prompt, chosen, rejected) triples, before tokenizing: what the scan and the data audit
    read. `format` is the TRL shape (standard_explicit, ...), `data_format` the layout the file came in."""

    path: Path
    data_format: str
    detected: bool  # data_format was detected from the columns (not forced by --data-format / --columns)
    format: str
    triples: tuple[tuple[Any, Any, Any], ...]
    labels: tuple[str, ...]  # where each row came from: "line N" or "row index I"
    warnings: tuple[str, ...]


def read_normalized(path: Path, spec: DataSpec = DataSpec(), chat: bool = True) -> Normalized:
    """Read a pairs file in any accepted layout and normalize it; `chat`: the tokenizer has a chat template (else a
    single-turn trainer conversation is read as TRL's standard strings, see data.formats)."""
    path = Path(path)
    rows, labels = read_located(path)
    converted = to_trl(rows, labels, path, spec, chat)
    fmt, triples = normalize(converted.rows, path, labels)
    return Normalized(path=path, data_format=converted.data_format, detected=converted.detected, format=fmt,
                      triples=tuple(triples), labels=tuple(labels), warnings=converted.warnings)


def _kind_words(fmt: str) -> str:
    return "conversational (message lists)" if fmt.startswith("conv") else "standard (strings)"


def render(value: Any) -> str:
    """Plain text for views: strings as-is, conversations as `role: content` lines."""
    if isinstance(value, str):
        return value
    return "\n".join(f"{m['role']}: {m['content']}" for m in value)


# ---- tokenizing ----------------------------------------------------------------------------------------------


def subset_indices(n: int, max_pairs: int | None, seed: int) -> list[int]:
    """A deterministic subset: a seeded sample of row indices, kept in file order."""
    if max_pairs is None or max_pairs >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), max_pairs))


def tokenizer_dir(tokenizer) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or "the tokenizer")


def check_chat_template(tokenizer, fmt: str, path: Path) -> None:
    """Conversational data needs a chat template: say so before tokenizing anything."""
    if fmt.startswith("conversational") and not getattr(tokenizer, "chat_template", None):
        raise UserError(f"{path} is conversational (message lists) but the tokenizer in {tokenizer_dir(tokenizer)} "
                        "has no chat template; use the tokenizer of the chat model you trained (with chat_template "
                        "in tokenizer_config.json or chat_template.jinja), or give the data as plain strings")


def tokenize_row(tokenizer, triple: tuple[Any, Any, Any], where: str) -> PairTokens:
    """`tokenize_pair`, with a chat template that fails or is refused by jinja's sandbox as a one-line UserError."""
    from jinja2.exceptions import TemplateError

    try:
        return tokenize_pair(tokenizer, *triple)
    except TemplateError as exc:  # SecurityError (the sandbox refused it) is a TemplateError too
        why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
        todo = ("it reaches for attributes the sandbox forbids; replace it with the model's original template"
                if type(exc).__name__ == "SecurityError" else "fix the template, or this row's messages if the "
                "template rejects them")
        raise UserError(f"{where}: the chat template of the tokenizer in {tokenizer_dir(tokenizer)} failed ({why}); "
                        f"{todo} (chat_template in tokenizer_config.json or chat_template.jinja)") from None


def pair_warnings(triples: list[tuple[Any, Any, Any]], labels: list[str], path: Path) -> list[str]:
    """Data that scores but says little: chosen == rejected everywhere (error), some (warning), repeated rows."""
    n = len(triples)
    same = sum(c == r for _, c, r in triples)
    if same == n:
        raise UserError(f"{path}: every pair has chosen == rejected ({n} of {n}), so no preference can be measured; "
                        "check that chosen and rejected come from different fields")
    warnings = []
    if same:
        warnings.append(f"{same} of {n} pair(s) ({same / n:.0%}) have chosen == rejected: scored but excluded from "
                        "accuracy")
    seen: dict[str, int] = {}
    for triple in triples:
        key = json.dumps(triple, sort_keys=True, ensure_ascii=False)
        seen[key] = seen.get(key, 0) + 1
    repeats = {k: c for k, c in seen.items() if c > 1}
    if repeats:
        extra = sum(repeats.values()) - len(repeats)
        first = next(labels[i] for i, t in enumerate(triples)
                     if json.dumps(t, sort_keys=True, ensure_ascii=False) in repeats)
        warnings.append(f"{extra} of {n} row(s) ({extra / n:.0%}) repeat an earlier row exactly ({len(repeats)} "
                        f"distinct pair(s) appear more than once, up to {max(repeats.values())}x, first at {first}): "
                        "repeats weigh those pairs more in every metric; deduplicate the file")
    return warnings


def load_pairs(path: Path, tokenizer, max_length: int | None = 1024, max_pairs: int | None = None,
               seed: int = 0, spec: DataSpec = DataSpec()) -> PairSet:
    """Read, validate, normalize and tokenize preference pairs; errors name the file, row, field and what to do."""
    path = Path(path)
    data = read_normalized(path, spec, chat=bool(getattr(tokenizer, "chat_template", None)))
    fmt, triples, labels = data.format, list(data.triples), list(data.labels)
    if spec.template is None:
        check_chat_template(tokenizer, fmt, path)
    keep = subset_indices(len(triples), max_pairs, seed)
    warnings = [*data.warnings, *pair_warnings([triples[i] for i in keep], [labels[i] for i in keep], path)]
    ids, raw, texts, tokens, identical, dropped = [], [], [], [], [], 0
    for i in keep:
        prompt, chosen, rejected = triples[i]
        if spec.template is not None:  # LLaMA-Factory's ids and cutoff_len split: nothing is dropped
            pair = lf_tokenize_pair(tokenizer, spec.template, *triples[i], cutoff_len=max_length)
        else:
            pair = truncate(tokenize_row(tokenizer, triples[i], f"{path}: {labels[i]}"), max_length)
        if pair is None:
            dropped += 1
            continue
        ids.append(i)
        raw.append(prompt)
        texts.append((render(prompt), render(chosen), render(rejected)))
        tokens.append(pair)
        identical.append(chosen == rejected)
    if not tokens:
        raise UserError(f"{path}: every pair's prompt is at least --max-length={max_length} tokens long; "
                        "raise --max-length")
    if dropped:
        warnings.append(f"{dropped} pair(s) dropped: prompt alone fills --max-length={max_length} (as TRL does)")
    return PairSet(path=path, format=fmt, pair_ids=tuple(ids), prompts=tuple(raw), texts=tuple(texts), tokens=tuple(tokens),
                   identical=tuple(identical), n_source_rows=len(triples), n_dropped_too_long=dropped,
                   max_length=max_length, warnings=tuple(warnings), data_format=data.data_format)
