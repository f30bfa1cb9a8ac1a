"""Degeneration metrics (gen/degen/*) on a hand-built samples table; the expected numbers are worked out below."""

import zlib

import polars as pl
import pytest

from dpo_doctor.metrics.degeneration import (compression_ratio, degeneration_metrics, invalid_char_rate,
                                             longest_repeat, repeat_ngram_rate, sample_degeneration)
from dpo_doctor.metrics.generation import METRIC_INFO, generation_metrics

LOOP = [7, 8] * 10  # 20 tokens, period 2
COPY = list(range(1, 41)) * 2  # a 40-token block written twice


def _table(rows):
    return pl.DataFrame({"token_ids": [r[0] for r in rows], "text": [r[1] for r in rows],
                         "finished": [r[2] for r in rows]},
                        schema={"token_ids": pl.List(pl.Int64), "text": pl.String, "finished": pl.Boolean})


CKPT = _table([([1, 2, 3, 4, 5, 6], "A fine answer.", True),
               (LOOP, "la la la la la la la la la la", False),
               (COPY, "the same paragraph twice", True),
               ([9, 10, 11], "ok\ufffd", True)])
REF = _table([([1, 2, 3, 4, 5, 6], "A fine answer.", True),
              ([1, 2, 3, 4, 1, 2, 3, 4, 5], "one two three four one two three four five", True)])


def test_repeat_rate_and_span_hand_values():
    """LOOP: 17 4-grams, only 7878 and 8787 are new -> 15/17; every shift-2 position matches -> span 20 - 2 = 18.
    COPY: 77 4-grams; the 37 that start in the second copy and end inside it repeat (the 3 crossing the seam are
    new) -> 37/77 = 0.4805 (under 0.5), but its span is 40 (>= 32): degenerate by span only.
    1 2 3 4 1 2 3 4 5: 4-grams 1234 2341 3412 4123 1234 2345 -> 1/6; span 4 (1 2 3 4 again 4 tokens later).
    Fewer than 4 tokens: rate 0; fewer than 2: span 0."""
    assert repeat_ngram_rate(LOOP) == pytest.approx(15 / 17)
    assert longest_repeat(LOOP) == 18
    assert repeat_ngram_rate(COPY) == pytest.approx(37 / 77)
    assert longest_repeat(COPY) == 40
    assert repeat_ngram_rate([1, 2, 3, 4, 1, 2, 3, 4, 5]) == pytest.approx(1 / 6)
    assert longest_repeat([1, 2, 3, 4, 1, 2, 3, 4, 5]) == 4
    assert repeat_ngram_rate([1, 2, 3]) == 0.0 and longest_repeat([5]) == 0 and longest_repeat([]) == 0
    assert longest_repeat([5] * 10) == 9  # overlapping occurrences count
    assert longest_repeat(COPY, chunk=7) == 40  # chunked shifts give the same answer


def test_compression_and_invalid_characters():
    """'ab' x 50 is 100 bytes and compresses to 13 (0.13); a sentence of distinct words compresses worse than it
    gains (zlib's 11 bytes of framing), above 1. Invalid: U+FFFD, a lone surrogate and BEL (\\x07) count;
    newline, tab and carriage return do not: 'a\\ufffd\\ud800\\x07\\n\\t\\r x' has 3 of 9 characters."""
    assert compression_ratio("ab" * 50) == len(zlib.compress(b"ab" * 50, 9)) / 100 == 0.13
    assert compression_ratio("Quick brown foxes jump.") > 1.0
    assert compression_ratio("") is None
    assert invalid_char_rate("a\ufffd\ud800\x07\n\t\r x") == pytest.approx(3 / 9)
    assert invalid_char_rate("") == 0.0 and invalid_char_rate("line\nnext\ttab") == 0.0


def test_checkpoint_metrics_hand_values():
    """Checkpoint rows: clean; LOOP (rate 15/17 >= 0.5: loops); COPY (span 40 >= 32: loops); 'ok\\ufffd' (1 of 3
    characters invalid > 1%: broken, not looping) -> 2 of 4 loop (0.5), 1 of 4 broken (0.25). Reference: clean and
    1/6 with span 4 -> 0 of 2, so frac_vs_ref = 0.5. Means: rate (0 + 15/17 + 37/77 + 0) / 4; span
    (0 + 18 + 40 + 0) / 4 = 14.5; invalid (1/3) / 4; unfinished 1 of 4."""
    per = sample_degeneration(CKPT)
    assert per["degenerate"].to_list() == [False, True, True, False]
    assert per["broken"].to_list() == [False, False, False, True]
    m = degeneration_metrics(CKPT, REF)
    assert m["gen/degen/n"] == 4 and m["gen/degen/count"] == 2 and m["gen/degen/frac"] == 0.5
    assert m["gen/degen/broken_count"] == 1 and m["gen/degen/broken_frac"] == 0.25
    assert m["gen/degen/frac_vs_ref"] == 0.5
    assert m["gen/degen/repeat_4gram_rate"] == pytest.approx((15 / 17 + 37 / 77) / 4)
    assert m["gen/degen/longest_repeat"] == 14.5
    assert m["gen/degen/invalid_char_rate"] == pytest.approx(1 / 12)
    assert m["gen/degen/unfinished_frac"] == 0.25
    ref = degeneration_metrics(REF, REF)
    assert ref["gen/degen/frac"] == 0.0 and ref["gen/degen/frac_vs_ref"] == 0.0
    assert ref["gen/degen/repeat_4gram_rate"] == pytest.approx(1 / 12)  # (0 + 1/6) / 2


def test_empty_and_legacy_tables():
    """No rows: counts 0 and every mean None. A table cached before `finished` existed: unfinished None."""
    m = degeneration_metrics(CKPT.head(0), REF)
    assert m["gen/degen/n"] == 0 and m["gen/degen/frac"] is None and m["gen/degen/longest_repeat"] is None
    assert degeneration_metrics(CKPT.drop("finished"), REF)["gen/degen/unfinished_frac"] is None


def test_every_degen_metric_is_in_the_catalogue():
    assert set(degeneration_metrics(CKPT, REF)) <= set(METRIC_INFO)
