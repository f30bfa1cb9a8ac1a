"""The one training-log table every reader produces, and the value checks they share.

Columns: `step` (Int64), `epoch` (Float64), `split` ("train"|"eval"), then one Float64 column per logged key under
TRL's name (`loss`, `rewards/margins`, ...), the `eval_` / `eval/` prefix stripped so `rewards/margins` holds the train
value on train rows and the eval value on eval rows. End-of-training summary keys and eval timing keys are dropped:
they are not curves. Readers hand over rows as {"step", "epoch", "split", key: value} with raw values; `build_frame`
coerces them and collects one warning per kind of bad value, so a hostile log never stops a scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl

SUMMARY_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos"}
DROPPED_KEYS = {"runtime", "samples_per_second", "steps_per_second"}  # eval timing, after the prefix is stripped
INDEX = ("step", "epoch", "split")
MAX_EXAMPLES = 3  # bad values quoted per warning


class Unreadable(Exception):
    """A file cannot be read as a log at all; the message says why (a warning when found, a UserError when named)."""


class MissingReader(Unreadable):
    """Reading this kind needs an optional package; the message names the pip command."""


@dataclass
class Problems:
    """Odd values met while reading one file: counted per (verb, kind), a few quoted, turned into short warnings."""

    where: str
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    examples: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, kind: str, example: str, verb: str = "skipped") -> None:
        self.counts[verb, kind] = self.counts.get((verb, kind), 0) + 1
        quoted = self.examples.setdefault((verb, kind), [])
        if len(quoted) < MAX_EXAMPLES:
            quoted.append(example)

    def warnings(self) -> list[str]:
        return [f"{self.where}: {verb} {n} {kind} ({'; '.join(self.examples[verb, kind])}"
                f"{', ...' if n > MAX_EXAMPLES else ''})" for (verb, kind), n in self.counts.items()]


def to_float(value, key: str, step, problems: Problems) -> float | None:
    """A logged value as a float, or None (with a warning for anything but a missing value).

    Numbers pass. Text that spells a number ("nan", "inf", "0.5") is read as that number with a warning, since a NaN
    loss is itself a finding (readers of text formats, CSV and Trackio's "NaN", convert before this). Booleans, lists,
    dicts and other text are skipped with a warning.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        problems.add("non-numeric values", f"{key} at step {step}: {_short(value)}")
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        problems.add("non-numeric values", f"{key} at step {step}: {_short(value)}")
        return None
    if isinstance(value, str):
        problems.add("numbers written as text", f"{key} at step {step}: {_short(value)}", verb="read")
    return number


def parse_text(value):
    """A text cell as a float when it spells one (CSV cells, Trackio's "NaN"/"Infinity"), else unchanged."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def to_step(value, problems: Problems) -> int | None:
    """A step as an int (10, 10.0 and "10" all give 10), else None with a warning."""
    if value is None:
        return None
    number = to_float(value, "step", value, problems)
    if number is None or not math.isfinite(number) or number != int(number):
        if number is not None:
            problems.add("bad step values", _short(value))
        return None
    return int(number)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def clean_row(row: dict, problems: Problems) -> dict | None:
    """One raw row -> {step, epoch, split, key: float}; None for a summary row or a row with no value left."""
    if SUMMARY_KEYS & row.keys():
        return None
    step = to_step(row.get("step"), problems)
    out = {"step": step, "epoch": to_float(row.get("epoch"), "epoch", step, problems), "split": row["split"]}
    for key, value in row.items():
        if key in INDEX or key in SUMMARY_KEYS or (row["split"] == "eval" and key in DROPPED_KEYS):
            continue
        number = to_float(value, key, step, problems)
        if number is not None:
            out[key] = number
    return out if len(out) > len(INDEX) else None


def derive_margins(row: dict) -> dict:
    """`rewards/margins` = chosen - rejected when a trainer logs only the two means (OpenRLHF): the mean of the
    per-pair margins equals the difference of the means, so this is exact, not an estimate."""
    if "rewards/margins" not in row and "rewards/chosen" in row and "rewards/rejected" in row:
        return {**row, "rewards/margins": row["rewards/chosen"] - row["rewards/rejected"]}
    return row


def build_frame(rows: list[dict], problems: Problems) -> pl.DataFrame | None:
    """Raw rows -> the table (None when no row keeps a value). Bad values land in `problems`."""
    clean = [derive_margins(r) for r in (clean_row(r, problems) for r in rows) if r is not None]
    if not clean:
        return None
    keys: dict[str, None] = {}
    for r in clean:
        keys.update(dict.fromkeys(k for k in r if k not in INDEX))
    schema = {"step": pl.Int64, "epoch": pl.Float64, "split": pl.Utf8, **{k: pl.Float64 for k in keys}}
    return pl.DataFrame({name: [r.get(name) for r in clean] for name in schema}, schema=schema)
