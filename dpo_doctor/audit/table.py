"""The audit's pair table: one row per pair, the answer texts and lengths the audit's metrics read.

Built from what the one reader returns (`data.pairs`), never from a second reader: with a tokenizer from
`load_pairs` (untruncated, then `truncate`d exactly as the trainer does), without one from `read_located` +
`normalize` (lengths in whitespace words). `scan` builds the same table from its `PairSet`.
Columns: pair_id, prompt, chosen, rejected (rendered text, role labels of conversations removed), len_chosen,
len_rejected (what the trainer sees: after truncation), excluded (chosen == rejected), full_len (untruncated prompt
+ longer answer; null when unknown), dropped (the prompt alone fills max_length), and with a tokenizer
chosen_tokens / rejected_tokens (the truncated response ids).
"""

from __future__ import annotations

from typing import Any, Sequence

import polars as pl

ROLE = r"(?m)^[A-Za-z_][\w-]{0,30}: ?"  # `data.pairs.render` writes conversations as "role: content" lines


def answer_text(texts: Sequence[str], conversational: bool) -> pl.Series:
    """The answer as the audit compares it: rendered text, with the role labels of a conversation removed."""
    s = pl.Series(list(texts), dtype=pl.String)
    return s.str.replace_all(ROLE, "") if conversational else s


def frame(pair_ids: Sequence[int], texts: Sequence[tuple[str, str, str]], conversational: bool,
          lengths: dict[str, Any]) -> pl.DataFrame:
    """The table from rendered (prompt, chosen, rejected) texts and the length columns (see the module doc)."""
    return pl.DataFrame({
        "pair_id": pl.Series(list(pair_ids), dtype=pl.Int64),
        "prompt": answer_text([t[0] for t in texts], conversational),
        "chosen": answer_text([t[1] for t in texts], conversational),
        "rejected": answer_text([t[2] for t in texts], conversational),
        **lengths,
    })


def from_tokens(pair_ids, texts, conversational: bool, full, truncated, identical) -> pl.DataFrame:
    """With a tokenizer: `full` the untruncated PairTokens, `truncated` the trainer's (None = dropped)."""
    kept = [t if t is not None else f for t, f in zip(truncated, full)]
    return frame(pair_ids, texts, conversational, {
        "len_chosen": pl.Series([len(t.chosen_ids) for t in kept], dtype=pl.Int64),
        "len_rejected": pl.Series([len(t.rejected_ids) for t in kept], dtype=pl.Int64),
        "excluded": pl.Series(list(identical), dtype=pl.Boolean),
        "full_len": pl.Series([len(f.prompt_ids) + max(len(f.chosen_ids), len(f.rejected_ids)) for f in full],
                              dtype=pl.Int64),
        "dropped": pl.Series([t is None for t in truncated], dtype=pl.Boolean),
        "chosen_tokens": pl.Series([list(t.chosen_ids) for t in kept], dtype=pl.List(pl.Int64)),
        "rejected_tokens": pl.Series([list(t.rejected_ids) for t in kept], dtype=pl.List(pl.Int64)),
    })


def from_words(pair_ids, texts, conversational: bool, identical, max_length: int | None) -> pl.DataFrame:
    """Without a tokenizer: lengths in whitespace words, truncated to max_length words as the trainer would
    truncate tokens (keep_start; the prompt first)."""
    df = frame(pair_ids, texts, conversational, {"excluded": pl.Series(list(identical), dtype=pl.Boolean)})
    n = {k: pl.col(k).str.count_matches(r"\S+").cast(pl.Int64) for k in ("prompt", "chosen", "rejected")}
    room = (pl.lit(max_length, pl.Int64) - n["prompt"]).clip(0) if max_length else None
    return df.with_columns(
        len_chosen=pl.min_horizontal(n["chosen"], room) if max_length else n["chosen"],
        len_rejected=pl.min_horizontal(n["rejected"], room) if max_length else n["rejected"],
        full_len=n["prompt"] + pl.max_horizontal(n["chosen"], n["rejected"]),
        dropped=(n["prompt"] >= max_length) if max_length else pl.lit(False),
    ).select("pair_id", "prompt", "chosen", "rejected", "len_chosen", "len_rejected", "excluded", "full_len",
             "dropped")


def from_pairset(pairs) -> pl.DataFrame:
    """The scan's PairSet (already truncated; dropped pairs are absent, so truncation is unknown: full_len null)."""
    t = pairs.tokens
    return frame(pairs.pair_ids, pairs.texts, pairs.format.startswith("conversational"), {
        "len_chosen": pl.Series([len(p.chosen_ids) for p in t], dtype=pl.Int64),
        "len_rejected": pl.Series([len(p.rejected_ids) for p in t], dtype=pl.Int64),
        "excluded": pl.Series(list(pairs.identical), dtype=pl.Boolean),
        "full_len": pl.Series([None] * len(t), dtype=pl.Int64),
        "dropped": pl.Series([False] * len(t), dtype=pl.Boolean),
        "chosen_tokens": pl.Series([list(p.chosen_ids) for p in t], dtype=pl.List(pl.Int64)),
        "rejected_tokens": pl.Series([list(p.rejected_ids) for p in t], dtype=pl.List(pl.Int64)),
    })
