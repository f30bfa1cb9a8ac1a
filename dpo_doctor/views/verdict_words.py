"""How every view words a report's verdict: the labels, and the sentence when no rule fired."""

from __future__ import annotations

NO_FAILURE = "no-failure-found"  # rules.verdict_of's verdict when answer quality was not measured
VERDICT_WORDS = {"healthy": "HEALTHY", NO_FAILURE: "NO FAILURE FOUND (quality not measured)", "warning": "WARNING",
                 "error": "ERROR"}


def verdict_of_report(doc) -> str:
    """The report's verdict (a loaded report's `doc`); one without a verdict says no failure was found, never
    "healthy" (the loader fills that default in)."""
    return str(doc.verdict or NO_FAILURE)


def no_finding_sentence(doc) -> str:
    """What a view says when no rule fired: healthy only when answer quality was measured and held."""
    where = " (judged from the training log only)" if doc.log_only else ""
    if verdict_of_report(doc) == "healthy":
        return f"No finding: every rule passed and answer quality held{where}. This run looks healthy."
    return (f"No finding: every rule passed{where}. Answer quality was not measured, so this means no failure was "
            f"found in what was measured, not that the answers held: add --probe-suite or --judge.")
