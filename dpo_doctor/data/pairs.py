"""Preference data: read pairs from disk, normalize TRL's four formats, tokenize exactly as TRL does.

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

from dpo_doctor.engine.logprobs import PairTokens
from dpo_doctor.errors import UserError

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

    def fingerprint(self) -> str:
        """Identity of what the engine will see: the token ids themselves (covers data, tokenizer, settings)."""
        h = hashlib.sha256()
        for t in self.tokens:
            h.update(json.dumps([t.prompt_ids, t.chosen_ids, t.rejected_ids]).encode())
        return h.hexdigest()[:24]


# ---- reading -------------------------------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows from JSONL, JSON, Parquet, CSV or a `datasets.save_to_disk` folder."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data file {path} does not exist; pass --data PATH to a JSONL/JSON/Parquet/CSV file or a "
                        "datasets.save_to_disk folder")
    if path.is_dir():
        return _read_saved_dataset(path)
    suffix = path.suffix.lower()
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_table, ".csv": _read_table}
    if suffix not in readers:
        raise UserError(f"{path}: unknown data format {suffix!r}; use .jsonl, .json, .parquet, .csv or a "
                        "datasets.save_to_disk folder")
    rows = readers[suffix](path)
    if not rows:
        raise UserError(f"{path} is empty: it holds no preference pairs")
    return rows


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{lineno}: malformed JSON line ({exc.msg}); fix or delete that line") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object per line, got {type(row).__name__}")
            rows.append(row)
    return rows


def _read_json(path: Path) -> list[dict]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed JSON at line {exc.lineno} ({exc.msg})") from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if isinstance(obj, dict) and all(isinstance(v, list) for v in obj.values()):  # column-oriented
        keys = list(obj)
        obj = [dict(zip(keys, vals)) for vals in zip(*obj.values())]
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise UserError(f"{path}: expected a JSON list of objects with prompt/chosen/rejected")
    return obj


def _read_table(path: Path) -> list[dict]:
    import polars as pl

    try:
        df = pl.read_parquet(path) if path.suffix.lower() == ".parquet" else pl.read_csv(path)
    except Exception as exc:  # polars raises several types for corrupt files
        raise UserError(f"{path}: cannot read ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    return df.to_dicts()


def _read_saved_dataset(path: Path) -> list[dict]:
    if not (path / "dataset_info.json").exists() and not (path / "dataset_dict.json").exists():
        raise UserError(f"{path} is a folder but not a datasets.save_to_disk folder (no dataset_info.json)")
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        split = "test" if "test" in ds else next(iter(ds))
        ds = ds[split]
    return [dict(r) for r in ds]


# ---- normalizing ---------------------------------------------------------------------------------------------


def _is_conversation(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)


def detect_format(row: dict, path: Path) -> str:
    missing = [k for k in ("chosen", "rejected") if k not in row]
    if missing:
        raise UserError(f"{path}: missing column(s) {missing}; expected chosen and rejected (and optionally prompt), "
                        f"found {sorted(row)}")
    conv = _is_conversation(row["chosen"])
    explicit = "prompt" in row and row["prompt"] is not None and _is_conversation(row["prompt"]) == conv
    return f"{'conversational' if conv else 'standard'}_{'explicit' if explicit else 'implicit'}"


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


def normalize(rows: list[dict], path: Path) -> tuple[str, list[tuple[Any, Any, Any]]]:
    """(format, [(prompt, chosen, rejected)]) with the prompt made explicit."""
    fmt = detect_format(rows[0], path)
    out = []
    for i, row in enumerate(rows):
        if detect_format(row, path) != fmt:
            raise UserError(f"{path}: row {i} is {detect_format(row, path)} but row 0 is {fmt}; use one format per file")
        if fmt.endswith("explicit"):
            out.append((row["prompt"], row["chosen"], row["rejected"]))
        else:
            out.append(extract_prompt(row["chosen"], row["rejected"]))
    return fmt, out


def render(value: Any) -> str:
    """Plain text for views: strings as-is, conversations as `role: content` lines."""
    if isinstance(value, str):
        return value
    return "\n".join(f"{m['role']}: {m['content']}" for m in value)


# ---- tokenizing ----------------------------------------------------------------------------------------------


def _ids(tokenizer, value: Any, **kwargs) -> list[int]:
    if isinstance(value, list):
        out = tokenizer.apply_chat_template(value, tokenize=True, return_dict=True, **kwargs)
        return list(out["input_ids"])
    return list(tokenizer(text=value)["input_ids"])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenize_pair(tokenizer, prompt: Any, chosen: Any, rejected: Any) -> PairTokens:
    """TRL 1.x `tokenize_fn`: completion = what follows the common prefix of prompt and prompt+completion."""
    if isinstance(prompt, list):
        prompt_ids = _ids(tokenizer, prompt, add_generation_prompt=True)
        chosen_full = _ids(tokenizer, prompt + chosen)
        rejected_full = _ids(tokenizer, prompt + rejected)
    else:
        eos = tokenizer.eos_token or ""
        chosen = chosen if chosen.endswith(eos) else chosen + eos
        rejected = rejected if rejected.endswith(eos) else rejected + eos
        prompt_ids = _ids(tokenizer, prompt)
        chosen_full = _ids(tokenizer, prompt + chosen)
        rejected_full = _ids(tokenizer, prompt + rejected)
    n = min(_common_prefix(prompt_ids, chosen_full), _common_prefix(prompt_ids, rejected_full))
    return PairTokens(tuple(prompt_ids[:n]), tuple(chosen_full[n:]), tuple(rejected_full[n:]))


def truncate(pair: PairTokens, max_length: int | None) -> PairTokens | None:
    """keep_start truncation of prompt+response to max_length (TRL's collator); None if the prompt fills it."""
    if max_length is None:
        return pair
    if len(pair.prompt_ids) >= max_length:
        return None
    room = max_length - len(pair.prompt_ids)
    return PairTokens(pair.prompt_ids, pair.chosen_ids[:room], pair.rejected_ids[:room])


def subset_indices(n: int, max_pairs: int | None, seed: int) -> list[int]:
    """A deterministic subset: a seeded sample of row indices, kept in file order."""
    if max_pairs is None or max_pairs >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), max_pairs))


def load_pairs(path: Path, tokenizer, max_length: int | None = 1024, max_pairs: int | None = None,
               seed: int = 0) -> PairSet:
    """Read, normalize and tokenize preference pairs; errors name the file and what to do."""
    path = Path(path)
    rows = read_rows(path)
    fmt, triples = normalize(rows, path)
    keep = subset_indices(len(triples), max_pairs, seed)
    ids, raw, texts, tokens, identical, dropped = [], [], [], [], [], 0
    for i in keep:
        prompt, chosen, rejected = triples[i]
        if fmt.startswith("standard") and not all(isinstance(x, str) for x in (prompt, chosen, rejected)):
            raise UserError(f"{path}: row {i}: prompt/chosen/rejected must be strings (or message lists), got "
                            f"{type(prompt).__name__}/{type(chosen).__name__}/{type(rejected).__name__}")
        pair = truncate(tokenize_pair(tokenizer, prompt, chosen, rejected), max_length)
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
    warnings = []
    if dropped:
        warnings.append(f"{dropped} pair(s) dropped: prompt alone fills --max-length={max_length} (as TRL does)")
    if any(identical):
        warnings.append(f"{sum(identical)} pair(s) have chosen == rejected: scored but excluded from accuracy")
    return PairSet(path=path, format=fmt, pair_ids=tuple(ids), prompts=tuple(raw), texts=tuple(texts), tokens=tuple(tokens),
                   identical=tuple(identical), n_source_rows=len(rows), n_dropped_too_long=dropped,
                   max_length=max_length, warnings=tuple(warnings))
