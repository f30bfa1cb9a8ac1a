"""User-facing errors: one line, exit code 2, no traceback.

A `UserError` is a problem with the user's input (a path, a file, a flag). The CLI prints its message
and exits 2. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input. The message names the file, says what is wrong and what to do."""

    exit_code = 2
