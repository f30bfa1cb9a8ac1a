"""Degeneration inside one answer: loops, repeated spans, broken characters (`gen/degen/*`).

Per sample (every row of the checkpoint's samples, the greedy row included: greedy decoding is where loops show
first, and the reference's rows are counted the same way):
* repeated 4-gram rate: the share of the answer's token 4-grams (token ids, EOS excluded) that repeat an earlier
  4-gram of the same answer; 0 for answers shorter than 4 tokens. A loop of period p over L tokens scores
  (L - p - 3) / (L - 3), near 1. High is bad.
* longest repeated span: the longest token run that occurs twice in the answer (occurrences may overlap, so a
  loop of period p over L tokens has L - p). Tokens; high is bad.
* compression ratio: zlib (level 9) compressed bytes / raw UTF-8 bytes of the text: loops compress well, so low
  is bad. Short texts score above 1 (zlib's fixed overhead), so only compare with the reference's mean.
* invalid-character rate: the share of characters that are U+FFFD (a byte-level tokenizer's broken UTF-8), lone
  surrogates, or control characters other than \\n, \\t and \\r. High is bad.
* unfinished: the answer hit max_new_tokens without EOS (`finished` column; loops rarely stop).

A sample loops (is degenerate) when its repeated 4-gram rate >= 0.5 (half of its 4-grams are copies) or its longest
repeated span >= 32 tokens; it is broken when more than 1% of its characters are invalid. The two are counted
apart: a small byte-level model sampled at temperature 1 emits broken characters from its tails in every trained
run (the zoo's healthy run: 21 of 80 answers vs the reference's 3), while loops are rare unless training went too
far (over_optimization: most answers). Per checkpoint: the means, the count and share of looping and of broken
samples, and the looping share minus the reference's (sampled on the same prompts with the same settings).
"""

from __future__ import annotations

import unicodedata
import zlib
from typing import Sequence

import numpy as np
import polars as pl

from dpo_doctor.metrics.info import MetricInfo

NGRAM = 4
MAX_REPEAT_RATE = 0.5  # a sample is degenerate at or above this repeated 4-gram rate
MAX_SPAN = 32  # ... or at or above this longest repeated span (tokens)
MAX_INVALID = 0.01  # a sample is broken above this invalid-character rate
ALLOWED_CONTROL = {"\n", "\t", "\r"}

INFO = {
    "gen/degen/repeat_4gram_rate": MetricInfo("fraction", "high", "share of an answer's token 4-grams that repeat an "
                                                                  "earlier 4-gram of the same answer, mean over "
                                                                  "samples"),
    "gen/degen/longest_repeat": MetricInfo("tokens", "high", "longest token span occurring twice in an answer, mean "
                                                             "over samples"),
    "gen/degen/compression_ratio": MetricInfo("ratio", "low", "zlib-compressed / raw UTF-8 bytes of an answer, mean "
                                                              "over samples (loops compress well)"),
    "gen/degen/invalid_char_rate": MetricInfo("fraction", "high", "share of characters that are U+FFFD, lone "
                                                                  "surrogates or control characters (not \\n\\t\\r), "
                                                                  "mean over samples"),
    "gen/degen/unfinished_frac": MetricInfo("fraction", "high", "share of answers (greedy included) cut at "
                                                                "max_new_tokens without EOS"),
    "gen/degen/n": MetricInfo("samples", None, "answers measured (sampled and greedy rows)"),
    "gen/degen/count": MetricInfo("samples", "high", "looping answers: repeated 4-gram rate >= 0.5 or a repeated "
                                                     "span >= 32 tokens"),
    "gen/degen/frac": MetricInfo("fraction", "high", "share of looping answers (gen/degen/count / gen/degen/n)"),
    "gen/degen/broken_count": MetricInfo("samples", "high", "broken answers: more than 1% invalid characters"),
    "gen/degen/broken_frac": MetricInfo("fraction", "high", "share of broken answers"),
    "gen/degen/frac_vs_ref": MetricInfo("fraction", "high", "gen/degen/frac minus the reference's on the same prompts"),
}


def repeat_ngram_rate(ids: Sequence[int], n: int = NGRAM) -> float:
    """Share of the n-grams that already occurred earlier in the same sequence (0 when there is none)."""
    seen, repeats = set(), 0
    grams = [tuple(ids[i: i + n]) for i in range(len(ids) - n + 1)]
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams) if grams else 0.0


def longest_repeat(ids: Sequence[int], chunk: int = 256) -> int:
    """Longest span that occurs at two positions (overlap allowed): the longest run of equal tokens along a shift.

    Row d of the (shifts, n) matrix says ids[i] == ids[i + d]; a run of k Trues in a row is a span of k tokens
    repeated d tokens later. A False column separates the rows so runs never cross; shifts go `chunk` at a time so
    memory stays O(chunk x n) on long answers."""
    a = np.asarray(ids, dtype=np.int64)
    n, best = len(a), 0
    pos = np.arange(n)[None, :]  # (1, n)
    for first in range(1, n, chunk):
        other = pos + np.arange(first, min(first + chunk, n))[:, None]  # (shifts, n)
        eq = (other < n) & (a[pos] == a[np.minimum(other, n - 1)])  # (shifts, n)
        flat = np.concatenate([np.zeros((len(eq), 1), bool), eq], axis=1).ravel()
        edges = np.diff(np.concatenate([[0], flat.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        best = max(best, int((ends - starts).max()) if len(starts) else 0)
    return best


def compression_ratio(text: str) -> float | None:
    """zlib level-9 bytes / raw UTF-8 bytes; None for an empty text."""
    raw = text.encode("utf-8", errors="surrogatepass")
    return len(zlib.compress(raw, 9)) / len(raw) if raw else None


def _invalid(ch: str) -> bool:
    code = ord(ch)
    return (ch == "\ufffd" or 0xD800 <= code <= 0xDFFF
            or (unicodedata.category(ch) == "Cc" and ch not in ALLOWED_CONTROL))


def invalid_char_rate(text: str) -> float:
    """Share of characters that are U+FFFD, lone surrogates or control characters other than \\n \\t \\r."""
    return sum(map(_invalid, text)) / len(text) if text else 0.0


def is_degenerate(repeat_rate: float, span: int) -> bool:
    """The answer loops: half its 4-grams are copies, or it repeats a span of 32+ tokens."""
    return repeat_rate >= MAX_REPEAT_RATE or span >= MAX_SPAN


def sample_degeneration(samples: pl.DataFrame) -> pl.DataFrame:
    """One row per sample: repeat_4gram_rate, longest_repeat, compression_ratio, invalid_char_rate, unfinished,
    degenerate (loops), broken (the per-sample view the report's sample browser can show)."""
    ids, texts = samples["token_ids"].to_list(), samples["text"].to_list()
    rate = [repeat_ngram_rate(list(i)) for i in ids]
    span = [longest_repeat(list(i)) for i in ids]
    invalid = [invalid_char_rate(t) for t in texts]
    finished = samples["finished"].to_list() if "finished" in samples.columns else [None] * len(texts)
    return pl.DataFrame({
        "repeat_4gram_rate": rate, "longest_repeat": span,
        "compression_ratio": [compression_ratio(t) for t in texts], "invalid_char_rate": invalid,
        "unfinished": [None if f is None else not f for f in finished],
        "degenerate": [is_degenerate(r, s) for r, s in zip(rate, span)],
        "broken": [v > MAX_INVALID for v in invalid],
    }, schema={"repeat_4gram_rate": pl.Float64, "longest_repeat": pl.Int64, "compression_ratio": pl.Float64,
               "invalid_char_rate": pl.Float64, "unfinished": pl.Boolean, "degenerate": pl.Boolean,
               "broken": pl.Boolean})


def _mean(col: pl.Series) -> float | None:
    col = col.drop_nulls()
    return None if col.is_empty() else float(col.cast(pl.Float64).mean())


def _summary(samples: pl.DataFrame) -> dict[str, float | None]:
    per = sample_degeneration(samples)
    n = per.height
    count = int(per["degenerate"].sum()) if n else 0
    broken = int(per["broken"].sum()) if n else 0
    return {
        "gen/degen/repeat_4gram_rate": _mean(per["repeat_4gram_rate"]),
        "gen/degen/longest_repeat": _mean(per["longest_repeat"]),
        "gen/degen/compression_ratio": _mean(per["compression_ratio"]),
        "gen/degen/invalid_char_rate": _mean(per["invalid_char_rate"]),
        "gen/degen/unfinished_frac": _mean(per["unfinished"]),
        "gen/degen/n": float(n), "gen/degen/count": float(count),
        "gen/degen/frac": count / n if n else None,
        "gen/degen/broken_count": float(broken), "gen/degen/broken_frac": broken / n if n else None,
    }


def degeneration_metrics(samples: pl.DataFrame, ref_samples: pl.DataFrame) -> dict[str, float | None]:
    """gen/degen/* of one checkpoint's samples against the reference's (pass the reference's rows as both for the
    reference itself: its frac_vs_ref is then 0)."""
    out = _summary(samples)
    ref_frac = _summary(ref_samples)["gen/degen/frac"] if ref_samples is not samples else out["gen/degen/frac"]
    frac = out["gen/degen/frac"]
    out["gen/degen/frac_vs_ref"] = None if frac is None or ref_frac is None else frac - ref_frac
    return out
