"""User-facing errors: one line, exit code 2, no traceback.

A `UserError` is a problem with the user's input (a path, a file, a flag). The CLI prints its message
and exits 2. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input. The message names the file, says what is wrong and what to do."""

    exit_code = 2


def did_you_mean(word: str, options, cutoff: float = 0.5) -> str:
    """'; did you mean X?' for the closest option, or '' (the one spelling helper for every lookup error)."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=cutoff)
    return f"; did you mean {close[0]}?" if close else ""
